/// Totals of the allocation map over the whole disk: what the map's extents add up to.
///
/// Each figure is a sum over ``GuestMap`` extents, so it equals what summing `qemu-img map
/// --output=json` gives: `allocated_bytes + zero_bytes + unallocated_bytes` is the virtual size.
public struct AllocationTotals: Sendable, Hashable {
    /// The guest size (rounded down to 512, as qemu-img counts it).
    public var virtualSize: UInt64 = 0
    /// Bytes that hold data in some layer (`present` and `data`; compressed and preallocated included).
    public var allocatedBytes: UInt64 = 0
    /// Bytes that read as zeros from a zero cluster of some layer (`present`, `zero`, not `data`).
    public var zeroBytes: UInt64 = 0
    /// Bytes of compressed clusters (a part of ``allocatedBytes``).
    public var compressedBytes: UInt64 = 0
    /// Bytes no layer allocates (`present` false): they read as zeros.
    public var unallocatedBytes: UInt64 = 0
    /// Guest clusters of the image itself (depth 0) that hold uncompressed data.
    public var dataClusters: UInt64 = 0
    /// Guest clusters of the image itself (depth 0) that are compressed.
    public var compressedClusters: UInt64 = 0
    /// ``allocatedBytes`` by layer, the image first.
    public var dataBytesByDepth: [UInt64] = []
    /// Damaged entries met on the walk.
    public var issues: [MapIssue] = []
    /// L2 entries read by the walk.
    public var l2EntriesRead: UInt64 = 0

    /// Adds one extent; `clusterSize` is the image's, `last` the last depth-0 cluster already counted.
    mutating func add(_ e: MapExtent, clusterSize: UInt64, last: inout (data: UInt64?, compressed: UInt64?)) {
        if !e.present {
            unallocatedBytes &+= e.length
        } else if e.data {
            allocatedBytes &+= e.length
            while dataBytesByDepth.count <= e.depth { dataBytesByDepth.append(0) }
            dataBytesByDepth[e.depth] &+= e.length
            if e.compressed { compressedBytes &+= e.length }
        } else {
            zeroBytes &+= e.length
        }
        guard e.depth == 0, e.present, e.data, e.length > 0, clusterSize > 0 else { return }
        // Clusters the extent touches, less one already counted when the previous extent ended inside it.
        let first = e.start / clusterSize
        let lastCluster = (e.end - 1) / clusterSize
        func count(_ seen: inout UInt64?) -> UInt64 {
            let from = seen.map { max(first, $0 &+ 1) } ?? first
            seen = lastCluster
            return lastCluster >= from ? lastCluster - from + 1 : 0
        }
        if e.compressed {
            compressedClusters &+= count(&last.compressed)
        } else {
            dataClusters &+= count(&last.data)
        }
    }
}

extension GuestMap {
    /// The totals of the whole map, in one walk; nil when it needs more than `l2Budget` L2 entries
    /// or `stepBudget` questions to the layers (the caller says the budget was the reason).
    public func totals(l2Budget: UInt64 = 1 << 25, stepBudget: UInt64 = 1 << 25) throws(QCOW2Error) -> AllocationTotals? {
        var t = AllocationTotals()
        t.virtualSize = virtualSize
        var clusterSize: UInt64 = 0
        if case .qcow2(let image, _)? = layers.first?.content { clusterSize = image.header.clusterSize }
        var last: (data: UInt64?, compressed: UInt64?) = (nil, nil)
        var from: UInt64? = 0
        var steps: UInt64 = 0
        var issues: Set<MapIssue> = []
        while let start = from, start < virtualSize {
            let page = try self.page(from: start, to: virtualSize, limit: 10_000)
            t.l2EntriesRead &+= page.l2EntriesRead
            steps &+= page.steps
            if t.l2EntriesRead > l2Budget || steps > stepBudget { return nil }
            for e in page.extents { t.add(e, clusterSize: clusterSize, last: &last) }
            if issues.count < 4096 { issues.formUnion(page.issues) }
            from = page.next
        }
        t.issues = issues.sorted { ($0.guestOffset, $0.depth) < ($1.guestOffset, $1.depth) }
        return t
    }
}
