public import HTTPTypes

/// Which other origins' browser pages may read the answers (CORS), for a dashboard served elsewhere.
///
/// Empty by default: no `Access-Control-Allow-Origin` is sent, so a page from another origin cannot
/// read anything. An origin given with `--cors-origin` (exact match of `scheme://host[:port]`) gets
/// `Access-Control-Allow-Origin` naming it on every answer, the headers a poller needs exposed
/// (`ETag`, `Link`, `Retry-After`), and a preflight answer that allows `GET`, `HEAD` and the
/// `Authorization` and `If-None-Match` fields (no token is needed for the preflight itself: browsers
/// never send one there). Answers carry `Vary: Origin` whenever origins are configured.
public struct CORSPolicy: Sendable, Equatable {
    /// The allowed origins, exactly as configured.
    public let origins: Set<String>

    /// A policy allowing `origins` (validated with ``isValidOrigin(_:)``).
    public init(origins: [String]) {
        self.origins = Set(origins)
    }

    /// Whether `text` is an origin: `http` or `https`, `://`, a host, an optional port; no path,
    /// query, user or trailing slash.
    public static func isValidOrigin(_ text: String) -> Bool {
        let rest: Substring
        if text.hasPrefix("https://") {
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            rest = text.dropFirst(7)
        } else {
            return false
        }
        guard !rest.isEmpty, !rest.contains(where: { "/?#@ ".contains($0) }) else { return false }
        return HostPolicy.isValidName(String(rest))
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`),
    /// nil for any other request.
    func preflight(_ request: HTTPRequest) -> Response? {
        guard request.method == .options, let origin = request.headerFields[.origin],
            request.headerFields[.accessControlRequestMethod] != nil
        else { return nil }
        guard origins.contains(origin) else {
            var r = Problem(
                status: 403, slug: "origin-not-allowed", title: "Origin not allowed",
                detail: "cross-origin requests from '\(origin.prefix(200))' are not allowed (see --cors-origin)"
            ).response(instance: (request.path ?? "").prefix { $0 != "?" })
            r.head.headerFields[.vary] = "Origin"
            return r
        }
        var fields: HTTPFields = [
            .accessControlAllowOrigin: origin, .accessControlAllowMethods: "GET, HEAD",
            .accessControlAllowHeaders: "Authorization, If-None-Match", .accessControlMaxAge: "600", .vary: "Origin",
            .cacheControl: "no-store",
        ]
        fields[.contentLength] = "0"
        return Response(head: HTTPResponse(status: .noContent, headerFields: fields))
    }

    /// Adds the CORS fields to an answer to a request from `origin` (nil: not a cross-origin request).
    func apply(to fields: inout HTTPFields, origin: String?) {
        fields[.vary] = "Origin"
        guard let origin, origins.contains(origin) else { return }
        fields[.accessControlAllowOrigin] = origin
        fields[.accessControlExposeHeaders] = "ETag, Link, Retry-After"
    }
}
