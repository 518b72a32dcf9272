import QCOW2API

/// The route pattern a raw request path belongs to, as a bounded label for metrics.
///
/// `/v1/images/vm1.qcow2/bitmaps/b0/extents` becomes `/v1/images/{image}/bitmaps/{bitmap}/extents`: one
/// of `API.routes`, `/metrics`, `/` or `/ui/*`, and `other` for anything else, so clients cannot create
/// new label values (series) by inventing paths.
enum EndpointLabel {
    /// The label of paths no route serves.
    static let other = "other"
    /// The label of the metrics endpoint (served by the daemon, not the API).
    static let metrics = "/metrics"
    /// The label of every web view file.
    static let ui = "/ui/*"

    /// Every pattern split into segments; `nil` stands for a `{parameter}` segment.
    private static let patterns: [(label: String, segments: [Substring?])] = API.routes.map { route in
        let segments = route.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
            segment -> Substring? in segment.hasPrefix("{") && segment.hasSuffix("}") ? nil : segment
        }
        return (route, Array(segments))
    }

    /// The label for a raw (not percent-decoded) request path.
    static func label(forRawPath path: String) -> String {
        if path == metrics { return metrics }
        if path == "/" { return "/" }
        if path == "/ui" || path.hasPrefix("/ui/") { return ui }
        guard path.hasPrefix("/") else { return other }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for pattern in patterns where pattern.segments.count == segments.count {
            let matches = zip(pattern.segments, segments).allSatisfy { expected, actual in
                expected.map { $0 == actual } ?? !actual.isEmpty
            }
            if matches { return pattern.label }
        }
        return other
    }
}
