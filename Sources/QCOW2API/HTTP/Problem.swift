public import QCOW2

/// An RFC 9457 problem: the error body of every non-2xx answer (`application/problem+json`).
public struct Problem: Error, Sendable {
    /// HTTP status.
    public var status: Int
    /// Short, stable title for the problem type.
    public var title: String
    /// A URI naming the problem type.
    public var type: String
    /// What happened in this case.
    public var detail: String
    /// Extension members (e.g. `parameter`, `allowed`, `error`).
    public var extra: [(String, JSONValue)] = []
    /// Extra response headers (e.g. `Allow`, `Retry-After`).
    public var headers: [(name: String, value: String)] = []

    /// Creates a problem.
    public init(status: Int, slug: String, title: String, detail: String) {
        self.status = status
        self.title = title
        self.type = "urn:qcowscope:problem:" + slug
        self.detail = detail
    }

    /// 404 for an image that does not exist here (or a name that cannot exist).
    static func imageNotFound(_ name: String) -> Problem {
        Problem(status: 404, slug: "image-not-found", title: "Image not found",
            detail: "no qcow2 image named '\(name)' in the images directory (names are one path component)")
    }

    /// 404 for a bitmap name the image does not have.
    static func bitmapNotFound(_ name: String, image: String) -> Problem {
        Problem(status: 404, slug: "bitmap-not-found", title: "Bitmap not found",
            detail: "image '\(image)' has no bitmap named '\(name)'")
    }

    /// 404 for a path no route serves.
    static func noRoute(_ path: String) -> Problem {
        Problem(status: 404, slug: "not-found", title: "Not found", detail: "no resource at \(path)")
    }

    /// 400 for a bad query parameter, naming it and its allowed range.
    static func badParameter(_ name: String, _ value: String, allowed: String) -> Problem {
        var p = Problem(status: 400, slug: "invalid-parameter", title: "Invalid query parameter",
            detail: "parameter '\(name)' = '\(value)' is invalid: allowed \(allowed)")
        p.extra = [("parameter", .string(name)), ("allowed", .string(allowed))]
        return p
    }

    /// 422 for a file that is not a readable qcow2 image, with the parser's error.
    static func unreadable(_ e: QCOW2Error, image: String) -> Problem {
        var p = Problem(status: 422, slug: "unreadable-image", title: "Unreadable image",
            detail: "'\(image)' cannot be read as qcow2: \(e.description)")
        p.extra = [("error", ImageViews.error(e))]
        return p
    }

    /// 405 with `Allow`.
    static func methodNotAllowed(_ method: String) -> Problem {
        var p = Problem(status: 405, slug: "method-not-allowed", title: "Method not allowed",
            detail: "\(method) is not allowed: this service is read-only (GET and HEAD)")
        p.headers = [("Allow", "GET, HEAD")]
        return p
    }

    /// The response for this problem at `instance`.
    func response(instance: String) -> APIResponse {
        var o: [(String, JSONValue)] = [
            ("type", .string(type)), ("title", .string(title)), ("status", .num(status)), ("detail", .string(detail)),
            ("instance", .string(instance)),
        ]
        o += extra
        return APIResponse(
            status: status, headers: [("Content-Type", "application/problem+json")] + headers,
            body: JSONWriter(style: .compact).bytes(.object(o)) + [0x0a])
    }
}

extension ImageViews {
    /// A parser error as JSON.
    public static func error(_ e: QCOW2Error) -> JSONValue {
        .obj([
            "kind": .string(e.kind.rawValue), "structure": .string(e.structure), "field": .str(e.field),
            "value": .str(e.value), "offset": e.offset.map { .num($0) } ?? .null, "message": .string(e.message),
        ])
    }
}
