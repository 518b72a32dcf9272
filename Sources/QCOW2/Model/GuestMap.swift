// The guest allocation map of a backing chain, as `qemu-img map --output=json` 7.2 builds it
// (qemu-img.c:img_map and get_block_status; block/io.c:bdrv_co_block_status; block/qcow2.c:
// qcow2_co_block_status; block/qcow2-cluster.c:qcow2_get_host_offset). qemu-check-map.md §2.

/// The allocation map of a chain of layers (the image first, then its backing files), a page at a time.
///
/// Each page asks the layers exactly as qemu-img does, merges the answers as it does, and reads only
/// the part of each L1 table and the L2 entries that the page covers. A page ends after `limit`
/// extents, at the end of the range, or when its work budget is spent (then its last extent may
/// continue on the next page: merge it as ``MapExtent/merges(with:)`` says).
public struct GuestMap: Sendable {
    /// The layers, the image first.
    public let layers: [MapLayer]

    /// Work one page may do: L2 entries read (and L1 entries scanned for runs without tables).
    public static let defaultL2Budget: UInt64 = 1 << 18
    /// Work one page may do: questions asked of the layers.
    public static let defaultStepBudget: UInt64 = 1 << 16

    /// A map over `layers` (the image first); at least one.
    public init(layers: [MapLayer]) {
        self.layers = layers
    }

    /// The guest size: the image's virtual size rounded down to 512, as qemu-img counts it.
    public var virtualSize: UInt64 { layers.first?.length ?? 0 }

    /// One page of the map.
    public struct Page: Sendable {
        /// The merged extents, in guest order.
        public var extents: [MapExtent]
        /// Where the next page starts, nil when the range is done.
        public var next: UInt64?
        /// Damaged entries met on this page, in guest order.
        public var issues: [MapIssue]
        /// L2 entries read.
        public var l2EntriesRead: UInt64
        /// Questions asked of the layers.
        public var steps: UInt64
    }

    /// The extents of `[from, end)` (clipped to the virtual size), at most `limit` of them.
    ///
    /// - Throws: ``QCOW2Error`` when a read fails (I/O), or `invalidHeader` for a layer whose
    ///   cluster size QEMU would refuse.
    public func page(
        from: UInt64, to end: UInt64, limit: Int, l2Budget: UInt64 = GuestMap.defaultL2Budget,
        stepBudget: UInt64 = GuestMap.defaultStepBudget
    ) throws(QCOW2Error) -> Page {
        let walker = try MapWalker(layers: layers)
        let end = min(end, virtualSize)
        var out: [MapExtent] = []
        var current: MapExtent? = nil
        var next: UInt64? = nil
        var position = from
        var steps: UInt64 = 0
        while position < end {
            let e = try walker.entry(at: position, bytes: end - position)
            steps += 1
            position = e.end
            if var c = current, c.merges(with: e) {
                // Adjacent runs inside [from, end): the sum is at most end - c.start.
                c.length &+= e.length
                current = c
            } else {
                if let c = current {
                    out.append(c)
                    if out.count >= max(1, limit) {
                        current = nil
                        next = e.start
                        break
                    }
                }
                current = e
            }
            if walker.l2Read &+ walker.l1Scanned >= l2Budget || steps >= stepBudget {
                next = position < end ? position : nil
                break
            }
        }
        if let c = current { out.append(c) }
        let issues = walker.issues.sorted { ($0.guestOffset, $0.depth) < ($1.guestOffset, $1.depth) }
        return Page(extents: out, next: next, issues: issues, l2EntriesRead: walker.l2Read, steps: steps)
    }
}

/// One page's walk: the layers' tables read so far, and the issues met.
final class MapWalker {
    /// What one layer answers for a range (`bdrv_co_block_status` of that layer alone).
    struct Status {
        var data = false
        var zero = false
        var allocated = false
        var offsetValid = false
        var compressed = false
        var pnum: UInt64
        var map: UInt64 = 0
        var file: Int
    }

    /// QEMU's subcluster types (block/qcow2.h QCow2SubclusterType).
    enum SubclusterType: Equatable {
        case normal, compressed, zeroPlain, zeroAlloc, unallocatedPlain, unallocatedAlloc, invalid
    }

    /// Incompatible bit 2: the clusters live in an external data file (QEMU has_data_file).
    static let dataFileBit: UInt64 = 1 << 2

    let layers: [MapLayer]
    private(set) var l2Read: UInt64 = 0
    /// L1 entries scanned past the first of a run without L2 tables.
    private(set) var l1Scanned: UInt64 = 0
    private var issueSet: Set<MapIssue> = []
    private var l1Windows: [(first: UInt64, entries: [UInt64])?]
    private var l2Layer = -1
    private var l2Table: UInt64 = 0
    private var l2First: UInt64 = 0
    private var l2Raw: [UInt64] = []
    private var l2Bitmaps: [UInt64] = []
    /// The last L2 window of every other layer, kept so a walk that goes down the chain and back does not
    /// read the same window again (arrays are shared, not copied, when swapped).
    private var savedL2: [(table: UInt64, first: UInt64, raw: [UInt64], bitmaps: [UInt64])?]
    /// L2 entries read per window: 8192 for page walks, fewer for scattered questions (``MapCursor``).
    let l2WindowEntries: UInt64
    private var tablesPastEnd: Set<UInt64> = []
    /// The last data or hole extent a host file reported (file id, start, end, data).
    private var lastRegion: (file: Int, start: UInt64, end: UInt64, data: Bool)? = nil

    var issues: [MapIssue] { Array(issueSet) }

    init(layers: [MapLayer], l2WindowEntries: UInt64 = 8192) throws(QCOW2Error) {
        for layer in layers {
            if case .qcow2(let image, _) = layer.content, !(9...21).contains(image.header.clusterBits) {
                throw QCOW2Error(
                    .invalidHeader, structure: "header", field: "cluster_bits", value: "\(image.header.clusterBits)",
                    offset: 20, message: "the map needs cluster_bits 9-21, as QEMU does")
            }
        }
        self.layers = layers
        l1Windows = Array(repeating: nil, count: layers.count)
        savedL2 = Array(repeating: nil, count: layers.count)
        // A power of two from 64 to 8192, so windows stay aligned to themselves.
        var w: UInt64 = 64
        while w < min(8192, l2WindowEntries) { w <<= 1 }
        self.l2WindowEntries = w
    }

    /// One entry of qemu-img's map at `offset`: the first layer down the chain that answers (get_block_status).
    func entry(at offset: UInt64, bytes: UInt64) throws(QCOW2Error) -> MapExtent {
        var depth = 0
        var bytes = bytes
        var st = Status(pnum: bytes, file: 0)
        while depth < layers.count {
            let layer = layers[depth]
            bytes = min(bytes, layer.length - min(offset, layer.length))
            st = try status(depth, at: offset, bytes: max(bytes, 1))
            bytes = max(1, min(st.pnum, bytes))
            st.pnum = bytes
            if st.data || st.zero { break }
            depth += 1
        }
        if depth >= layers.count { depth = layers.count - 1 }
        return MapExtent(
            start: offset, length: st.pnum, depth: depth, present: st.allocated, zero: st.zero, data: st.data,
            compressed: st.compressed, offset: st.offsetValid ? st.map : nil, file: st.file)
    }

    /// What layer `d` alone answers for `bytes` at `offset`, with block/io.c's post-processing.
    private func status(_ d: Int, at offset: UInt64, bytes: UInt64) throws(QCOW2Error) -> Status {
        switch layers[d].content {
        case .raw(let source):
            // raw -> file-posix: data or hole from SEEK_DATA/SEEK_HOLE, always allocated, offset = file offset.
            var st = Status(pnum: bytes, file: d * 2)
            switch region(d * 2, source, at: offset) {
            case .trailingHole: st.zero = true
            case .unknown: st.data = true
            case .data(let end):
                st.data = true
                st.pnum = min(bytes, end - offset)
            case .hole(let end):
                st.zero = true
                st.pnum = min(bytes, end - offset)
            }
            st.allocated = true
            st.offsetValid = true
            st.map = offset
            return st
        case .qcow2(let image, let dataFile):
            let external = image.header.incompatibleFeatures & Self.dataFileBit != 0
            var st = try qcow2Status(d, image, external: external, at: offset, bytes: bytes)
            if layers[d].metadataPreallocated && st.data && st.offsetValid, let host = external ? dataFile : image.source {
                recurse(&st, into: host, file: st.file)
            }
            if st.data || st.zero {
                st.allocated = true
            } else if d + 1 >= layers.count || offset >= layers[d + 1].length {
                // No backing file, or one too short to reach here: reads as zeros (not allocated).
                st.zero = true
            }
            return st
        }
    }

    /// BDRV_BLOCK_RECURSE: asks the host file about a data run; its holes read as zero too.
    private func recurse(_ st: inout Status, into host: any ImageSource, file: Int) {
        let hostLength = MapLayer.roundUp512(host.size)
        guard st.map < hostLength else {
            st.zero = true
            return
        }
        let n = min(st.pnum, hostLength - st.map)
        switch region(file, host, at: st.map) {
        case .trailingHole:
            st.zero = true
            if st.map + n != hostLength { st.pnum = n }
        case .hole(let end):
            let filePnum = min(end - st.map, n)
            st.zero = true
            if st.map + filePnum != hostLength { st.pnum = filePnum }
        case .data(let end):
            st.pnum = min(end - st.map, n)
        case .unknown:
            st.pnum = n
        }
    }

    /// `source.region(at:)`, answered from the last answer for the same file when `offset` lies in it
    /// (a data or hole extent holds for every offset inside it): one `lseek` pair per host extent met.
    private func region(_ file: Int, _ source: any ImageSource, at offset: UInt64) -> HostRegion {
        if let r = lastRegion, r.file == file, offset >= r.start, offset < r.end {
            return r.data ? .data(end: r.end) : .hole(end: r.end)
        }
        let answer = source.region(at: offset)
        switch answer {
        case .data(let end): lastRegion = (file, offset, end, true)
        case .hole(let end): lastRegion = (file, offset, end, false)
        case .trailingHole, .unknown: break
        }
        return answer
    }

    /// qcow2_co_block_status over qcow2_get_host_offset: the longest run of one subcluster type.
    private func qcow2Status(
        _ d: Int, _ image: QCOW2Image, external: Bool, at offset: UInt64, bytes: UInt64
    ) throws(QCOW2Error) -> Status {
        let h = image.header
        let cb = UInt64(h.clusterBits)
        let cs = h.clusterSize
        let perTable = image.l2EntriesPerTable
        let l2Bits = cb - (image.hasExtendedL2 ? 4 : 3)
        let subclusters: UInt64 = image.hasExtendedL2 ? 32 : 1
        let scBits = cb - (image.hasExtendedL2 ? 5 : 0)
        let inCluster = offset & (cs - 1)
        let l2Index = (offset >> cb) & (perTable - 1)
        let l1Index = offset >> (cb + l2Bits)
        let scIndex = (offset & (cs - 1)) >> scBits
        let available = (perTable - l2Index) << cb
        let needed = min((bytes +? inCluster) ?? UInt64.max, available)
        let file = d * 2 + (external ? 1 : 0)
        var st = Status(pnum: needed - inCluster, file: file)
        // Past the L1 table everything is unallocated: one answer for the rest (QEMU gives one per L2
        // range; merged, the map is the same, and a sparse 16 TiB disk of 512-byte clusters costs one step).
        guard l1Index < image.l1EntryCount else {
            st.pnum = bytes
            return st
        }
        let l1Raw = try l1Entry(d, image, l1Index)
        let entryAt = h.l1TableOffset &+ l1Index &* 8
        if l1Raw & L1Entry.reservedMask != 0 {
            note(.l1Reserved(bits: l1Raw & L1Entry.reservedMask), d, l1Index, nil, l1Raw, entryAt, offset - inCluster - (l2Index << cb))
        }
        let l2Offset = l1Raw & L1Entry.offsetMask
        if l2Offset == 0 {
            // Following L1 entries without a table (and without reserved bits) answer the same: one step.
            // The scan stops where the request ends, after 4096 entries, and counts against the page's budget.
            let shift = cb + l2Bits
            let lastNeeded = ((offset +? (bytes - 1)) ?? UInt64.max) >> shift
            var end = l1Index + 1
            while end < image.l1EntryCount, end <= lastNeeded, end - l1Index < 4096 {
                l1Scanned += 1
                guard try l1Entry(d, image, end) == 0 else { break }
                end += 1
            }
            let reach = end < image.l1EntryCount ? (end << shift) - offset : bytes
            st.pnum = max(1, min(bytes, reach))
            return st
        }
        if l2Offset % cs != 0 {
            note(.l2TableUnaligned, d, l1Index, nil, l1Raw, entryAt, offset - inCluster - (l2Index << cb))
            return st
        }
        let tableBytes = perTable * image.l2EntryBytes
        if l2Offset > image.source.size || image.source.size - l2Offset < tableBytes, !tablesPastEnd.contains(l2Offset) {
            tablesPastEnd.insert(l2Offset)
            note(.l2TablePastEnd, d, l1Index, nil, l1Raw, entryAt, offset - inCluster - (l2Index << cb))
        }
        let clusters = (needed + cs - 1) / cs
        var count: UInt64 = 0
        var expectedType = SubclusterType.unallocatedPlain
        var expectedOffset: UInt64 = 0
        var checkOffset = false
        var firstType = SubclusterType.unallocatedPlain
        var firstRaw: UInt64 = 0
        let extended = image.hasExtendedL2
        let fileSize = image.source.size
        let plainFlags = L2Entry.copiedFlag | L2Entry.offsetMask
        var i: UInt64 = 0
        while i < clusters {
            defer { i += 1 }
            let index = l2Index + i
            let (raw, bitmap) = try l2Entry(d, image, table: l2Offset, index: index)
            // The common runs, scanned in the table without the general decoding: contiguous data
            // clusters (no flag or reserved bit, inside the file), or unallocated entries.
            if i > 0 && !extended && (expectedType == .normal || expectedType == .unallocatedPlain) {
                let k0 = Int(index - l2First)
                let kEnd = min(l2Raw.count, k0 + Int(clusters - i))
                var k = k0
                if expectedType == .normal {
                    var next = expectedOffset &+ cs
                    var guest = (offset - inCluster) &+ i &* cs
                    while k < kEnd {
                        let r = l2Raw[k]
                        guard r & ~plainFlags == 0, r & L2Entry.offsetMask == next, external ? next == guest : next < fileSize
                        else { break }
                        next &+= cs
                        guest &+= cs
                        k += 1
                    }
                    expectedOffset = next &- cs
                } else {
                    while k < kEnd && l2Raw[k] == 0 { k += 1 }
                }
                if k > k0 {
                    let advanced = UInt64(k - k0)
                    count += advanced
                    i += advanced - 1
                    continue
                }
            }
            let first = i == 0 ? scIndex : 0
            let guest = (offset - inCluster) &+ i &* cs
            let hadIssue = validate(d, image, external: external, raw: raw, bitmap: bitmap, l1Index: l1Index,
                l2Index: index, at: l2Offset &+ index &* image.l2EntryBytes, guest: guest)
            let (type, run) = Self.rangeType(image, dataFile: external, raw: raw, bitmap: bitmap, from: first)
            if i == 0 {
                firstType = type
                firstRaw = raw
                if type == .compressed || type == .invalid || hadIssue {
                    count = subclusters - first
                    break
                }
                expectedType = type
                expectedOffset = raw & L2Entry.offsetMask
                checkOffset = type == .normal || type == .zeroAlloc || type == .unallocatedAlloc
            } else if type != expectedType || hadIssue {
                break
            } else if checkOffset {
                expectedOffset &+= cs
                if expectedOffset != raw & L2Entry.offsetMask { break }
            }
            count += run
            if first + run < subclusters { break }
        }
        let reach = (count + scIndex) << scBits
        st.pnum = max(1, min(reach, needed) - inCluster)
        // An invalid bitmap (QEMU: EIO) reads as the cluster's allocation says: data when it has a host cluster.
        var type = firstType
        if type == .invalid {
            let allocated = firstRaw & L2Entry.offsetMask != 0 || (external && firstRaw & L2Entry.copiedFlag != 0)
            type = allocated ? .normal : .unallocatedPlain
        }
        switch type {
        case .normal, .invalid: st.data = true
        case .compressed:
            st.data = true
            st.compressed = true
        case .zeroAlloc, .zeroPlain: st.zero = true
        case .unallocatedAlloc, .unallocatedPlain: break
        }
        if (type == .normal || type == .zeroAlloc || type == .unallocatedAlloc) && h.cryptMethod == 0 {
            st.offsetValid = true
            st.map = (firstRaw & L2Entry.offsetMask) &+ inCluster
        }
        return st
    }

    /// The subcluster type at `from` and how many subclusters from there share it
    /// (qcow2_get_subcluster_type, qcow2_get_subcluster_range_type).
    static func rangeType(_ image: QCOW2Image, dataFile: Bool, raw: UInt64, bitmap: UInt64, from: UInt64)
        -> (SubclusterType, UInt64)
    {
        let offset = raw & L2Entry.offsetMask
        let compressed = raw & L2Entry.compressedFlag != 0
        guard image.hasExtendedL2 else {
            if compressed { return (.compressed, 1) }
            if raw & L2Entry.zeroFlag != 0 { return (offset != 0 ? .zeroAlloc : .zeroPlain, 1) }
            if offset == 0 && !(dataFile && raw & L2Entry.copiedFlag != 0) { return (.unallocatedPlain, 1) }
            return (.normal, 1)
        }
        if compressed { return (.compressed, 32 - from) }
        let alloc = UInt32(truncatingIfNeeded: bitmap)
        let zero = UInt32(truncatingIfNeeded: bitmap >> 32)
        let below: UInt32 = from == 0 ? 0 : UInt32(truncatingIfNeeded: (UInt64(1) << from) - 1)
        let allocated = offset != 0 || (dataFile && raw & L2Entry.copiedFlag != 0)
        let type: SubclusterType
        if allocated {
            if alloc & zero != 0 {
                type = .invalid
            } else if zero & (1 << from) != 0 {
                type = .zeroAlloc
            } else if alloc & (1 << from) != 0 {
                type = .normal
            } else {
                type = .unallocatedAlloc
            }
        } else {
            if alloc != 0 {
                type = .invalid
            } else if zero & (1 << from) != 0 {
                type = .zeroPlain
            } else {
                type = .unallocatedPlain
            }
        }
        switch type {
        case .invalid, .compressed:
            return (type, 32 - from)
        case .normal:
            return (type, UInt64((~(alloc | below)).trailingZeroBitCount) - from)
        case .zeroPlain, .zeroAlloc:
            return (type, UInt64((~(zero | below)).trailingZeroBitCount) - from)
        case .unallocatedPlain, .unallocatedAlloc:
            let v = (zero | alloc) & ~below
            return (type, UInt64(v.trailingZeroBitCount) - from)
        }
    }

    /// Records what is wrong with one L2 entry; true when QEMU's map fails on it (an EIO entry).
    private func validate(
        _ d: Int, _ image: QCOW2Image, external: Bool, raw: UInt64, bitmap: UInt64, l1Index: UInt64,
        l2Index: UInt64, at entryOffset: UInt64, guest: UInt64
    ) -> Bool {
        func issue(_ k: MapIssue.Kind) { note(k, d, l1Index, l2Index, raw, entryOffset, guest) }
        let h = image.header
        let cs = h.clusterSize
        var fails = false
        if raw & L2Entry.compressedFlag == 0 {
            let reserved = raw & L2Entry.standardReservedMask
            if reserved != 0 { issue(.l2Reserved(bits: reserved)) }
        } else {
            let entry = L2Entry(
                index: l2Index, raw: raw, bitmap: image.hasExtendedL2 ? bitmap : nil, clusterBits: h.clusterBits,
                tableStart: nil, virtualSize: h.size)
            if entry.reserved != 0 { issue(.l2Reserved(bits: entry.reserved)) }
            if external {
                issue(.compressedWithDataFile)
                fails = true
            }
            let start = entry.hostOffset
            if let bytes = entry.compressedBytes, let end = start +? bytes, end > image.source.size {
                issue(.compressedPastEnd(end: end))
            }
            return fails
        }
        let offset = raw & L2Entry.offsetMask
        if !image.hasExtendedL2 && raw & L2Entry.zeroFlag != 0 && h.version < 3 {
            issue(.zeroFlagInVersion2)
            fails = true
        }
        if image.hasExtendedL2 {
            let alloc = UInt32(truncatingIfNeeded: bitmap)
            let zero = UInt32(truncatingIfNeeded: bitmap >> 32)
            let allocated = offset != 0 || (external && raw & L2Entry.copiedFlag != 0)
            if (allocated && alloc & zero != 0) || (!allocated && alloc != 0) {
                issue(.invalidSubclusterBitmap(bitmap: bitmap))
                fails = true
            }
        }
        guard offset != 0 else { return fails }
        if offset % cs != 0 {
            issue(.dataUnaligned)
            fails = true
        }
        if external {
            if offset != guest {
                issue(.dataFileOffsetMismatch)
                fails = true
            }
        } else if offset >= image.source.size {
            issue(.dataPastEnd)
        }
        return fails
    }

    private func note(
        _ kind: MapIssue.Kind, _ d: Int, _ l1: UInt64, _ l2: UInt64?, _ raw: UInt64, _ at: UInt64, _ guest: UInt64
    ) {
        guard issueSet.count < 4096 else { return }
        issueSet.insert(
            MapIssue(kind: kind, depth: d, l1Index: l1, l2Index: l2, raw: raw, entryOffset: at, guestOffset: guest))
    }

    /// L1 entry `index` of layer `d`, read 512 entries at a time (past the end of the file: zeros); one
    /// window per layer, kept in an array indexed by depth.
    private func l1Entry(_ d: Int, _ image: QCOW2Image, _ index: UInt64) throws(QCOW2Error) -> UInt64 {
        if let w = l1Windows[d], index >= w.first, index - w.first < UInt64(w.entries.count) {
            return w.entries[Int(index - w.first)]
        }
        let first = index & ~511
        let count = min(512, image.l1EntryCount - first)
        guard let at = image.header.l1TableOffset +? first * 8 else { return 0 }
        let bytes = try image.source.readZeroFilled("l1_table", at: at, count: count * 8)
        let entries = ByteReader.words(bytes, count: Int(count), stride: 8)
        l1Windows[d] = (first, entries)
        return entries[Int(index - first)]
    }

    /// L2 entry `index` (and its bitmap) of the table at `table` in layer `d`, read ``l2WindowEntries``
    /// (8192) entries at a time; each layer's last window is kept.
    private func l2Entry(_ d: Int, _ image: QCOW2Image, table: UInt64, index: UInt64) throws(QCOW2Error) -> (UInt64, UInt64) {
        if l2Layer == d, l2Table == table, index >= l2First, index - l2First < UInt64(l2Raw.count) {
            let k = Int(index - l2First)
            return (l2Raw[k], l2Bitmaps.isEmpty ? 0 : l2Bitmaps[k])
        }
        if l2Layer >= 0, l2Layer < savedL2.count, l2Layer != d { savedL2[l2Layer] = (l2Table, l2First, l2Raw, l2Bitmaps) }
        if d < savedL2.count, let s = savedL2[d], s.table == table, index >= s.first, index - s.first < UInt64(s.raw.count) {
            (l2Layer, l2Table, l2First, l2Raw, l2Bitmaps) = (d, s.table, s.first, s.raw, s.bitmaps)
            let k = Int(index - s.first)
            return (l2Raw[k], l2Bitmaps.isEmpty ? 0 : l2Bitmaps[k])
        }
        let width = image.l2EntryBytes
        let first = index & ~(l2WindowEntries - 1)
        let count = min(l2WindowEntries, image.l2EntriesPerTable - first)
        guard let at = table +? first * width else { return (0, 0) }
        let bytes = try image.source.readZeroFilled("l2_table", at: at, count: count * width)
        l2Read += count
        let w = Int(width)
        l2Raw = ByteReader.words(bytes, count: Int(count), stride: w)
        l2Bitmaps = width == 16 ? ByteReader.words(bytes, count: Int(count), stride: w, offset: 8) : []
        (l2Layer, l2Table, l2First) = (d, table, first)
        let k = Int(index - first)
        return (l2Raw[k], l2Bitmaps.isEmpty ? 0 : l2Bitmaps[k])
    }
}
