import QCOW2

// The documents of incremental-backup readiness: `/checkpoints` (every bitmap name of the chain and
// its verdict), `/checkpoints/{name}` (one verdict and the backup's size) and
// `/checkpoints/{name}/extents` (the union of the chain's bitmaps of that name). Their ETags and
// cursors carry the chain's version: every layer's identity.

extension Documents {
    /// Checks a request for one of the checkpoint routes and returns what is left to render.
    func checkpointPlan(
        _ route: RouteID, entry: ImageEntry, locks: LockState?, name bytes: [UInt8]?, parameters p: Parameters
    ) throws(DocumentError) -> Plan {
        let chain = catalog.chain(of: entry)
        let catalog = catalog
        switch route {
        case .checkpoints:
            let limit = try p.limit(Self.paging(route))
            let cursor = try p.integer("cursor", default: 0, range: 0...UInt64(Int64.max))
            var plan = Plan { () throws(DocumentError) in
                Self.checkpointsPage(entry, chain, locks: locks, limit: limit, cursor: cursor)
            }
            plan.version = chain.version
            return plan
        default:
            let name = ByteString(bytes ?? [])
            let bitmaps = chain.bitmaps
            guard bitmaps.contains(name) else { throw .checkpointNotFound(name: name.escaped, image: entry.file.name) }
            let with = try Self.withNames(p, bitmaps)
            var plan: Plan
            if route == .checkpoint {
                plan = Plan { () throws(DocumentError) in
                    try Self.checkpointDocument(
                        entry, chain, locks: locks, name: name, with: with, preallocated: { catalog.looksPreallocated($0) })
                }
            } else {
                let size = bitmaps.size
                let (start, length, limit, first) = try Self.guestRange(
                    p, route, lastStart: size == 0 ? 0 : size - 1, size: size, version: Self.chainCursorVersion(chain))
                plan = Plan { () throws(DocumentError) in
                    try Self.checkpointExtentsPage(
                        entry, chain, locks: locks, name: name, with: with, start: start, length: length, from: first,
                        limit: limit)
                }
            }
            plan.version = chain.version
            return plan
        }
    }

    /// Names merged with `?with=` at most.
    static let withLimit = 64

    /// The `with` names of a checkpoint request: each value is a bitmap name when a layer has one of
    /// exactly that name, else a comma-separated list of names; every name must be in the chain.
    static func withNames(_ p: Parameters, _ bitmaps: ChainBitmaps) throws(DocumentError) -> [ByteString] {
        var out: [ByteString] = []
        for value in p.all("with") {
            let whole = ByteString(value)
            let names = bitmaps.contains(whole) ? [whole] : value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: true).map { ByteString(Array($0)) }
            for n in names where !out.contains(n) {
                guard bitmaps.contains(n) else {
                    throw .invalidParameter(
                        name: "with", value: String(n.escaped.prefix(64)),
                        allowed: .described("names of bitmaps in the chain (see /checkpoints), comma-separated"))
                }
                out.append(n)
            }
        }
        guard out.count <= withLimit else {
            throw .invalidParameter(
                name: "with", value: "\(out.count) names", allowed: .described("at most \(withLimit) bitmap names"))
        }
        return out
    }

    /// The readiness of `name` (merged with `with`) over `chain`.
    static func readiness(
        _ name: ByteString, with: [ByteString] = [], _ chain: ImageChain, _ bitmaps: ChainBitmaps, locks: LockState?
    ) -> CheckpointReadiness {
        CheckpointReadiness(
            name, with: with, in: bitmaps, layerNames: chain.layerNames, writerPresent: locks?.writerPresent,
            complete: chain.complete)
    }

    /// The fields of one checkpoint's verdict: its name, every layer, the verdict and its reasons.
    ///
    /// `budget` is what the lower layers' dirty counts may still read (the image's own counts are
    /// cached per file version); a count past it is null.
    static func checkpointFields(
        _ r: CheckpointReadiness, _ entry: ImageEntry, _ chain: ImageChain, budget: inout UInt64
    ) -> [(String, JSONValue)] {
        var o: [(String, JSONValue)] = []
        ImageViews.text("name", r.name, into: &o)
        var layers: [JSONValue] = []
        for l in r.layers {
            var f: [(String, JSONValue)] = [("depth", .num(l.depth)), ("image", .string(chain.layers[l.depth].name))]
            f.append(("present", .bool(l.present)))
            if let b = l.bitmap {
                var dirty: UInt64? = nil
                if l.depth == 0 {
                    dirty = entry.dirtyCount(b).bytes
                } else if let image = chain.layers[l.depth].image {
                    var spent: UInt64 = 0
                    dirty = (try? image.dirtyBytes(b, budget: budget, spent: &spent)) ?? nil
                    budget -= min(budget, spent)
                }
                f += [
                    ("granularity", b.granularity.map { .num($0) } ?? .null), ("enabled", .bool(b.auto)),
                    ("in_use", .bool(b.inUse)), ("consistent", .bool(l.consistent)),
                    ("dirty_bytes", dirty.map { .num($0) } ?? .null),
                ]
            } else {
                f += [
                    ("granularity", .null), ("enabled", .null), ("in_use", .null), ("consistent", .null),
                    ("dirty_bytes", .null),
                ]
            }
            layers.append(.object(f))
        }
        o += [
            ("layers", .array(layers)), ("incremental_ready", .bool(r.ready)),
            ("merge_with", .array(r.mergeWith.map { .string($0.escaped) })),
            ("reasons", .array(r.reasons.map(reason))),
        ]
        return o
    }

    /// One reason: its K code, severity, layer, bitmap and message.
    static func reason(_ r: CheckpointReadiness.Reason) -> JSONValue {
        .obj([
            "code": .string(r.rule.code), "severity": .string(r.rule.severity.rawValue),
            "depth": r.depth.map { .num($0) } ?? .null, "bitmap": .string(r.bitmap.escaped), "message": .string(r.message),
        ])
    }

    /// The fields every checkpoint document starts with: the image, the chain and the lock state.
    static func checkpointHead(_ entry: ImageEntry, _ chain: ImageChain, locks: LockState?) -> [(String, JSONValue)] {
        var o: [(String, JSONValue)] = [
            ("image", .string(entry.file.name)), ("virtual_size", .num(entry.image.header.size)),
            ("chain_complete", .bool(chain.complete)), ("chain_depth", .num(chain.layers.count)),
        ]
        if let locks { o += ImageViews.staleFields(locks) }
        return o
    }

    /// `/v1/images/{image}/checkpoints`: one page of the chain's bitmap names, each with its verdict.
    static func checkpointsPage(_ entry: ImageEntry, _ chain: ImageChain, locks: LockState?, limit: UInt64, cursor: UInt64)
        -> Document
    {
        let bitmaps = chain.bitmaps
        let names = bitmaps.names
        let start = Int(clamping: min(cursor, UInt64(names.count)))
        let end = min(names.count, start + Int(clamping: limit))
        let next: UInt64? = end < names.count ? UInt64(end) : nil
        var budget = ImageEntry.dirtyImageBudget
        var items: [JSONValue] = []
        var notReady = 0
        for n in names[start..<end] {
            let r = readiness(n, chain, bitmaps, locks: locks)
            if !r.ready { notReady += 1 }
            items.append(.object(checkpointFields(r, entry, chain, budget: &budget)))
        }
        var o = checkpointHead(entry, chain, locks: locks)
        o += [
            ("total", .num(names.count)), ("cursor", .num(cursor)), ("limit", .num(limit)),
            ("not_ready", .num(notReady)), ("checkpoints", .array(items)),
            ("findings", .array(chain.findings.map(ImageViews.finding))),
            ("next", next.map { .string(String($0)) } ?? .null),
        ]
        return Document(.object(o), next: next.map { [("cursor", String($0)), ("limit", String(limit))] })
    }

    /// `/v1/images/{image}/checkpoints/{name}`: the verdict and what a backup since the checkpoint reads.
    static func checkpointDocument(
        _ entry: ImageEntry, _ chain: ImageChain, locks: LockState?, name: ByteString, with: [ByteString],
        preallocated: @escaping (ImageChain.Layer) -> Bool
    ) throws(DocumentError) -> Document {
        let bitmaps = chain.bitmaps
        let r = readiness(name, with: with, chain, bitmaps, locks: locks)
        var budget = ImageEntry.dirtyImageBudget
        var o = checkpointHead(entry, chain, locks: locks)
        o += checkpointFields(r, entry, chain, budget: &budget)
        o.append(("merged", .array(r.merged.map { .string($0.escaped) })))
        let sizes: CheckpointSizes?
        do throws(QCOW2Error) {
            sizes = try CheckpointSizes.measure(r.merged, bitmaps: bitmaps, map: chain.guestMap(preallocated: preallocated))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        func n(_ v: UInt64?) -> JSONValue { v.map { .num($0) } ?? .null }
        o += [
            ("granularity", n(finest(r.merged, bitmaps))), ("sizes_known", .bool(sizes != nil)),
            (
                "sizes_reason",
                .str(sizes == nil ? "the union or the map needs more work than the image budget; page through the extents" : nil)
            ),
            ("dirty_bytes", n(sizes?.dirty)), ("backup_bytes", n(sizes?.backup)), ("zero_bytes", n(sizes?.zero)),
            ("dirty_runs", n(sizes?.dirtyRuns)), ("findings", .array(chain.findings.map(ImageViews.finding))),
        ]
        return Document(.object(o))
    }

    /// The finest granularity of the merged bitmaps in any layer.
    static func finest(_ names: [ByteString], _ bitmaps: ChainBitmaps) -> UInt64? {
        var g: UInt64? = nil
        for n in names {
            for d in bitmaps.layers.indices {
                if let x = bitmaps.bitmap(n, depth: d)?.granularity { g = min(g ?? x, x) }
            }
        }
        return g
    }

    /// `/v1/images/{image}/checkpoints/{name}/extents`: one page of the union's dirty and clean runs.
    static func checkpointExtentsPage(
        _ entry: ImageEntry, _ chain: ImageChain, locks: LockState?, name: ByteString, with: [ByteString], start: UInt64,
        length: UInt64, from: UInt64, limit: UInt64
    ) throws(DocumentError) -> Document {
        let bitmaps = chain.bitmaps
        let r = readiness(name, with: with, chain, bitmaps, locks: locks)
        let size = bitmaps.size
        let (sum, overflow) = start.addingReportingOverflow(length)
        let end = min(size, overflow ? .max : sum)
        let page: (extents: [DirtyExtent], next: UInt64?)
        do throws(QCOW2Error) {
            page = try bitmaps.unionExtents(r.merged, start: from, length: end - min(from, end), limit: Int(clamping: limit))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        let version = chainCursorVersion(chain)
        let cursor = page.next.map { "\($0)-" + version }
        var o = checkpointHead(entry, chain, locks: locks)
        ImageViews.text("name", name, into: &o)
        o += [
            ("merged", .array(r.merged.map { .string($0.escaped) })), ("granularity", finest(r.merged, bitmaps).map { .num($0) } ?? .null),
            ("start", .num(start)), ("length", .num(end > start ? end - start : 0)), ("from", .num(from)),
            ("incremental_ready", .bool(r.ready)), ("reasons", .array(r.reasons.map(reason))),
            ("extents", .array(page.extents.map(ImageViews.extent))), ("next", .str(cursor)),
        ]
        let next = cursor.map { c -> [(name: String, value: String)] in
            var q: [(name: String, value: String)] = [("start", String(start)), ("length", String(length)), ("limit", String(limit))]
            // One `with` per name: each is then taken whole (it is a bitmap name of the chain).
            for w in with { q.append(("with", String(decoding: w.bytes, as: UTF8.self))) }
            q.append(("cursor", c))
            return q
        }
        return Document(.object(o), next: next)
    }
}
