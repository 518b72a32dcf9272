/// A walk of a ``GuestMap`` kept across calls: many sorted ranges classified with one pass over the tables.
///
/// A ``GuestMap/page(from:to:limit:l2Budget:stepBudget:)`` starts a fresh walk (its L1 and L2 windows
/// read again); asking about thousands of scattered dirty runs that way would read the same L2 windows
/// thousands of times. A cursor keeps the windows, so ranges asked in guest order read each table once.
public final class MapCursor {
    private let walker: MapWalker
    /// The guest size of the map.
    public let virtualSize: UInt64

    /// A cursor over `map`.
    /// - Throws: ``QCOW2Error`` `invalidHeader` for a layer whose cluster size QEMU would refuse.
    public init(_ map: GuestMap) throws(QCOW2Error) {
        // Small L2 windows: the ranges asked about are scattered, and each window is read whole.
        walker = try MapWalker(layers: map.layers, l2WindowEntries: 512)
        virtualSize = map.virtualSize
    }

    /// L2 entries read so far (and L1 entries scanned for runs without tables): the walk's work.
    public var work: UInt64 { walker.l2Read &+ walker.l1Scanned }

    /// The bytes of `[start, end)` that read as zeros (QEMU's `zero` flag: zero clusters, and what no
    /// layer allocates) and the bytes that hold data (the rest: what a backup must read).
    ///
    /// Bytes past the map's size (a virtual size that is not a multiple of 512) read as zeros.
    /// - Throws: ``QCOW2Error`` when a table cannot be read.
    public func split(_ start: UInt64, _ end: UInt64) throws(QCOW2Error) -> (zero: UInt64, data: UInt64) {
        guard start < end else { return (0, 0) }
        var zero: UInt64 = 0
        var data: UInt64 = 0
        var p = start
        let stop = min(end, virtualSize)
        while p < stop {
            let e = try walker.entry(at: p, bytes: stop - p)
            let next = min(stop, max(p &+ 1, e.end))
            if e.zero { zero &+= next - p } else { data &+= next - p }
            p = next
        }
        if end > max(start, stop) { zero &+= end - max(start, stop) }
        return (zero, data)
    }
}
