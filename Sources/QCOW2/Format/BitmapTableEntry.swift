/// One 64-bit bitmap table entry (qcow2.txt "Bitmap table"), classified and placed in guest space.
public struct BitmapTableEntry: Sendable, Hashable {
    /// How the entry describes its data cluster.
    public enum Kind: String, Sendable, Hashable {
        /// Offset 0, bit 0 clear: the cluster reads as all zeroes.
        case allZeroes = "all-zeroes"
        /// Offset 0, bit 0 set: the cluster reads as all ones.
        case allOnes = "all-ones"
        /// Offset set, bit 0 clear: data stored at the offset.
        case serialized
        /// Offset set together with bit 0: not allowed (T2).
        case invalid
    }

    /// QEMU's BME_TABLE_ENTRY_OFFSET_MASK (bits 9-55).
    public static let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
    /// QEMU's BME_TABLE_ENTRY_RESERVED_MASK (bits 1-8 and 56-63).
    public static let reservedMask: UInt64 = 0xff00_0000_0000_01fe
    /// QEMU's BME_TABLE_ENTRY_FLAG_ALL_ONES (bit 0).
    public static let allOnesFlag: UInt64 = 1

    /// Index in the table.
    public var index: UInt64
    /// The raw 64-bit value.
    public var raw: UInt64
    /// Guest byte where this entry's coverage starts, `nil` when it cannot be computed.
    public var guestStart: UInt64?
    /// Guest bytes covered, clipped to the virtual size (0 beyond it), `nil` when not computable.
    public var guestLength: UInt64?

    /// Creates an entry from its raw value and position.
    public init(index: UInt64, raw: UInt64, bytesPerEntry: UInt64?, virtualSize: UInt64) {
        self.index = index
        self.raw = raw
        (guestStart, guestLength) = Checked.guestSpan(index: index, per: bytesPerEntry, virtualSize: virtualSize)
    }

    /// Bits 9-55: the data cluster offset.
    public var dataOffset: UInt64 { raw & BitmapTableEntry.offsetMask }
    /// Bits 1-8 and 56-63.
    public var reserved: UInt64 { raw & BitmapTableEntry.reservedMask }
    /// Classification as qcow2.py prints it.
    public var kind: Kind {
        let ones = raw & BitmapTableEntry.allOnesFlag != 0
        if dataOffset == 0 { return ones ? .allOnes : .allZeroes }
        return ones ? .invalid : .serialized
    }
}
