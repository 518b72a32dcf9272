/// What an incremental backup since a checkpoint reads: its dirty bytes, split by the allocation map.
///
/// `dirty` is the union of the bitmaps over the chain; `backup` the dirty bytes that hold data
/// somewhere in the chain (what a backup tool must read), `zero` the dirty bytes that read as zeros
/// (zero clusters, and what no layer allocates), which NBD clients skip. `backup + zero == dirty`.
public struct CheckpointSizes: Sendable, Hashable {
    /// Dirty guest bytes.
    public var dirty: UInt64 = 0
    /// Dirty bytes that hold data.
    public var backup: UInt64 = 0
    /// Dirty bytes that read as zeros.
    public var zero: UInt64 = 0
    /// Dirty runs of the union.
    public var dirtyRuns: UInt64 = 0
    /// L2 entries the map read for them.
    public var mapWork: UInt64 = 0

    /// Work a measurement may do on the map (L2 entries read), as for the allocation totals.
    public static let defaultMapBudget: UInt64 = 1 << 25
    /// Work a measurement may do on the bitmaps (questions asked of the layers' bitmaps).
    public static let defaultBitmapBudget: UInt64 = 1 << 24

    /// Measures the union of `names` over `bitmaps` against `map`, over the whole disk.
    ///
    /// Every dirty run is classified by one walk of the map in guest order (each L2 window read once).
    /// - Returns: the sizes, or nil when the bitmaps or the map need more work than their budget.
    /// - Throws: ``QCOW2Error`` when a bitmap or a table cannot be read.
    public static func measure(
        _ names: [ByteString], bitmaps: ChainBitmaps, map: GuestMap, bitmapBudget: UInt64 = defaultBitmapBudget,
        mapBudget: UInt64 = defaultMapBudget
    ) throws(QCOW2Error) -> CheckpointSizes? {
        let cursor = try MapCursor(map)
        var s = CheckpointSizes()
        var over = false
        let stopped = try bitmaps.forEachRun(of: names, from: 0, to: bitmaps.size, stepBudget: bitmapBudget) {
            a, b, dirty throws(QCOW2Error) in
            guard dirty else { return true }
            let (z, d) = try cursor.split(a, b)
            s.dirty &+= b - a
            s.zero &+= z
            s.backup &+= d
            s.dirtyRuns &+= 1
            if cursor.work > mapBudget {
                over = true
                return false
            }
            return true
        }
        s.mapWork = cursor.work
        return over || stopped != nil ? nil : s
    }
}
