/// One 64-bit L1 table entry (qcow2.txt "Cluster mapping"): where one L2 table is.
public struct L1Entry: Sendable, Hashable {
    /// QEMU's L1E_OFFSET_MASK (bits 9-55): the L2 table's offset.
    public static let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
    /// QEMU's L1E_RESERVED_MASK (bits 0-8 and 56-62).
    public static let reservedMask: UInt64 = 0x7f00_0000_0000_01ff
    /// QCOW_OFLAG_COPIED (bit 63): the L2 table's refcount is exactly 1.
    public static let copiedFlag: UInt64 = 1 << 63

    /// Index in the L1 table.
    public var index: UInt64
    /// The raw value.
    public var raw: UInt64
    /// Guest byte where the L2 table's coverage starts, nil when it overflows.
    public var guestStart: UInt64?
    /// Guest bytes the L2 table covers, clipped to the virtual size (0 beyond it), nil when it overflows.
    public var guestLength: UInt64?

    /// Decodes `raw` at `index`; `bytesPerL2` is the guest bytes one L2 table maps (nil: overflows).
    public init(index: UInt64, raw: UInt64, bytesPerL2: UInt64?, virtualSize: UInt64) {
        self.index = index
        self.raw = raw
        (guestStart, guestLength) = Checked.guestSpan(index: index, per: bytesPerL2, virtualSize: virtualSize)
    }

    /// Bits 9-55: the L2 table's file offset; 0 when the L2 table (and all under it) is unallocated.
    public var l2Offset: UInt64 { raw & L1Entry.offsetMask }
    /// Bit 63.
    public var copied: Bool { raw & L1Entry.copiedFlag != 0 }
    /// The reserved bits that are set (must be 0).
    public var reserved: UInt64 { raw & L1Entry.reservedMask }
}
