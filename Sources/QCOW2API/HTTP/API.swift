public import HTTPTypes
import QCOW2

/// The HTTP face of the service: finds a request's route once, checks access and method, answers
/// conditional requests, and serves documents, the spec, the metrics and the web view's files.
///
/// Transport-agnostic: it takes a swift-http-types `HTTPRequest` and returns a ``Response``, so the
/// daemon, tests and tools all call it the same way. Thread-safe; call it from any thread.
public final class API: Sendable {
    /// A static file of the built-in web view.
    public struct Asset: Sendable {
        /// The `Content-Type`.
        public var contentType: String
        /// The bytes.
        public var body: [UInt8]

        /// Creates an asset.
        public init(contentType: String, body: [UInt8]) {
            self.contentType = contentType
            self.body = body
        }

        /// A strong validator of the bytes: their length and FNV-1a hash.
        var etag: String {
            "\"ui-\(body.count)-\(body.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 })\""
        }
    }

    /// Who may call what when a bearer token is configured (see ``Route/Access``).
    public struct AccessPolicy: Sendable {
        /// Whether the `Authorization` field's value (nil when absent) carries a valid token.
        public var accepts: @Sendable (String?) -> Bool
        /// Whether `/healthz` is served without the token.
        public var openHealth: Bool
        /// Whether `/metrics` is served without the token.
        public var openMetrics: Bool

        /// Creates a policy.
        public init(accepts: @escaping @Sendable (String?) -> Bool, openHealth: Bool = false, openMetrics: Bool = false) {
            self.accepts = accepts
            self.openHealth = openHealth
            self.openMetrics = openMetrics
        }

        /// Whether requests for `route` (nil: no route matched) must carry the token.
        func needsToken(_ route: Route?) -> Bool {
            switch route?.access {
            case .open?: false
            case .health?: !openHealth
            case .metrics?: !openMetrics
            case .token?, nil: true
            }
        }
    }

    /// The realm named in `WWW-Authenticate`.
    public static let realm = "qcowscope"

    /// The documents over the images directory.
    public let documents: Documents
    /// The images.
    public var catalog: ImageCatalog { documents.catalog }
    private let openAPI: [UInt8]
    private let ui: [String: Asset]
    private let metrics: (@Sendable () -> [UInt8])?
    let access: AccessPolicy?
    let hosts: HostPolicy?
    let cors: CORSPolicy?
    private let cache = ResponseCache()
    /// Where file work runs and its deadlines; nil: inline (see ``respond(_:answer:)``).
    public let io: IOPolicy?

    /// Creates the API over `catalog`.
    ///
    /// - Parameters:
    ///   - openAPI: served at `/v1/openapi.yaml`.
    ///   - ui: the web view's files by name (`index.html` among them), served under `/ui/`.
    ///   - metrics: the Prometheus exposition served at `/metrics` (404 when nil).
    ///   - access: the token policy; nil when no token is configured (nothing is checked).
    ///   - io: where file work runs and its deadlines (the daemon); nil reads inline.
    ///   - hosts: the `Host` names answered (421 for others); nil answers any.
    ///   - cors: the other origins allowed to read answers; nil allows none (no CORS fields).
    public init(
        catalog: ImageCatalog, openAPI: [UInt8] = [], ui: [String: Asset] = [:],
        metrics: (@Sendable () -> [UInt8])? = nil, access: AccessPolicy? = nil, io: IOPolicy? = nil,
        hosts: HostPolicy? = nil, cors: CORSPolicy? = nil
    ) {
        self.io = io
        self.hosts = hosts
        self.cors = cors
        self.documents = Documents(catalog: catalog)
        self.openAPI = openAPI
        self.ui = ui
        self.metrics = metrics
        self.access = access
    }

    /// A request target split once: path, query and the route the path matches.
    struct Target: Sendable {
        var path: Substring
        var query: Substring
        var match: RouteMatch?

        /// Splits the request's target at the first `?` and matches the path against the route table.
        init(_ request: HTTPRequest) {
            let target = Substring(request.path ?? "")
            if let q = target.firstIndex(of: "?") {
                path = target[..<q]
                query = target[target.index(after: q)...]
            } else {
                path = target
                query = ""
            }
            match = RouteTable.match(path)
        }
    }

    /// Answers one request. Never traps and never returns 500 for anything a request or image contains.
    public func respond(_ request: HTTPRequest) -> Response {
        var response = respond(request, Target(request))
        cors?.apply(to: &response.head.headerFields, origin: request.headerFields[.origin])
        return response
    }

    /// The answer to a request this API does not serve whatever it asks: a `Host` that is not
    /// allowed (421), or a CORS preflight (204, or 403 for an origin not allowed). Nil otherwise.
    func refusalOrPreflight(_ request: HTTPRequest) -> Response? {
        if let hosts, !hosts.allows(request.authority) {
            var r = Problem.misdirected(request.authority ?? "", allowed: hosts.allowedNames)
                .response(instance: (request.path ?? "").prefix { $0 != "?" })
            SecurityHeaders.apply(to: &r.head.headerFields, route: nil)
            return r
        }
        if let cors, var r = cors.preflight(request) {
            SecurityHeaders.apply(to: &r.head.headerFields, route: nil)
            return r
        }
        return nil
    }

    /// Answers a request whose target was already split and matched: access, method, then the route's answer.
    ///
    /// Every error becomes its problem response here, and every answer gets its security headers here.
    func respond(_ request: HTTPRequest, _ target: Target) -> Response {
        let match = target.match
        let path = target.path
        if let refused = refusalOrPreflight(request) { return refused }
        var response: Response
        do throws(Problem) {
            if let access, access.needsToken(match?.route) {
                let authorization = request.headerFields[.authorization]
                if !access.accepts(authorization) { throw Problem.unauthorized(presented: authorization != nil) }
            }
            guard let match else { throw Problem.noRoute(path) }
            guard request.method == .get || request.method == .head else {
                throw Problem.methodNotAllowed(request.method.rawValue)
            }
            switch match.route.id {
            case .root:
                guard !ui.isEmpty else { throw Problem.noRoute(path) }
                response = Self.redirect("/ui/")
            case .ui:
                response = try asset(request, match, path: path)
            case .health:
                response = .json(.obj(["status": .string("ok")]), fields: [.cacheControl: "no-store"])
                response.reuse = Reuse(condition: .always, etag: nil)
            case .metrics:
                guard let metrics else { throw Problem.noRoute(path) }
                let f: HTTPFields = [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"]
                response = Response(head: HTTPResponse(status: .ok, headerFields: f), body: metrics())
            case .openapi:
                let f: HTTPFields = [.contentType: "application/yaml", .cacheControl: "no-cache"]
                response = Response(head: HTTPResponse(status: .ok, headerFields: f), body: openAPI)
                response.reuse = Reuse(condition: .always, etag: nil)
            case .rules:
                response = Self.rulesAnswer(request)
            case .images:
                do throws(DocumentError) { response = try listing(match.route, query: target.query) } catch { throw Problem(error) }
            default:
                do throws(DocumentError) {
                    // Never nil without `cachedOnly`.
                    response = try imageDocument(request, match, path: path, query: target.query) ?? Problem.overloaded.response(instance: path)
                } catch {
                    throw Problem(error)
                }
            }
        } catch {
            response = error.response(instance: path)
        }
        response.route = match?.route
        SecurityHeaders.apply(to: &response.head.headerFields, route: match?.route)
        return response
    }

    /// The answer to a request refused for want of a verified client certificate: 403 problem+json
    /// (`presented`: one was sent but did not verify), nothing else done.
    public func clientCertificateRequired(_ request: HTTPRequest, presented: Bool) -> Response {
        let path = (request.path ?? "").prefix { $0 != "?" }
        var response = Problem.clientCertificateRequired(presented: presented).response(instance: path)
        SecurityHeaders.apply(to: &response.head.headerFields, route: nil)
        return response
    }

    /// The answer while the server sheds load: 503 problem+json with `Retry-After`, nothing else done.
    public func overloaded(_ request: HTTPRequest) -> Response {
        let path = (request.path ?? "").prefix { $0 != "?" }
        var response = Problem.overloaded.response(instance: path)
        SecurityHeaders.apply(to: &response.head.headerFields, route: nil)
        return response
    }

    /// The rule registry as JSON, made once (it never changes while the daemon runs).
    private static let rules: Asset = Asset(
        contentType: "application/json", body: JSONWriter(style: .compact).bytes(ImageViews.rules()) + [0x0a])

    /// The registry's ETag: 16 hex digits of a 64-bit FNV-1a hash of its bytes (the form of every
    /// ETag of the API, see `components/headers/ETag`).
    private static let rulesETag: String = {
        let hash = rules.body.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return "\"" + String(repeating: "0", count: 16 - hex.count) + hex + "\""
    }()

    /// `/v1/rules`, or 304 when the client holds it.
    private static func rulesAnswer(_ request: HTTPRequest) -> Response {
        let etag = rulesETag
        var f: HTTPFields = [.eTag: etag, .cacheControl: "no-cache"]
        if notModified(request, etag) { return Response(head: HTTPResponse(status: .notModified, headerFields: f)) }
        f[.contentType] = rules.contentType
        var response = Response(head: HTTPResponse(status: .ok, headerFields: f), body: rules.body)
        response.reuse = Reuse(condition: .always, etag: etag)
        return response
    }

    /// A file of the web view, or 304 when the client holds it.
    private func asset(_ request: HTTPRequest, _ match: RouteMatch, path: Substring) throws(Problem) -> Response {
        if match.rawAsset == "/" { return Self.redirect("/ui/") }
        let name = match.rawAsset.isEmpty ? "index.html" : String(match.rawAsset)
        guard let asset = ui[name] else { throw Problem.noRoute(path) }
        var f: HTTPFields = [.eTag: asset.etag, .cacheControl: "no-cache"]
        if Self.notModified(request, asset.etag) { return Response(head: HTTPResponse(status: .notModified, headerFields: f)) }
        f[.contentType] = asset.contentType
        var response = Response(head: HTTPResponse(status: .ok, headerFields: f), body: asset.body)
        response.reuse = Reuse(condition: .always, etag: asset.etag)
        return response
    }

    /// The images listing (entries looked up under the I/O policy's deadline when there is one).
    private func listing(_ route: Route, query: Substring) throws(DocumentError) -> Response {
        let params = try Parameters(query: query)
        // Taken before anything is read: a change while the page is made makes it not current.
        let stamp = catalog.directoryStamp()
        let checks = catalog.checks.changeCount
        let listed = ListedImages()
        let doc: Document
        let documents = documents
        if let io {
            doc = try documents.listing(params) { names in Self.listItems(names, documents: documents, io: io, into: listed) }
        } else {
            doc = try documents.listing(params) { names in names.map { listed.add(documents.listedItem($0)) } }
        }
        var f: HTTPFields = [.cacheControl: "no-cache"]
        if let link = Self.link(route.path(), doc.next) { f[.link] = link }
        var response = Response.json(doc.value, fields: f)
        if let stamp, let images = listed.images {
            response.reuse = Reuse(condition: .listing(stamp, checks: checks, images: images), etag: nil)
        }
        return response
    }

    /// The answer to a request that a kept body answers, made without reading any file, or nil when the
    /// request needs the I/O path (the daemon then runs ``respond(_:)`` on its executor).
    ///
    /// Only for routes whose bodies are kept and depend on the image file alone (no lock probe, no
    /// backing chain), for an image the catalog knows unchanged without a system call on it
    /// (``ImageCatalog/freshEntry(named:)``: inotify on a local directory), and a body already rendered
    /// for the same ETag. Anything else, errors included, is left to the I/O path, which answers it as before.
    func cachedAnswer(_ request: HTTPRequest, _ target: Target) -> Response? {
        guard let match = target.match, match.route.caching == .imageVersion(keepBody: true), !match.route.probesLocks,
            !match.route.readsBackingChain, request.method == .get || request.method == .head
        else { return nil }
        if let access, access.needsToken(match.route), !access.accepts(request.headerFields[.authorization]) { return nil }
        guard let nameBytes = PercentEncoding.decode(match.rawImage), ImageCatalog.isValidName(nameBytes),
            let name = ByteString(nameBytes).utf8, let entry = catalog.freshEntry(named: name)
        else { return nil }
        let found: Response?
        do throws(DocumentError) {
            found = try imageDocument(request, match, path: target.path, query: target.query, opened: (entry, nil), cachedOnly: true)
        } catch {
            return nil
        }
        guard var response = found else { return nil }
        response.route = match.route
        SecurityHeaders.apply(to: &response.head.headerFields, route: match.route)
        return response
    }

    /// A document about one image: checked, then 304 or the (cached) rendered body.
    ///
    /// `opened` is the image when the caller already holds it; with `cachedOnly`, nil is returned
    /// instead of rendering a body that is not kept yet.
    private func imageDocument(
        _ request: HTTPRequest, _ match: RouteMatch, path: Substring, query: Substring,
        opened: (entry: ImageEntry, locks: LockState?)? = nil, cachedOnly: Bool = false
    ) throws(DocumentError) -> Response? {
        let route = match.route
        guard let nameBytes = PercentEncoding.decode(match.rawImage) else {
            throw .imageNotFound(String(match.rawImage))
        }
        var bitmapBytes: [UInt8]? = nil
        if !match.rawBitmap.isEmpty {
            guard let b = PercentEncoding.decode(match.rawBitmap) else {
                throw .invalidPath("malformed percent-encoding in the bitmap name")
            }
            bitmapBytes = b
        }
        var index: UInt64? = nil
        if !match.rawIndex.isEmpty {
            // A decimal table index: digits only, no sign, no percent-encoding.
            guard match.rawIndex.utf8.count <= 20, match.rawIndex.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let i = UInt64(match.rawIndex)
            else { throw .invalidPath("the L1 index '\(match.rawIndex.prefix(32))' is not a decimal integer") }
            index = i
        }
        // Validate the query before opening anything, so a bad request never looks cached.
        let parameters = try Parameters(query: query)
        let resolved: (entry: ImageEntry, locks: LockState?)
        if let opened { resolved = opened } else { resolved = try documents.open(nameBytes, probeLocks: route.probesLocks) }
        let (entry, locks) = resolved
        // A read of the file that fails from here on makes the answer a 503 (see `storageFailure`).
        let failures = entry.activity?.failureCount
        let plan = try documents.plan(
            route.id, entry: entry, locks: locks, bitmap: bitmapBytes, index: index, parameters: parameters)
        // The body is a function of the file version and the view key (path, query, lock state).
        let viewKey = String(path) + "?" + String(query) + (locks.map { "\n" + $0.etagComponent } ?? "")
            + (plan.version == 0 ? "" : "\n" + String(plan.version, radix: 16))
        let etag = entry.file.etag(view: viewKey)
        var fields: HTTPFields = [.eTag: etag, .cacheControl: "no-cache"]
        if Self.notModified(request, etag) {
            return Response(head: HTTPResponse(status: .notModified, headerFields: fields))
        }
        let base = route.path(image: nameBytes, bitmap: bitmapBytes ?? [], index: index)
        let render = { () -> Result<ResponseCache.Rendered, Problem> in
            do throws(DocumentError) {
                let doc = try entry.watchingFailures { () throws(DocumentError) in try plan.render() }
                if let failed = Self.storageFailure(entry, since: failures, changed: { self.catalog.hasChanged(since: entry) }) {
                    return .failure(Problem(.unreadable(failed, image: entry.file.name)))
                }
                return .success(
                    .init(
                        body: JSONWriter(style: .compact).bytes(doc.value) + [0x0a], link: Self.link(base, doc.next),
                        cacheable: entry.activity?.failureCount == failures && doc.retryAfter == nil,
                        retryAfter: doc.retryAfter))
            } catch {
                return .failure(Problem(error))
            }
        }
        // Not kept when the lock probe failed: its error text is not in the key.
        let keep = route.caching == .imageVersion(keepBody: true) && locks?.error == nil
        let result: Result<ResponseCache.Rendered, Problem>
        if cachedOnly {
            guard keep, let kept = cache.peek(etag) else { return nil }
            result = kept
        } else {
            result = keep ? cache.rendered(etag, render) : render()
        }
        switch result {
        case .success(let r):
            fields[.contentType] = "application/json"
            if let link = r.link { fields[.link] = link }
            if let retry = r.retryAfter {
                // Not final (a check still running): no validator, not stored, ask again later.
                fields[.eTag] = nil
                fields[.cacheControl] = "no-store"
                fields[.retryAfter] = String(retry)
                return Response(head: HTTPResponse(status: .accepted, headerFields: fields), body: r.body)
            }
            var response = Response(head: HTTPResponse(status: .ok, headerFields: fields), body: r.body)
            // Given again while the file (and lock state) stay as they are: never an answer that shows a
            // check verdict (a version), a backing chain, or one made while a read failed.
            if keep, r.cacheable, plan.version == 0, !route.readsBackingChain, catalog.watchesChanges {
                response.reuse = Reuse(condition: .image(Reuse.Parsed(entry), locks: locks, free: locks?.isFree ?? false), etag: etag)
            }
            return response
        case .failure(let p):
            return p.response(instance: path)
        }
    }

    /// The read that failed while an answer about `entry` was made (the failure count moved past
    /// `before`), as an I/O error: the storage failed, not the image, so the answer is `503 io-error`
    /// naming the errno (or the read that ended early) and the file offset, never a document with a
    /// field missing for a reason that is gone by the next request. Nil when no read failed, and for a
    /// read that ended early because the file was truncated or rewritten meanwhile (`changed` says so,
    /// from inotify, or its size changed): that answer stands as made, and the next request reads the
    /// new file. (Its change time cannot tell: a truncation and a rewrite within one clock tick keep it.)
    static func storageFailure(_ entry: ImageEntry, since before: Int?, changed: () -> Bool = { false }) -> QCOW2Error? {
        guard let activity = entry.activity, let before, activity.failureCount != before, var e = activity.lastFailure else {
            return nil
        }
        if e.kind != .io {
            // Truncated or rewritten meanwhile: inotify saw it, or the size is not the parsed one's.
            guard let file = entry.image.source as? FileImageSource, let now = file.currentState, now.size == file.size,
                !changed()
            else { return nil }
            e.kind = .io
            e.value = "short read"
        }
        return e
    }

    /// `308 Permanent Redirect` to `location`.
    private static func redirect(_ location: String) -> Response {
        Response(head: HTTPResponse(status: .permanentRedirect, headerFields: [.location: location, .cacheControl: "no-cache"]))
    }

    /// The `Link: <path?query>; rel="next"` value for a next page, nil on the last page.
    static func link(_ path: String, _ next: [(name: String, value: String)]?) -> String? {
        guard let next else { return nil }
        let query = next.map { $0.name + "=" + PercentEncoding.encode($0.value) }.joined(separator: "&")
        return "<\(path)?\(query)>; rel=\"next\""
    }

    /// Whether the request's `If-None-Match` matches `etag`.
    private static func notModified(_ request: HTTPRequest, _ etag: String) -> Bool {
        let values = request.headerFields[values: .ifNoneMatch]
        return !values.isEmpty && matches(values.joined(separator: ","), etag)
    }

    /// RFC 9110 weak comparison of an If-None-Match list against `etag`.
    static func matches(_ header: String, _ etag: String) -> Bool {
        for raw in header.split(separator: ",") {
            var t = raw.drop { $0 == " " || $0 == "\t" }
            while t.last == " " || t.last == "\t" { t = t.dropLast() }
            if t == "*" { return true }
            if t.hasPrefix("W/") { t = t.dropFirst(2) }
            if t == etag { return true }
        }
        return false
    }
}
