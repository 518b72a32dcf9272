/// One run of guest bytes in the allocation map, in `qemu-img map --output=json`'s vocabulary.
///
/// Runs are merged as qemu-img 7.2 merges them (`entry_mergeable`): equal flags and depth, in the
/// same file, and, when both have a host offset, contiguous there.
public struct MapExtent: Sendable, Hashable {
    /// First guest byte.
    public var start: UInt64
    /// Guest bytes in the run.
    public var length: UInt64
    /// The layer that answered: 0 for the image, n for its n-th backing file.
    public var depth: Int
    /// Allocated in the layer at `depth` (qemu-img `present`).
    public var present: Bool
    /// Reads as zeros.
    public var zero: Bool
    /// Holds data.
    public var data: Bool
    /// Compressed clusters (printed by newer qemu-img; 7.2 does not merge on it).
    public var compressed: Bool
    /// The host offset of `start` in the file holding the data, when qemu-img 7.2 prints one.
    public var offset: UInt64?
    /// Which file `offset` is in (layer and data file), compared when merging like qemu-img's filename.
    public var file: Int

    /// Creates an extent.
    public init(
        start: UInt64, length: UInt64, depth: Int, present: Bool, zero: Bool, data: Bool, compressed: Bool,
        offset: UInt64?, file: Int
    ) {
        self.start = start
        self.length = length
        self.depth = depth
        self.present = present
        self.zero = zero
        self.data = data
        self.compressed = compressed
        self.offset = offset
        self.file = file
    }

    /// The guest byte after the run (saturating).
    public var end: UInt64 { start.addingReportingOverflow(length).overflow ? UInt64.max : start + length }

    /// Whether `next` continues this run as qemu-img 7.2's `entry_mergeable` decides.
    public func merges(with next: MapExtent) -> Bool {
        guard length != 0, zero == next.zero, data == next.data, depth == next.depth, present == next.present,
            (offset == nil) == (next.offset == nil), end == next.start
        else { return false }
        guard let o = offset, let n = next.offset else { return true }
        return file == next.file && o +? length == n
    }
}
