public import QCOW2

/// Turns a route, an image and parameters into a JSON document; knows nothing of HTTP.
///
/// The daemon's API and the CLI both call it, so their JSON is the same. A request about one image
/// goes in two steps: ``plan(_:entry:locks:bitmap:parameters:)`` checks everything the request names
/// (parameters, bitmap, cursor) and returns the rendering left to do, so an HTTP cache can answer
/// `304 Not Modified` for a valid request without rendering, and never for an invalid one.
public struct Documents: Sendable {
    /// The images directory.
    public let catalog: ImageCatalog

    /// Documents over `catalog`.
    public init(catalog: ImageCatalog) {
        self.catalog = catalog
    }

    /// The rendering left once a request was checked.
    public struct Plan: Sendable {
        /// Renders the document (it may read the image: bitmap tables, extents, snapshots).
        public let render: @Sendable () throws(DocumentError) -> Document
        /// What else the document depends on beyond the image file (the backing chain), 0 for nothing.
        public var version: UInt64 = 0
    }

    /// The image named by `nameBytes` (percent-decoded) and, when `probeLocks`, QEMU's locks on it.
    public func open(_ nameBytes: [UInt8], probeLocks: Bool) throws(DocumentError) -> (entry: ImageEntry, locks: LockState?) {
        guard ImageCatalog.isValidName(nameBytes), let name = ByteString(nameBytes).utf8 else {
            throw .imageNotFound(String(decoding: nameBytes, as: UTF8.self))
        }
        do {
            return try catalog.lookup(named: name, probeLocks: probeLocks)
        } catch {
            switch error {
            case .notFound: throw .imageNotFound(name)
            case .unreadable(let e): throw .unreadable(e, image: name)
            }
        }
    }

    /// Checks a request for `route` about `entry` and returns what is left to render.
    ///
    /// - Parameters:
    ///   - bitmap: the bitmap name's bytes, for the routes under `/bitmaps/{bitmap}`.
    public func plan(
        _ route: RouteID, entry: ImageEntry, locks: LockState?, bitmap: [UInt8]?, index: UInt64? = nil,
        parameters p: Parameters
    ) throws(DocumentError) -> Plan {
        let image = entry.image
        let name = entry.file.name
        func plan(_ body: @escaping @Sendable () throws(DocumentError) -> Document) -> Plan { Plan(render: body) }
        switch route {
        case .summary:
            let job = catalog.checks.job(of: entry, named: name)
            let outcome = job?.outcome
            var p = plan { () throws(DocumentError) in
                var doc = Document(
                    ImageViews.summary(
                        image, file: entry.file, findings: job?.findings(merging: entry.findingIndex) ?? entry.findingIndex,
                        dirty: entry.dirtyCount, locks: locks, backing: entry.backing))
                doc.value.set("check", ImageViews.checkState(outcome))
                return doc
            }
            p.version = outcome == nil ? 0 : job?.serial ?? 0
            return p
        case .header: return plan { () throws(DocumentError) in Document(ImageViews.header(image)) }
        case .extensions: return plan { () throws(DocumentError) in Document(ImageViews.extensions(image)) }
        case .findings:
            let paging = Self.paging(route)
            let limit = try p.limit(paging)
            let cursor = try p.integer("cursor", default: 0, range: 0...UInt64(Int64.max))
            let job = catalog.checks.job(of: entry, named: name)
            let checked = job?.outcome != nil ? job?.serial ?? 0 : 0
            var p = plan { () throws(DocumentError) in
                Self.findingsPage(entry, job?.findings(merging: entry.findingIndex) ?? entry.findingIndex, limit: limit, cursor: cursor)
            }
            p.version = checked
            return p
        case .locks:
            guard let locks else { throw .unavailable("the lock state was not probed") }
            return plan { () throws(DocumentError) in Document(ImageViews.locks(locks, image: name)) }
        case .bitmaps:
            let limit = try p.limit(Self.paging(route))
            let cursor = try p.integer("cursor", default: 0, range: 0...UInt64(image.bitmaps.count))
            return plan { () throws(DocumentError) in Self.bitmapsPage(entry, limit: limit, cursor: cursor, locks: locks) }
        case .snapshots:
            let limit = try p.limit(Self.paging(route))
            let offset = try p.integer("offset", default: 0, range: 0...UInt64(image.header.nbSnapshots))
            return plan { () throws(DocumentError) in Self.snapshotsPage(entry, limit: limit, offset: offset) }
        case .bitmap, .table, .extents:
            let bitmapName = ByteString(bitmap ?? [])
            guard let b = image.bitmap(address: bitmapName) else {
                throw .bitmapNotFound(bitmap: bitmapName.escaped, image: name)
            }
            switch route {
            case .bitmap:
                return plan { () throws(DocumentError) in
                    Document(
                        ImageViews.bitmap(b, in: image, findings: entry.findings(of: b), dirty: entry.dirtyCount, locks: locks))
                }
            case .extents:
                let size = image.header.size
                let (start, length, limit, first) = try Self.guestRange(
                    p, route, lastStart: size == 0 ? 0 : size - 1, size: size, version: Self.cursorVersion(entry))
                return plan { () throws(DocumentError) in
                    try Self.extentsPage(entry, b, start: start, length: length, from: first, limit: limit, locks: locks)
                }
            default:
                let total = UInt64(b.tableSize)
                let limit = try p.limit(Self.paging(route))
                let offset = try p.integer("offset", default: 0, range: 0...(total == 0 ? 0 : total - 1))
                return plan { () throws(DocumentError) in
                    try Self.tablePage(entry, b, limit: limit, offset: offset, locks: locks)
                }
            }
        case .l1:
            let total = image.l1EntryCount
            let limit = try p.limit(Self.paging(route))
            let offset = try p.integer("offset", default: 0, range: 0...(total == 0 ? 0 : total - 1))
            return plan { () throws(DocumentError) in try Self.l1Page(entry, limit: limit, offset: offset) }
        case .l2:
            let count = image.l1EntryCount
            guard let index, index < count else {
                throw .unavailable("the L1 table has \(count) entries: no L1 index \(index.map(String.init) ?? "")")
            }
            let limit = try p.limit(Self.paging(route))
            let offset = try p.integer("offset", default: 0, range: 0...(image.l2EntriesPerTable - 1))
            return plan { () throws(DocumentError) in try Self.l2Page(entry, index: index, limit: limit, offset: offset) }
        case .map:
            let chain = catalog.chain(of: entry)
            let map = chain.guestMap { [catalog] in catalog.looksPreallocated($0) }
            let size = map.virtualSize
            let (start, length, limit, first) = try Self.guestRange(
                p, route, lastStart: size, size: size, version: Self.chainCursorVersion(chain))
            var plan = plan { () throws(DocumentError) in
                try Self.mapPage(entry, chain, map, start: start, length: length, from: first, limit: limit)
            }
            plan.version = chain.version
            return plan
        case .chain:
            let chain = catalog.chain(of: entry)
            var plan = plan { () throws(DocumentError) in Self.chainDocument(entry, chain, locks: locks) }
            plan.version = chain.versionWithLocks
            return plan
        case .allocation:
            let chain = catalog.chain(of: entry)
            var plan = plan { [catalog] () throws(DocumentError) in
                Self.allocationDocument(entry, chain, catalog.allocation(of: chain))
            }
            plan.version = chain.version
            return plan
        case .check:
            return try checkPlan(entry, locks: locks)
        case .checkpoints, .checkpoint, .checkpointExtents:
            return try checkpointPlan(route, entry: entry, locks: locks, name: bitmap, parameters: p)
        case .root, .ui, .health, .metrics, .openapi, .rules, .images:
            throw .unavailable("\(RouteTable.route(route).pattern) is not a document about one image")
        }
    }

    /// The `start`, `length`, `limit` and `cursor` of a paged guest range (`/extents`, `/map`): the
    /// range asked for, the page size, and where this page starts (the cursor's offset, bound to `version`).
    static func guestRange(_ p: Parameters, _ route: RouteID, lastStart: UInt64, size: UInt64, version: String)
        throws(DocumentError) -> (start: UInt64, length: UInt64, limit: UInt64, from: UInt64)
    {
        let start = try p.integer("start", default: 0, range: 0...lastStart)
        let length = try p.integer("length", default: size - start, range: 1...UInt64.max)
        let limit = try p.limit(Self.paging(route))
        var from = start
        if let c = p.string("cursor") {
            from = try Self.parseCursor(c, version: version, start: start, length: length)
        }
        return (start, length, limit, from)
    }

    /// The page limits of a paginated route (the route table declares them).
    static func paging(_ id: RouteID) -> PageLimits {
        RouteTable.route(id).paging ?? PageLimits(default: 100, maximum: 100)
    }

    /// `/v1/images/{image}/bitmaps`: one page of directory entries.
    static func bitmapsPage(_ entry: ImageEntry, limit: UInt64, cursor: UInt64, locks: LockState?) -> Document {
        let image = entry.image
        let all = image.bitmaps
        let start = Int(clamping: cursor)
        let end = min(all.count, start + Int(clamping: limit))
        let next: UInt64? = end < all.count ? UInt64(end) : nil
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
                    all[start..<end].map {
                        ImageViews.bitmap($0, in: image, findings: entry.findings(of: $0), dirty: entry.dirtyCount, locks: locks)
                    })
            ),
            ("next", next.map { .string(String($0)) } ?? .null),
        ]
        return Document(.object(o), next: next.map { [("cursor", String($0)), ("limit", String(limit))] })
    }

    /// `/v1/images/{image}/findings`: one page, with the counts by severity and by code of them all.
    static func findingsPage(_ entry: ImageEntry, _ index: FindingIndex, limit: UInt64, cursor: UInt64) -> Document {
        let total = index.total
        // A cursor at or past the end is an empty last page (the total can shrink when the file changes).
        let start = Int(clamping: min(cursor, UInt64(total)))
        let end = min(total, start + Int(clamping: limit))
        let next: UInt64? = end < total ? UInt64(end) : nil
        let value: JSONValue = .obj([
            "counts": ImageViews.findingCounts(index), "counts_by_code": ImageViews.codeCounts(index),
            "total": .num(total), "cursor": .num(cursor), "limit": .num(limit),
            "findings": .array(index.page(start, end).map(ImageViews.finding)),
            "next": next.map { .string(String($0)) } ?? .null,
        ])
        return Document(value, next: next.map { [("cursor", String($0)), ("limit", String(limit))] })
    }

    /// `/v1/images/{image}/bitmaps/{bitmap}/table`: one page of table entries.
    static func tablePage(
        _ entry: ImageEntry, _ b: BitmapDirectoryEntry, limit: UInt64, offset: UInt64, locks: LockState?
    ) throws(DocumentError) -> Document {
        let image = entry.image
        let total = UInt64(b.tableSize)
        let entries: [BitmapTableEntry]
        do {
            entries = try image.bitmapTable(b, offset: offset, limit: Int(clamping: limit))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        let end = offset + UInt64(entries.count)
        let next: UInt64? = end < total ? end : nil
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
        return Document(.object(o), next: next.map { [("offset", String($0)), ("limit", String(limit))] })
    }

    /// `/v1/images/{image}/l1`: one page of the L1 table.
    static func l1Page(_ entry: ImageEntry, limit: UInt64, offset: UInt64) throws(DocumentError) -> Document {
        let image = entry.image
        let total = image.l1EntryCount
        let entries: [L1Entry]
        do {
            entries = try image.l1Entries(offset: offset, limit: Int(clamping: limit))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        let end = offset + UInt64(entries.count)
        let next: UInt64? = end < total ? end : nil
        let value: JSONValue = .obj([
            "l1_size": .num(image.header.l1Size), "l1_table_offset": .num(image.header.l1TableOffset),
            "total": .num(total), "offset": .num(offset), "limit": .num(limit),
            "cluster_size": .num(image.header.clusterSize), "extended_l2": .bool(image.hasExtendedL2),
            "l2_entries": .num(image.l2EntriesPerTable),
            "bytes_per_l2": image.bytesPerL2Table.map { .num($0) } ?? .null,
            "entries": .array(entries.map(ImageViews.l1Entry)), "next": next.map { .num($0) } ?? .null,
        ])
        return Document(value, next: next.map { [("offset", String($0)), ("limit", String(limit))] })
    }

    /// `/v1/images/{image}/l1/{index}/l2`: one page of the L2 table that L1 entry `index` points at.
    static func l2Page(_ entry: ImageEntry, index: UInt64, limit: UInt64, offset: UInt64) throws(DocumentError) -> Document {
        let image = entry.image
        let l1: L1Entry
        let entries: [L2Entry]
        do throws(QCOW2Error) {
            guard let e = try image.l1Entries(offset: index, limit: 1).first else {
                throw QCOW2Error(.outOfRange, structure: "l1_table", field: "index", value: "\(index)", message: "no such L1 entry")
            }
            l1 = e
            entries = try image.l2Entries(l1, offset: offset, limit: Int(clamping: limit))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        let total = image.l2EntriesPerTable
        let end = offset + UInt64(entries.count)
        let next: UInt64? = end < total ? end : nil
        let value: JSONValue = .obj([
            "l1_index": .num(index), "l2_offset": .num(l1.l2Offset), "allocated": .bool(l1.l2Offset != 0),
            "total": .num(total), "offset": .num(offset), "limit": .num(limit),
            "cluster_size": .num(image.header.clusterSize), "extended_l2": .bool(image.hasExtendedL2),
            "entries": .array(entries.map(ImageViews.l2Entry)), "next": next.map { .num($0) } ?? .null,
        ])
        return Document(value, next: next.map { [("offset", String($0)), ("limit", String(limit))] })
    }

    /// The version an extents cursor is bound to: 16 hex digits that change with the file.
    static func cursorVersion(_ entry: ImageEntry) -> String {
        String(entry.file.etag(view: "extents").filter { $0 != "\"" })
    }

    /// Decodes an extents cursor `<offset>-<version>`: invalid when malformed or outside the range,
    /// stale when the image changed since the cursor was issued.
    static func parseCursor(_ c: String, version: String, start: UInt64, length: UInt64) throws(DocumentError) -> UInt64 {
        let parts = c.split(separator: "-", maxSplits: 1)
        let allowed = DocumentError.Allowed.described("the `next` value of a previous page of the same query")
        let shown = String(c.prefix(64))
        guard parts.count == 2, parts[0].utf8.count <= 20, parts[0].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let off = UInt64(parts[0])
        else { throw .invalidParameter(name: "cursor", value: shown, allowed: allowed) }
        let v = parts[1]
        guard v.utf8.count == 16, v.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { throw .invalidParameter(name: "cursor", value: shown, allowed: allowed) }
        guard String(v) == version else { throw .staleCursor(parameter: "cursor") }
        let (sum, overflow) = start.addingReportingOverflow(length)
        guard off > start, off < (overflow ? UInt64.max : sum) else {
            throw .invalidParameter(name: "cursor", value: shown, allowed: allowed)
        }
        return off
    }

    /// `/v1/images/{image}/bitmaps/{bitmap}/extents`: one page of dirty and clean runs.
    static func extentsPage(
        _ entry: ImageEntry, _ b: BitmapDirectoryEntry, start: UInt64, length: UInt64, from: UInt64, limit: UInt64,
        locks: LockState?
    ) throws(DocumentError) -> Document {
        let image = entry.image
        let (sum, overflow) = start.addingReportingOverflow(length)
        let end = overflow ? UInt64.max : sum
        let page: (extents: [DirtyExtent], next: UInt64?)
        do {
            page = try image.dirtyExtents(b, start: from, length: end - from, limit: Int(clamping: limit))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        let cursor = page.next.map { "\($0)-" + cursorVersion(entry) }
        var o: [(String, JSONValue)] = []
        ImageViews.text("bitmap", b.name, into: &o)
        o += [
            ("granularity", b.granularity.map { .num($0) } ?? .null), ("start", .num(start)),
            ("length", .num(min(length, image.header.size - start))), ("from", .num(from)),
            ("consistent", .bool(image.isConsistent(b))), ("inconsistent_reason", .str(image.inconsistencyReason(b))),
        ]
        if let locks { o += ImageViews.staleFields(locks) }
        // Served as QEMU exports it (a table past the end of the file reads as zeros), with the warning.
        let warnings = [ImageValidator.tablePastEnd(image, b)].compactMap { $0 }
        o += [
            ("findings", .array(warnings.map(ImageViews.finding))), ("extents", .array(page.extents.map(ImageViews.extent))),
            ("next", .str(cursor)),
        ]
        let next = cursor.map { c -> [(name: String, value: String)] in
            [("start", String(start)), ("length", String(length)), ("limit", String(limit)), ("cursor", c)]
        }
        return Document(.object(o), next: next)
    }

    /// `/v1/images/{image}/snapshots`: one page of the snapshot table.
    static func snapshotsPage(_ entry: ImageEntry, limit: UInt64, offset: UInt64) -> Document {
        let image = entry.image
        let table = entry.snapshotTable
        let all = table.entries
        let start = min(Int(clamping: offset), all.count)
        let end = min(all.count, start + Int(clamping: limit))
        let next: UInt64? = end < all.count ? UInt64(end) : nil
        let value: JSONValue = .obj([
            "total": .num(all.count), "nb_snapshots": .num(image.header.nbSnapshots), "offset": .num(offset),
            "limit": .num(limit), "snapshots": .array(all[start..<end].map(ImageViews.snapshot)),
            "findings": .array(entry.snapshotFindings.map(ImageViews.finding)), "next": next.map { .num($0) } ?? .null,
        ])
        return Document(value, next: next.map { [("offset", String($0)), ("limit", String(limit))] })
    }

    /// `/v1/images`: one page of the listing, names in byte order after `cursor`.
    ///
    /// A cursor is the last name of a previous page; one that names no image here is refused (a
    /// mistyped cursor must not look like an empty directory).
    ///
    /// `items` makes the listed images' entries (default: ``listItem(_:)`` for each, in turn); the
    /// daemon's looks them up in parallel under a deadline and marks slow ones `stalled`.
    public func listing(_ p: Parameters, items: (([String]) -> [JSONValue])? = nil) throws(DocumentError) -> Document {
        let limit = try p.limit(Self.paging(.images))
        let cursor = p.bytes("cursor") ?? []
        let allowed = DocumentError.Allowed.described("the `next` value of a previous page")
        let names: [String]
        do throws(QCOW2Error) {
            names = try catalog.names()
        } catch {
            throw .unreadable(error, image: "the images directory")
        }
        var lo = 0
        if !cursor.isEmpty {
            guard cursor.count <= 255 else {
                throw .invalidParameter(name: "cursor", value: String(decoding: cursor.prefix(64), as: UTF8.self), allowed: allowed)
            }
            // Binary search on bytes, not String equality: NFC and NFD spellings are different files.
            var hi = names.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if Array(names[mid].utf8).lexicographicallyPrecedes(cursor) { lo = mid + 1 } else { hi = mid }
            }
            // The cursor must be a name this daemon could have issued: a listed name (it may have gone
            // since; then it is still accepted as long as it has the form of an image name).
            let issued = lo < names.count && Array(names[lo].utf8) == cursor
            guard issued || (ImageCatalog.isValidName(cursor) && ImageCatalog.hasImageSuffix(String(decoding: cursor, as: UTF8.self)))
            else {
                throw .invalidParameter(name: "cursor", value: String(decoding: cursor.prefix(64), as: UTF8.self), allowed: allowed)
            }
            if issued { lo += 1 }
        }
        var page: [String] = []
        var i = lo
        while i < names.count && page.count < Int(clamping: limit) {
            let n = names[i]
            i += 1
            guard catalog.isImage(n) else { continue }
            page.append(n)
        }
        let last = page.last
        let entries = items?(page) ?? page.map(listItem)
        var more = false
        while i < names.count {
            if catalog.isImage(names[i]) {
                more = true
                break
            }
            i += 1
        }
        let next = more ? last : nil
        return Document(
            .obj(["images": .array(entries), "limit": .num(limit), "next": .str(next)]),
            next: next.map { [("cursor", $0), ("limit", String(limit))] })
    }

    /// A listed image whose storage is stalled: what is known without reading it.
    ///
    /// `stalled` when `pending` (the stuck operation) is known; without one and with `slow`, `pending`:
    /// the image is still being read or parsed (ask again).
    public static func stalledItem(
        _ name: String, _ pending: ReadActivity.Pending?, pending slow: Bool = false, check: CheckOutcome? = nil
    ) -> JSONValue {
        if pending == nil && slow {
            return .obj([
                "name": .string(name), "size_bytes": .null, "mtime": .null, "virtual_size": .null, "bitmaps": .null,
                "bitmaps_in_use": .null, "writer_present": .null, "status": .string("pending"), "finding_counts": .null, "check": ImageViews.checkState(check),
                "error": .obj([
                    "kind": .string("pending"), "code": .string("pending"), "structure": .string("file"), "field": .null,
                    "value": .null, "offset": .null,
                    "message": .string("still being read and checked (a large image seen for the first time); ask again"),
                ]),
            ])
        }
        let waited = pending.map { ContinuousClock.now - $0.since }
        var message = "reading the image is stalled"
        if let pending, let waited {
            let where_ = pending.offset.map { "a read at file offset \($0)" } ?? "opening the file"
            message = "\(where_) has been waiting \(waited.components.seconds) s"
        }
        return .obj([
            "name": .string(name), "size_bytes": .null, "mtime": .null, "virtual_size": .null, "bitmaps": .null,
            "bitmaps_in_use": .null, "writer_present": .null, "status": .string("stalled"), "finding_counts": .null, "check": ImageViews.checkState(check),
            "error": .obj([
                "kind": .string("stalled"), "code": .string("stalled"), "structure": .string("file"), "field": .null,
                "value": .null, "offset": pending?.offset.map { .num($0) } ?? .null, "message": .string(message),
            ]),
        ])
    }

    /// One listed image: its sizes and status, or why it cannot be read.
    public func listItem(_ name: String) -> JSONValue {
        listedItem(name).value
    }

    /// One listed image, and what its item follows from: the parsed image (held weakly: a listing of
    /// more images than the catalog keeps must not keep them all open) and its writer lock (nil with
    /// `stable` when the image could not be parsed: its error stays while the file does), or `stable`
    /// false when the item may change without the file changing (an I/O error).
    func listedItem(_ name: String) -> (value: JSONValue, parsed: Reuse.Parsed?, writer: Bool?, stable: Bool) {
        do {
            // The lock probe is one fcntl on the descriptor the lookup opens anyway.
            let (e, locks) = try catalog.lookup(named: name, probeLocks: true)
            let job = catalog.checks.job(of: e, named: name)
            let f = job?.findings(merging: e.findingIndex) ?? e.findingIndex
            let outcome = job?.outcome
            let status = outcome?.state == "corrupt" ? "errors" : f.hasSerious ? "findings" : "ok"
            let value: JSONValue = .obj([
                "name": .string(name), "size_bytes": .num(e.file.size), "mtime": .string(e.file.mtimeRFC3339),
                "virtual_size": .num(e.image.header.size), "bitmaps": .num(e.image.bitmaps.count),
                "bitmaps_in_use": .num(e.image.bitmaps.filter(\.inUse).count),
                "writer_present": locks?.writerPresent.map { .bool($0) } ?? .null,
                "status": .string(status), "finding_counts": ImageViews.findingCounts(f),
                "check": ImageViews.checkState(outcome), "error": .null,
            ])
            return (value, Reuse.Parsed(e), locks?.writerPresent, locks?.error == nil)
        } catch {
            let info = try? catalog.fileInfo(named: name)
            let err: JSONValue
            var stable = false
            switch error {
            case .notFound:
                err = .obj(["kind": .string("not_found"), "code": .string("not_found"), "message": .string("the file disappeared")])
            case .unreadable(let q):
                err = ImageViews.error(q)
                stable = q.kind != .io
            }
            let value: JSONValue = .obj([
                "name": .string(name), "size_bytes": info.map { .num($0.size) } ?? .null,
                "mtime": info.map { .string($0.mtimeRFC3339) } ?? .null, "virtual_size": .null, "bitmaps": .null,
                "bitmaps_in_use": .null, "writer_present": .null, "status": .string("unreadable"), "finding_counts": .null,
                "check": ImageViews.checkState(catalog.checks.lastOutcome(named: name)), "error": err,
            ])
            return (value, nil, nil, stable)
        }
    }
}
