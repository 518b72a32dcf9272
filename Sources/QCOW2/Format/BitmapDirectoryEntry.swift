/// One entry of the bitmap directory (qcow2.txt "Bitmap directory"), with derived values.
public struct BitmapDirectoryEntry: Sendable, Hashable {
    /// Bytes 0-7 (`bitmap_table_offset`).
    public var tableOffset: UInt64
    /// Bytes 8-11 (`bitmap_table_size`): number of 8-byte table entries.
    public var tableSize: UInt32
    /// Bytes 12-15 (`flags`): bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible.
    public var flags: UInt32
    /// Byte 16 (`type`): 1 = dirty tracking bitmap.
    public var type: UInt8
    /// Byte 17 (`granularity_bits`).
    public var granularityBits: UInt8
    /// Bytes 18-19 (`name_size`).
    public var nameSize: UInt16
    /// Bytes 20-23 (`extra_data_size`).
    public var extraDataSize: UInt32
    /// The extra data bytes.
    public var extraData: [UInt8]
    /// The name bytes.
    public var name: ByteString
    /// The padding bytes after the name (must be zero, D14).
    public var padding: [UInt8]
    /// Position in the directory, from 0.
    public var index: Int
    /// File offset of the entry.
    public var entryOffset: UInt64

    /// Flag bit 0: the bitmap was not saved cleanly and may be stale.
    public static let inUseFlag: UInt32 = 1 << 0
    /// Flag bit 1: the bitmap is enabled (every write must be recorded).
    public static let autoFlag: UInt32 = 1 << 1
    /// Flag bit 2: extra data may be ignored.
    public static let extraDataCompatibleFlag: UInt32 = 1 << 2

    /// Size of the fixed part of an entry.
    static let fixedSize: UInt64 = 24

    /// Parses one entry; the reader must be bounded to the directory.
    ///
    /// - Throws: ``QCOW2Error`` of kind `truncated` when the entry runs past the directory.
    init(parsing r: inout ByteReader, index: Int) throws(QCOW2Error) {
        self = try Self.fixedPart(&r, index: index)
        let body = UInt64(extraDataSize) + UInt64(nameSize)
        let total = BitmapDirectoryEntry.entrySize(extraDataSize: extraDataSize, nameSize: nameSize)
        guard total - BitmapDirectoryEntry.fixedSize <= UInt64(r.remaining) else {
            throw QCOW2Error(
                .truncated, structure: "bitmap_directory[\(index)]", field: "extra_data_size",
                value: "extra_data_size \(extraDataSize) + name_size \(nameSize)", offset: entryOffset,
                message: "entry of \(total) bytes runs past the end of the bitmap directory")
        }
        extraData = try r.bytes(Int(extraDataSize), "extra_data")
        name = ByteString(try r.bytes(Int(nameSize), "name"))
        padding = try r.bytes(Int(total - BitmapDirectoryEntry.fixedSize - body), "padding")
    }

    /// `round_up(24 + extra_data_size + name_size, 8)`: never overflows (at most 2^32 + 2^16 + 31).
    public static func entrySize(extraDataSize: UInt32, nameSize: UInt16) -> UInt64 {
        let raw = fixedSize + UInt64(extraDataSize) + UInt64(nameSize)
        return (raw + 7) / 8 * 8
    }

    /// This entry's size on disk.
    public var entrySize: UInt64 { BitmapDirectoryEntry.entrySize(extraDataSize: extraDataSize, nameSize: nameSize) }

    /// Whether flag bit 0 (`in_use`) is set.
    public var inUse: Bool { flags & BitmapDirectoryEntry.inUseFlag != 0 }
    /// Whether flag bit 1 (`auto`, i.e. enabled) is set.
    public var auto: Bool { flags & BitmapDirectoryEntry.autoFlag != 0 }

    /// Bytes of guest disk per bit: `1 << granularity_bits`, `nil` when granularity_bits >= 64.
    public var granularity: UInt64? { Checked.pow2(UInt64(granularityBits)) }

    /// Names of the set flags in qemu-img's words (`in-use`, `auto`, `extra-data-compatible`, `bit-N`).
    public var flagNames: [String] {
        FeatureGroup.bits(of: UInt64(flags)).map { bit in
            switch bit {
            case 0: "in-use"
            case 1: "auto"
            case 2: "extra-data-compatible"
            default: "bit-\(bit)"
            }
        }
    }

    /// Guest bytes covered by one table entry: `cluster_size * 8 * granularity`, `nil` on overflow.
    public func bytesPerTableEntry(clusterSize: UInt64) -> UInt64? {
        guard let g = granularity, let bits = clusterSize *? 8 else { return nil }
        return bits *? g
    }

    /// The table size QEMU requires: `ceil(ceil(ceil(size / g) / 8) / cluster_size)`.
    public func requiredTableSize(virtualSize: UInt64, clusterSize: UInt64) -> UInt64? {
        guard let g = granularity, clusterSize > 0 else { return nil }
        let bits = Checked.divCeil(virtualSize, g)
        let bytes = Checked.divCeil(bits, 8)
        return Checked.divCeil(bytes, clusterSize)
    }
}
