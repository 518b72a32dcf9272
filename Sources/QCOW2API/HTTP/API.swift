public import QCOW2

/// The HTTP API over an ``ImageCatalog``: routing, JSON views, problem+json, ETags and pagination.
///
/// Transport-agnostic: it takes an ``APIRequest`` and returns an ``APIResponse``, so the daemon,
/// tests and tools can all call it. Thread-safe; call it from any thread.
public final class API: Sendable {
    /// Every route: method-independent path patterns (GET and HEAD are served for each).
    public static let routes: [String] = [
        "/healthz", "/v1/openapi.yaml", "/v1/images", "/v1/images/{image}", "/v1/images/{image}/header",
        "/v1/images/{image}/extensions", "/v1/images/{image}/bitmaps", "/v1/images/{image}/bitmaps/{bitmap}",
        "/v1/images/{image}/bitmaps/{bitmap}/table", "/v1/images/{image}/bitmaps/{bitmap}/extents",
        "/v1/images/{image}/snapshots", "/v1/images/{image}/findings", "/v1/images/{image}/locks",
    ]

    /// Pagination limits: (default, maximum).
    public enum Paging {
        /// `/v1/images`.
        public static let images: (UInt64, UInt64) = (100, 1000)
        /// `/v1/images/{image}/bitmaps`.
        public static let bitmaps: (UInt64, UInt64) = (1000, 10000)
        /// `/v1/images/{image}/bitmaps/{bitmap}/table`.
        public static let table: (UInt64, UInt64) = (256, UInt64(Limits.maxTablePage))
        /// `/v1/images/{image}/bitmaps/{bitmap}/extents`.
        public static let extents: (UInt64, UInt64) = (1000, 10000)
        /// `/v1/images/{image}/snapshots`.
        public static let snapshots: (UInt64, UInt64) = (1000, 10000)
    }

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
    }

    /// The images.
    public let catalog: ImageCatalog
    private let openAPI: [UInt8]
    private let ui: [String: Asset]

    /// Creates the API over `catalog`; `openAPI` is served at `/v1/openapi.yaml`, `ui` (file name →
    /// asset, `index.html` among them) under `/ui/`.
    public init(catalog: ImageCatalog, openAPI: [UInt8] = [], ui: [String: Asset] = [:]) {
        self.catalog = catalog
        self.openAPI = openAPI
        self.ui = ui
    }

    /// Headers of every web view response: no inline script, nothing from elsewhere, no referrer.
    public static let uiHeaders: [(name: String, value: String)] = [
        (
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
        ),
        ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"), ("Cache-Control", "no-cache"),
    ]

    private func uiResponse(_ parts: [Substring], _ req: APIRequest) throws(Problem) -> APIResponse? {
        if parts == [""] {
            guard !ui.isEmpty else { throw Problem.noRoute(req.rawPath) }
            return APIResponse(status: 308, headers: [("Location", "/ui/"), ("Cache-Control", "no-cache")])
        }
        guard parts.first == "ui", parts.count == 2 || (parts.count == 1) else { return nil }
        if parts.count == 1 {
            return APIResponse(status: 308, headers: [("Location", "/ui/"), ("Cache-Control", "no-cache")])
        }
        let file = parts[1].isEmpty ? "index.html" : String(parts[1])
        guard let asset = ui[file] else { throw Problem.noRoute(req.rawPath) }
        let etag = "\"ui-\(asset.body.count)-\(asset.body.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 })\""
        if let inm = req.header("If-None-Match"), API.matches(inm, etag) {
            return APIResponse(status: 304, headers: [("ETag", etag)] + API.uiHeaders)
        }
        return APIResponse(status: 200, headers: [("Content-Type", asset.contentType), ("ETag", etag)] + API.uiHeaders, body: asset.body)
    }

    /// Answers one request. Never traps and never returns 500 for anything a request or image contains.
    public func handle(_ req: APIRequest) -> APIResponse {
        var resp: APIResponse
        do {
            resp = try route(req)
        } catch {
            resp = error.response(instance: req.rawPath)
        }
        resp.headers.append(("X-Content-Type-Options", "nosniff"))
        return resp
    }

    private func route(_ req: APIRequest) throws(Problem) -> APIResponse {
        let segs = req.rawPath.split(separator: "/", omittingEmptySubsequences: false)
        guard req.rawPath.hasPrefix("/"), segs.count >= 2 else { throw Problem.noRoute(req.rawPath) }
        let parts = Array(segs.dropFirst())
        let isRead = req.method == "GET" || req.method == "HEAD"
        func allow() throws(Problem) {
            if !isRead { throw Problem.methodNotAllowed(req.method) }
        }
        if parts.first == "ui" || parts == [""] {
            try allow()
            if let r = try uiResponse(parts, req) { return r }
        }
        switch parts.count {
        case 1 where parts[0] == "healthz":
            try allow()
            return .json(.obj(["status": .string("ok")]), extra: [("Cache-Control", "no-store")])
        case 2 where parts[0] == "v1" && parts[1] == "openapi.yaml":
            try allow()
            return APIResponse(status: 200, headers: [("Content-Type", "application/yaml"), ("Cache-Control", "no-cache")], body: openAPI)
        case 2 where parts[0] == "v1" && parts[1] == "images":
            try allow()
            return try listImages(Query(req.rawQuery), req: req)
        default:
            break
        }
        guard parts.count >= 3, parts[0] == "v1", parts[1] == "images", !parts[2].isEmpty else {
            throw Problem.noRoute(req.rawPath)
        }
        let rest = Array(parts.dropFirst(3))
        let view: String
        var bitmapSeg: Substring? = nil
        switch rest.count {
        case 0: view = "summary"
        case 1 where ["header", "extensions", "bitmaps", "snapshots", "findings", "locks"].contains(rest[0]): view = String(rest[0])
        case 2 where rest[0] == "bitmaps" && !rest[1].isEmpty:
            view = "bitmap"
            bitmapSeg = rest[1]
        case 3 where rest[0] == "bitmaps" && !rest[1].isEmpty && (rest[2] == "table" || rest[2] == "extents"):
            view = String(rest[2])
            bitmapSeg = rest[1]
        default: throw Problem.noRoute(req.rawPath)
        }
        try allow()
        guard let nameBytes = PercentEncoding.decode(parts[2]), ImageCatalog.isValidName(nameBytes),
            let name = ByteString(nameBytes).utf8
        else {
            throw Problem.imageNotFound(String(decoding: PercentEncoding.decode(parts[2]) ?? [], as: UTF8.self))
        }
        var bitmapName: ByteString? = nil
        if let bitmapSeg {
            guard let b = PercentEncoding.decode(bitmapSeg) else {
                throw Problem(status: 400, slug: "invalid-path", title: "Invalid path", detail: "malformed percent-encoding in the bitmap name")
            }
            bitmapName = ByteString(b)
        }
        let query = try Query(req.rawQuery)
        let entry: ImageCatalog.Entry
        // Views that show the lock state probe it on every request (never cached) and put it in
        // their ETag, so a poller sees a writer appear or leave although the file is unchanged.
        let locks: LockState?
        do {
            (entry, locks) = try catalog.lookup(
                named: name, probeLocks: ["summary", "locks", "bitmaps", "bitmap", "table", "extents"].contains(view))
        } catch {
            switch error {
            case .notFound: throw Problem.imageNotFound(name)
            case .unreadable(let e): throw Problem.unreadable(e, image: name)
            }
        }
        // Validate the query before answering 304, so a bad request never looks cached.
        let doc: () throws(Problem) -> (JSONValue, [(name: String, value: String)])
        let image = entry.image
        switch view {
        case "summary":
            doc = { () throws(Problem) in
                (ImageViews.summary(image, file: entry.file, findings: entry.findings(), dirty: entry.dirtyCount, locks: locks), [])
            }
        case "header": doc = { () throws(Problem) in (ImageViews.header(image), []) }
        case "extensions": doc = { () throws(Problem) in (ImageViews.extensions(image), []) }
        case "findings": doc = { () throws(Problem) in (ImageViews.findings(entry.findings()), []) }
        case "locks":
            guard let locks else { throw Problem.noRoute(req.rawPath) }
            doc = { () throws(Problem) in (ImageViews.locks(locks, image: name), []) }
        case "bitmaps":
            let limit = try query.integer("limit", default: Paging.bitmaps.0, range: 1...Paging.bitmaps.1)
            let cursor = try query.integer("cursor", default: 0, range: 0...UInt64(image.bitmaps.count))
            doc = { () throws(Problem) in self.bitmapsPage(entry, name: name, limit: limit, cursor: cursor, locks: locks) }
        case "snapshots":
            let limit = try query.integer("limit", default: Paging.snapshots.0, range: 1...Paging.snapshots.1)
            let offset = try query.integer("offset", default: 0, range: 0...UInt64(image.header.nbSnapshots))
            doc = { () throws(Problem) in self.snapshotsPage(image, name: name, limit: limit, offset: offset) }
        case "bitmap", "table", "extents":
            guard let bitmapName, let b = image.bitmap(named: bitmapName) else {
                throw Problem.bitmapNotFound(bitmapName?.escaped ?? "", image: name)
            }
            if view == "bitmap" {
                doc = { () throws(Problem) in
                    (ImageViews.bitmap(b, in: image, findings: image.findings, dirty: entry.dirtyCount, locks: locks), [])
                }
            } else if view == "extents" {
                let size = image.header.size
                let start = try query.integer("start", default: 0, range: 0...(size == 0 ? 0 : size - 1))
                let length = try query.integer("length", default: size - start, range: 1...UInt64.max)
                let limit = try query.integer("limit", default: Paging.extents.0, range: 1...Paging.extents.1)
                var from = start
                if let c = query.string("cursor") {
                    from = try API.parseCursor(c, etag: entry.file.etag(view: "extents"), start: start, length: length)
                }
                doc = { () throws(Problem) in
                    try self.extentsPage(
                        entry, b, name: name, start: start, length: length, from: from, limit: limit, locks: locks)
                }
            } else {
                let total = UInt64(b.tableSize)
                let limit = try query.integer("limit", default: Paging.table.0, range: 1...Paging.table.1)
                let offset = try query.integer("offset", default: 0, range: 0...(total == 0 ? 0 : total - 1))
                doc = { () throws(Problem) in
                    try self.tablePage(image, b, name: name, limit: limit, offset: offset, locks: locks)
                }
            }
        default: throw Problem.noRoute(req.rawPath)
        }
        let viewKey = req.rawPath + "?" + req.rawQuery + (locks.map { "\n" + $0.etagComponent } ?? "")
        let etag = entry.file.etag(view: viewKey)
        let cacheHeaders: [(name: String, value: String)] = [("ETag", etag), ("Cache-Control", "no-cache")]
        if let inm = req.header("If-None-Match"), API.matches(inm, etag) {
            return APIResponse(status: 304, headers: cacheHeaders)
        }
        // The body is a function of the file version (the entry) and the view key (path, query, lock
        // state), so it is rendered once per pair and kept with the entry. Not for the locks view, nor
        // when the lock probe failed: their text (owner, error message) is not all in the key.
        let cacheable = view != "locks" && locks?.error == nil
        if cacheable, let r = entry.rendered(viewKey) {
            return APIResponse(status: 200, headers: [("Content-Type", "application/json")] + cacheHeaders + r.headers, body: r.body)
        }
        let (value, extra) = try doc()
        let resp = APIResponse.json(value, extra: cacheHeaders + extra)
        if cacheable { entry.storeRendered(viewKey, .init(body: resp.body, headers: extra)) }
        return resp
    }

    /// RFC 9110 weak comparison of an If-None-Match list against `etag`.
    static func matches(_ header: String, _ etag: String) -> Bool {
        for raw in header.split(separator: ",") {
            var t = raw.trimmingPrefixSpaces()
            if t == "*" { return true }
            if t.hasPrefix("W/") { t = t.dropFirst(2) }
            if t == etag { return true }
        }
        return false
    }

    private func link(_ path: String, _ query: String) -> (name: String, value: String) {
        ("Link", "<\(path)?\(query)>; rel=\"next\"")
    }

    private func bitmapsPage(_ entry: ImageCatalog.Entry, name: String, limit: UInt64, cursor: UInt64, locks: LockState?)
        -> (JSONValue, [(name: String, value: String)])
    {
        let image = entry.image
        let all = image.bitmaps
        let start = Int(cursor)
        let end = min(all.count, start + Int(limit))
        let page = all[start..<end]
        let next: UInt64? = end < all.count ? UInt64(end) : nil
        let path = "/v1/images/\(PercentEncoding.encode(name))/bitmaps"
        var o: [(String, JSONValue)] = [
            ("extension", ImageViews.bitmapsExtension(image)),
            ("autoclear_bitmaps", .bool(image.header.bitmapsConsistentBit)),
        ]
        if let locks { o += ImageViews.staleFields(locks) }
        o += [
            ("total", .num(all.count)), ("cursor", .num(cursor)), ("limit", .num(limit)),
            (
                "bitmaps",
                .array(
                    page.map { ImageViews.bitmap($0, in: image, findings: image.findings, dirty: entry.dirtyCount, locks: locks) })
            ),
            ("next", next.map { .string(String($0)) } ?? .null),
        ]
        let value: JSONValue = .object(o)
        return (value, next.map { [link(path, "cursor=\($0)&limit=\(limit)")] } ?? [])
    }

    private func tablePage(
        _ image: QCOW2Image, _ b: BitmapDirectoryEntry, name: String, limit: UInt64, offset: UInt64, locks: LockState?
    ) throws(Problem) -> (JSONValue, [(name: String, value: String)])
    {
        let total = UInt64(b.tableSize)
        let entries: [BitmapTableEntry]
        do {
            entries = try image.bitmapTable(b, offset: offset, limit: Int(limit))
        } catch {
            throw Problem.unreadable(error, image: name)
        }
        let end = offset + UInt64(entries.count)
        let next: UInt64? = end < total ? end : nil
        let path = "/v1/images/\(PercentEncoding.encode(name))/bitmaps/\(PercentEncoding.encode(b.name.bytes))/table"
        var o: [(String, JSONValue)] = []
        ImageViews.text("bitmap", b.name, into: &o)
        o += [
            ("total", .num(total)), ("offset", .num(offset)), ("limit", .num(limit)),
            ("cluster_size", .num(image.header.clusterSize)),
            ("bytes_per_entry", b.bytesPerTableEntry(clusterSize: image.header.clusterSize).map { .num($0) } ?? .null),
            ("consistent", .bool(image.isConsistent(b))),
        ]
        if let locks { o += ImageViews.staleFields(locks) }
        o += [
            ("entries", .array(entries.map(ImageViews.tableEntry))),
            ("next", next.map { .num($0) } ?? .null),
        ]
        return (.object(o), next.map { [link(path, "offset=\($0)&limit=\(limit)")] } ?? [])
    }

    /// Decodes an extents cursor `<offset>-<version>`: 400 when malformed or outside the range,
    /// 410 Gone when the image changed since the cursor was issued.
    static func parseCursor(_ c: String, etag: String, start: UInt64, length: UInt64) throws(Problem) -> UInt64 {
        let parts = c.split(separator: "-", maxSplits: 1)
        let allowed = "the `next` value of a previous page of the same query"
        guard parts.count == 2, parts[0].count <= 20, parts[0].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let off = UInt64(parts[0])
        else { throw Problem.badParameter("cursor", String(c.prefix(64)), allowed: allowed) }
        let version = parts[1]
        guard version.utf8.count == 16, version.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { throw Problem.badParameter("cursor", String(c.prefix(64)), allowed: allowed) }
        guard String(version) == API.version(etag) else {
            var p = Problem(status: 410, slug: "stale-cursor", title: "Cursor expired",
                detail: "the image changed since this cursor was issued; start again without a cursor")
            p.extra = [("parameter", .string("cursor"))]
            throw p
        }
        let (sum, overflow) = start.addingReportingOverflow(length)
        guard off > start, off < (overflow ? UInt64.max : sum) else {
            throw Problem.badParameter("cursor", String(c.prefix(64)), allowed: allowed)
        }
        return off
    }

    /// The 16 hex digits of an ETag, used to bind cursors to a file version.
    static func version(_ etag: String) -> String {
        String(etag.filter { $0 != "\"" })
    }

    private func extentsPage(
        _ entry: ImageCatalog.Entry, _ b: BitmapDirectoryEntry, name: String, start: UInt64, length: UInt64,
        from: UInt64, limit: UInt64, locks: LockState?
    ) throws(Problem) -> (JSONValue, [(name: String, value: String)]) {
        let image = entry.image
        let (sum, overflow) = start.addingReportingOverflow(length)
        let end = overflow ? UInt64.max : sum
        let page: (extents: [DirtyExtent], next: UInt64?)
        do {
            page = try image.dirtyExtents(b, start: from, length: end - from, limit: Int(limit))
        } catch {
            throw Problem.unreadable(error, image: name)
        }
        let cursor = page.next.map { "\($0)-" + API.version(entry.file.etag(view: "extents")) }
        let path = "/v1/images/\(PercentEncoding.encode(name))/bitmaps/\(PercentEncoding.encode(b.name.bytes))/extents"
        var o: [(String, JSONValue)] = []
        ImageViews.text("bitmap", b.name, into: &o)
        o += [
            ("granularity", b.granularity.map { .num($0) } ?? .null), ("start", .num(start)),
            ("length", .num(min(length, image.header.size - start))), ("from", .num(from)),
            ("consistent", .bool(image.isConsistent(b))), ("inconsistent_reason", .str(image.inconsistencyReason(b))),
        ]
        if let locks { o += ImageViews.staleFields(locks) }
        o += [
            ("extents", .array(page.extents.map(ImageViews.extent))), ("next", .str(cursor)),
        ]
        let q = "start=\(start)&length=\(length)&limit=\(limit)"
        return (.object(o), cursor.map { [link(path, q + "&cursor=\($0)")] } ?? [])
    }

    private func snapshotsPage(_ image: QCOW2Image, name: String, limit: UInt64, offset: UInt64)
        -> (JSONValue, [(name: String, value: String)])
    {
        let table = image.snapshots()
        let all = table.entries
        let start = min(Int(offset), all.count)
        let end = min(all.count, start + Int(limit))
        let next: UInt64? = end < all.count ? UInt64(end) : nil
        let path = "/v1/images/\(PercentEncoding.encode(name))/snapshots"
        let value: JSONValue = .obj([
            "total": .num(all.count), "nb_snapshots": .num(image.header.nbSnapshots), "offset": .num(offset),
            "limit": .num(limit), "snapshots": .array(all[start..<end].map(ImageViews.snapshot)),
            "findings": .array(table.findings.map(ImageViews.finding)), "next": next.map { .num($0) } ?? .null,
        ])
        return (value, next.map { [link(path, "offset=\($0)&limit=\(limit)")] } ?? [])
    }

    private func listImages(_ query: Query, req: APIRequest) throws(Problem) -> APIResponse {
        let limit = try query.integer("limit", default: Paging.images.0, range: 1...Paging.images.1)
        let cursor = query.string("cursor") ?? ""
        if cursor.utf8.count > 255 {
            throw Problem.badParameter("cursor", String(cursor.prefix(64)), allowed: "the `next` value of a previous page")
        }
        let names = catalog.names()
        // Binary search: the first name after the cursor.
        var lo = 0
        var hi = names.count
        if !cursor.isEmpty {
            let c = Array(cursor.utf8)
            while lo < hi {
                let mid = (lo + hi) / 2
                let m = Array(names[mid].utf8)
                // Bytes, not String equality: NFC and NFD spellings of a name are different files.
                if m.lexicographicallyPrecedes(c) || m == c { lo = mid + 1 } else { hi = mid }
            }
        } else {
            lo = 0
        }
        var items: [JSONValue] = []
        var i = lo
        var last: String? = nil
        while i < names.count && items.count < Int(limit) {
            let n = names[i]
            i += 1
            guard catalog.isQCOW2(n) else { continue }
            items.append(listItem(n))
            last = n
        }
        // Is there another qcow2 image after this page?
        var more = false
        while i < names.count {
            if catalog.isQCOW2(names[i]) {
                more = true
                break
            }
            i += 1
        }
        let next = more ? last : nil
        var extra: [(name: String, value: String)] = [("Cache-Control", "no-cache")]
        if let next { extra.append(link("/v1/images", "cursor=\(PercentEncoding.encode(next))&limit=\(limit)")) }
        return .json(.obj(["images": .array(items), "limit": .num(limit), "next": .str(next)]), extra: extra)
    }

    private func listItem(_ name: String) -> JSONValue {
        do {
            let e = try catalog.image(named: name)
            let f = e.findings()
            let serious = f.contains { $0.severity != .info }
            return .obj([
                "name": .string(name), "size_bytes": .num(e.file.size), "mtime": .string(e.file.mtimeRFC3339),
                "virtual_size": .num(e.image.header.size), "bitmaps": .num(e.image.bitmaps.count),
                "status": .string(serious ? "findings" : "ok"), "finding_counts": ImageViews.findingCounts(f),
                "error": .null,
            ])
        } catch {
            let info = try? catalog.fileInfo(named: name)
            let err: JSONValue
            switch error {
            case .notFound: err = .obj(["kind": .string("not_found"), "message": .string("the file disappeared")])
            case .unreadable(let q): err = ImageViews.error(q)
            }
            return .obj([
                "name": .string(name), "size_bytes": info.map { .num($0.size) } ?? .null,
                "mtime": info.map { .string($0.mtimeRFC3339) } ?? .null, "virtual_size": .null, "bitmaps": .null,
                "status": .string("unreadable"), "finding_counts": .null, "error": err,
            ])
        }
    }
}

extension Substring {
    fileprivate func trimmingPrefixSpaces() -> Substring {
        var s = self
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
