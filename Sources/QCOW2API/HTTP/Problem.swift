public import HTTPTypes
import QCOW2

/// An RFC 9457 problem: the body of every error answer (`application/problem+json`), rendering itself.
///
/// Every problem of the service is made here, the transport's 503 included (it is handed
/// ``API/overloaded(_:)``): the problem type URNs appear nowhere else.
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
    /// Extra header fields (e.g. `Allow`, `Retry-After`).
    public var fields: HTTPFields = [:]

    /// The prefix of every problem type.
    public static let typePrefix = "urn:qcowscope:problem:"

    /// Creates a problem.
    public init(status: Int, slug: String, title: String, detail: String) {
        self.status = status
        self.title = title
        self.type = Problem.typePrefix + slug
        self.detail = detail
    }

    /// The problem for a document that cannot be made.
    public init(_ error: DocumentError) {
        switch error {
        case .imageNotFound(let name):
            self.init(
                status: 404, slug: "image-not-found", title: "Image not found",
                detail: "no qcow2 image named '\(name)' in the images directory (names are one path component)")
        case .bitmapNotFound(let bitmap, let image):
            self.init(
                status: 404, slug: "bitmap-not-found", title: "Bitmap not found",
                detail: "image '\(image)' has no bitmap named '\(bitmap)'")
        case .checkpointNotFound(let name, let image):
            self.init(
                status: 404, slug: "checkpoint-not-found", title: "Checkpoint not found",
                detail: "no layer of the backing chain of image '\(image)' has a bitmap named '\(name)'")
        case .unreadable(let e, let image) where e.kind == .io:
            // The storage failed, not the image: a 5xx, and nothing of it is cached.
            self.init(
                status: 503, slug: "io-error", title: "Storage error",
                detail: "reading '\(image)' failed: \(e.description)")
            extra = [("image", .string(image)), ("error", ImageViews.error(e))]
            fields[.retryAfter] = "1"
            fields[.cacheControl] = "no-store"
        case .unreadable(let e, let image):
            self.init(
                status: 422, slug: "unreadable-image", title: "Unreadable image",
                detail: "'\(image)' cannot be read as qcow2: \(e.description)")
            extra = [("error", ImageViews.error(e))]
        case .invalidParameter(let name, let value, let allowed):
            self.init(
                status: 400, slug: "invalid-parameter", title: "Invalid query parameter",
                detail: "parameter '\(name)' = '\(value)' is invalid: allowed \(allowed.text)")
            extra = [("parameter", .string(name)), ("allowed", .string(allowed.text))]
        case .invalidQuery(let part):
            self.init(
                status: 400, slug: "invalid-query", title: "Invalid query string",
                detail: "malformed percent-encoding in '\(part)'")
        case .invalidPath(let what):
            self.init(status: 400, slug: "invalid-path", title: "Invalid path", detail: what)
        case .staleCursor(let parameter):
            self.init(
                status: 410, slug: "stale-cursor", title: "Cursor expired",
                detail: "the image changed since this cursor was issued; start again without a cursor")
            extra = [("parameter", .string(parameter))]
        case .unavailable(let why):
            self.init(status: 404, slug: "not-found", title: "Not found", detail: why)
        case .busy(let why):
            self.init(status: 503, slug: "overloaded", title: "Service unavailable", detail: why)
            fields[.retryAfter] = "1"
            fields[.cacheControl] = "no-store"
        }
    }

    /// 404 for a path no route serves.
    static func noRoute(_ path: some StringProtocol) -> Problem {
        Problem(status: 404, slug: "not-found", title: "Not found", detail: "no resource at \(path)")
    }

    /// 405 with `Allow`.
    static func methodNotAllowed(_ method: String) -> Problem {
        var p = Problem(
            status: 405, slug: "method-not-allowed", title: "Method not allowed",
            detail: "\(method) is not allowed: this service is read-only (GET and HEAD)")
        p.fields[.allow] = "GET, HEAD"
        return p
    }

    /// 401 with the bearer challenge (RFC 6750 §3): `error="invalid_token"` when a token was sent.
    static func unauthorized(presented: Bool) -> Problem {
        var p = Problem(
            status: 401, slug: "unauthorized", title: "Unauthorized",
            detail: presented
                ? "the bearer token is not valid" : "this endpoint needs an 'Authorization: Bearer <token>' header")
        var challenge = "Bearer realm=\"\(API.realm)\""
        if presented { challenge += ", error=\"invalid_token\"" }
        p.fields[.wwwAuthenticate] = challenge
        p.fields[.cacheControl] = "no-store"
        return p
    }

    /// 421 for a request naming a `Host` the daemon does not answer to (DNS rebinding).
    static func misdirected(_ host: String, allowed: [String]) -> Problem {
        var p = Problem(
            status: 421, slug: "misdirected-request", title: "Misdirected request",
            detail: "this daemon does not answer to the host '\(host.prefix(100))' (it answers to "
                + allowed.prefix(8).joined(separator: ", ") + (allowed.count > 8 ? ", ..." : "")
                + "; add a name with --allowed-host)")
        p.fields[.cacheControl] = "no-store"
        return p
    }

    /// 403 for an HTTPS request without a client certificate the configured CAs sign.
    static func clientCertificateRequired(presented: Bool) -> Problem {
        var p = Problem(
            status: 403, slug: "client-certificate-required", title: "Client certificate required",
            detail: presented
                ? "the client certificate is not signed by a CA this daemon trusts (or has expired)"
                : "this daemon answers only clients presenting a certificate its CA signed (curl --cert FILE --key FILE)")
        p.fields[.cacheControl] = "no-store"
        return p
    }

    /// 503 while the server sheds load, with `Retry-After`.
    static var overloaded: Problem {
        var p = Problem(
            status: 503, slug: "overloaded", title: "Service unavailable",
            detail: "too many requests in progress; retry after the delay in Retry-After")
        p.fields[.retryAfter] = "1"
        p.fields[.cacheControl] = "no-store"
        return p
    }

    /// 504: the answer needed a read of `image` that did not return within the I/O deadline.
    static func ioTimeout(image: String, file: String, pending: ReadActivity.Pending?, timeout: Duration) -> Problem {
        var p = Problem(
            status: 504, slug: "io-timeout", title: "Storage timeout",
            detail: "reading '\(image)' did not finish within \(Self.seconds(timeout)) (\(Self.describe(pending, image, file))); "
                + "other images are not affected")
        p.extra = Self.stallMembers(image, file, pending)
        p.fields[.cacheControl] = "no-store"
        return p
    }

    /// 503 at once: a read of `image` (or of `file`, a backing or data file below it) is stalled, so no
    /// further request for it waits (nor takes a thread).
    static func imageStalled(image: String, file: String, pending: ReadActivity.Pending, retryAfter: Duration) -> Problem {
        var p = Problem(
            status: 503, slug: "image-stalled", title: "Image storage stalled",
            detail: "a read of '\(image)' is stalled (\(Self.describe(pending, image, file))); its requests fail fast until it returns")
        p.extra = Self.stallMembers(image, file, pending)
        p.fields[.retryAfter] = String(max(1, retryAfter.components.seconds))
        p.fields[.cacheControl] = "no-store"
        return p
    }

    /// `image`, `file` (when the stall is on a file below it), `offset` (null while opening), `operation`
    /// and `waiting_seconds` of a stall.
    static func stallMembers(_ image: String, _ file: String, _ pending: ReadActivity.Pending?) -> [(String, JSONValue)] {
        let waited = pending.map { ContinuousClock.now - $0.since }
        return [("image", .string(image))] + (file == image ? [] : [("file", .string(file))]) + [
            ("offset", pending?.offset.map { .num($0) } ?? .null),
            ("operation", .string(pending == nil ? "unknown" : pending?.offset == nil ? "open" : "read")),
            ("waiting_seconds", waited.map { .double(Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18) } ?? .null),
        ]
    }

    private static func describe(_ pending: ReadActivity.Pending?, _ image: String, _ file: String) -> String {
        guard let pending else { return "no read in progress is known; the work itself was too slow" }
        if file != image { return "its backing or data file '\(file)': " + describe(pending, file, file) }
        let waited = Self.seconds(ContinuousClock.now - pending.since)
        if let o = pending.offset { return "a read at file offset \(o) has been waiting \(waited)" }
        return "opening the file has been waiting \(waited)"
    }

    private static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds &* 1000 &+ d.components.attoseconds / 1_000_000_000_000_000
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - String(ms % 1000).count))\(ms % 1000) s"
    }

    /// The answer for this problem at `instance` (the request path).
    public func response(instance: some StringProtocol, route: Route? = nil) -> Response {
        var o: [(String, JSONValue)] = [
            ("type", .string(type)), ("title", .string(title)), ("status", .num(status)), ("detail", .string(detail)),
            ("instance", .string(String(instance))),
        ]
        o += extra
        var f = fields
        f[.contentType] = "application/problem+json"
        return Response(
            head: HTTPResponse(status: .init(code: status), headerFields: f),
            body: JSONWriter(style: .compact).bytes(.object(o)) + [0x0a], route: route)
    }
}
