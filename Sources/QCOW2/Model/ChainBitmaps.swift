/// The persistent bitmaps of a backing chain by name: which layers hold each, and the union of
/// their dirty runs, as an incremental backup merges them.
///
/// libvirt keeps one bitmap per checkpoint name in every layer of the chain and, at backup time,
/// merges the bitmaps of that name (and of later checkpoints) from every layer into one. This is that
/// merge, read from the files: ``forEachRun(of:from:to:stepBudget:_:)`` walks the union a run at a
/// time, reading only the table entries and data clusters of each layer's bitmap that cover the range.
public struct ChainBitmaps: Sendable {
    /// One layer: a qcow2 image, or nil for a raw file (which holds no bitmaps).
    public struct Layer: Sendable {
        /// The parsed image.
        public var image: QCOW2Image?
        /// Its header, extension and directory findings (``ImageValidator/findings(_:)``).
        public var findings: [Finding]

        /// A layer.
        public init(image: QCOW2Image?, findings: [Finding]) {
            self.image = image
            self.findings = findings
        }
    }

    /// The layers, the image first.
    public let layers: [Layer]
    /// Each layer's directory index by name (first entry of a name wins, as ``QCOW2Image/bitmap(named:)``).
    private let byName: [[ByteString: Int]]
    /// Every name, in order of first appearance from the image down (each layer in directory order).
    public let names: [ByteString]

    /// Enabled bitmaps of the image (the active layer) that are not in use, in directory order: the first
    /// ``activeEnabledLimit`` distinct names.
    public let activeEnabled: [ByteString]
    /// How many enabled names ``activeEnabled`` keeps.
    public static let activeEnabledLimit = 32

    /// Work one walk may do at most: questions asked of the layers' bitmaps.
    public static let defaultStepBudget: UInt64 = 1 << 20

    /// The bitmaps of `layers` (the image first).
    public init(layers: [Layer]) {
        self.layers = layers
        var maps: [[ByteString: Int]] = []
        var seen: Set<ByteString> = []
        var names: [ByteString] = []
        for l in layers {
            var m: [ByteString: Int] = [:]
            for (i, b) in (l.image?.bitmaps ?? []).enumerated() where m[b.name] == nil {
                m[b.name] = i
                if seen.insert(b.name).inserted { names.append(b.name) }
            }
            maps.append(m)
        }
        byName = maps
        self.names = names
        var enabled: [ByteString] = []
        var enabledSeen: Set<ByteString> = []
        for b in layers.first?.image?.bitmaps ?? [] where b.auto && !b.inUse {
            guard enabled.count < Self.activeEnabledLimit else { break }
            if enabledSeen.insert(b.name).inserted { enabled.append(b.name) }
        }
        activeEnabled = enabled
    }

    /// The guest size the union covers: the image's virtual size, as its own bitmaps do.
    public var size: UInt64 { layers.first?.image?.header.size ?? 0 }

    /// The entry named `name` in the layer at `depth`, nil when that layer has none.
    public func bitmap(_ name: ByteString, depth: Int) -> BitmapDirectoryEntry? {
        guard depth >= 0, depth < layers.count, let i = byName[depth][name], let image = layers[depth].image,
            i < image.bitmaps.count
        else { return nil }
        return image.bitmaps[i]
    }

    /// Whether any layer has a bitmap called `name`.
    public func contains(_ name: ByteString) -> Bool { byName.contains { $0[name] != nil } }

    /// One bitmap of one layer, read a page of extents at a time from wherever the walk is.
    private struct Stream {
        let image: QCOW2Image
        let bitmap: BitmapDirectoryEntry
        /// The layer's own virtual size: past it the layer's bitmap marks nothing.
        let size: UInt64
        var buffer: [DirtyExtent] = []
        var i = 0

        /// Whether `p` is dirty in this bitmap and where its run ends (at most at `end`; `.max` past the layer).
        mutating func run(at p: UInt64, end: UInt64) throws(QCOW2Error) -> (dirty: Bool, end: UInt64) {
            guard p < size else { return (false, .max) }
            while i < buffer.count, buffer[i].start &+ buffer[i].length <= p { i += 1 }
            if i >= buffer.count || buffer[i].start > p {
                buffer = try image.dirtyExtents(bitmap, start: p, length: min(end, size) - p, limit: 1024).extents
                i = 0
                guard let first = buffer.first, first.start <= p else { return (false, min(end, size)) }
            }
            let e = buffer[i]
            return (e.dirty, e.start &+ e.length)
        }
    }

    /// Calls `body(start, end, dirty)` for each run of the union over every layer's bitmaps named in
    /// `names`, from `from` to `to` (clipped to ``size``), adjacent runs of one state merged; stops
    /// when `body` returns false.
    ///
    /// A layer's bitmap covers that layer's own virtual size; past it, and in layers without the name,
    /// nothing is dirty. Runs are byte ranges, so the union is exact at the finest granularity involved.
    /// - Returns: where the walk stopped short of `to` (its step budget spent, or `body` said stop), nil when it reached it.
    /// - Throws: ``QCOW2Error`` when a bitmap table or data cluster cannot be read.
    @discardableResult
    public func forEachRun(
        of names: [ByteString], from: UInt64, to: UInt64, stepBudget: UInt64 = ChainBitmaps.defaultStepBudget,
        _ body: (UInt64, UInt64, Bool) throws(QCOW2Error) -> Bool
    ) throws(QCOW2Error) -> UInt64? {
        let end = min(to, size)
        guard from < end else { return nil }
        var streams: [Stream] = []
        for (d, l) in layers.enumerated() {
            guard let image = l.image else { continue }
            for n in names {
                guard let b = bitmap(n, depth: d), b.granularity != nil, b.granularityBits <= 62 else { continue }
                streams.append(Stream(image: image, bitmap: b, size: image.header.size))
            }
        }
        var p = from
        var run: (start: UInt64, dirty: Bool)? = nil
        var steps: UInt64 = 0
        while p < end {
            var anyDirty = false
            var dirtyEnd = p
            var cleanEnd = UInt64.max
            for k in streams.indices {
                let r = try streams[k].run(at: p, end: end)
                if r.dirty {
                    anyDirty = true
                    dirtyEnd = max(dirtyEnd, r.end)
                } else {
                    cleanEnd = min(cleanEnd, r.end)
                }
            }
            steps &+= UInt64(max(1, streams.count))
            let segmentEnd = min(end, max(p &+ 1, anyDirty ? dirtyEnd : cleanEnd))
            if let r = run, r.dirty != anyDirty {
                if try !body(r.start, p, r.dirty) { return r.start }
                run = (p, anyDirty)
            } else if run == nil {
                run = (p, anyDirty)
            }
            p = segmentEnd
            if steps >= stepBudget && p < end {
                if let r = run, try !body(r.start, p, r.dirty) { return r.start }
                return p
            }
        }
        if let r = run { _ = try body(r.start, end, r.dirty) }
        return nil
    }

    /// One page of the union's runs over `[start, start + length)`, from `from`, at most `limit` of them.
    ///
    /// - Returns: the runs and, when the range has more, the guest offset the next page starts at.
    public func unionExtents(
        _ names: [ByteString], start from: UInt64, length: UInt64, limit: Int,
        stepBudget: UInt64 = ChainBitmaps.defaultStepBudget
    ) throws(QCOW2Error) -> (extents: [DirtyExtent], next: UInt64?) {
        var out: [DirtyExtent] = []
        let limit = max(1, limit)
        var full: UInt64? = nil
        let stopped = try forEachRun(of: names, from: from, to: from +? length ?? .max, stepBudget: stepBudget) { a, b, d in
            if out.count == limit {
                full = a
                return false
            }
            out.append(DirtyExtent(start: a, length: b - a, dirty: d))
            return true
        }
        return (out, full ?? stopped)
    }
}
