/// A damaged L1 or L2 entry the map met, kept as plain data (Validation turns it into a finding).
///
/// The map goes on past every issue: the range is reported as the entry reads (QEMU's check reads
/// it the same way), and the issue says what is wrong, where.
public struct MapIssue: Sendable, Hashable {
    /// What is wrong.
    public enum Kind: Sendable, Hashable {
        /// The L1 entry's L2 table offset is not cluster aligned (QEMU: EIO; the range reads as unallocated).
        case l2TableUnaligned
        /// The L2 table lies wholly or partly past the end of the file (read as zeros, as QEMU does).
        case l2TablePastEnd
        /// Reserved bits are set in the L1 entry.
        case l1Reserved(bits: UInt64)
        /// The data cluster offset is not cluster aligned (QEMU: EIO).
        case dataUnaligned
        /// The data cluster starts at or past the end of the file.
        case dataPastEnd
        /// Reserved bits are set in the L2 entry.
        case l2Reserved(bits: UInt64)
        /// The compressed data runs past the end of the file.
        case compressedPastEnd(end: UInt64)
        /// A zero flag in a version 2 image (QEMU: EIO).
        case zeroFlagInVersion2
        /// The extended L2 bitmap is invalid: a subcluster both allocated and zero, or allocated in an
        /// unallocated cluster (QEMU: EIO).
        case invalidSubclusterBitmap(bitmap: UInt64)
        /// A compressed cluster in an image with an external data file (QEMU: EIO).
        case compressedWithDataFile
        /// The external data file offset differs from the guest offset (QEMU: EIO).
        case dataFileOffsetMismatch
    }

    /// What is wrong.
    public var kind: Kind
    /// The layer (0: the image) whose table holds the entry.
    public var depth: Int
    /// The L1 index.
    public var l1Index: UInt64
    /// The L2 index, nil for an L1 entry's issue.
    public var l2Index: UInt64?
    /// The raw entry.
    public var raw: UInt64
    /// The file offset of the entry.
    public var entryOffset: UInt64
    /// The first guest byte the entry maps.
    public var guestOffset: UInt64
}
