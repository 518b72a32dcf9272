/// The bitmaps header extension (magic 0x23852875, 24 bytes; qcow2.txt "Bitmaps extension").
public struct BitmapsExtension: Sendable, Hashable {
    /// Bytes 0-3 (`nb_bitmaps`).
    public var nbBitmaps: UInt32
    /// Bytes 4-7 (`reserved32`): must be zero.
    public var reserved32: UInt32
    /// Bytes 8-15 (`bitmap_directory_size`): total bytes of the directory.
    public var directorySize: UInt64
    /// Bytes 16-23 (`bitmap_directory_offset`): cluster-aligned file offset of the directory.
    public var directoryOffset: UInt64

    /// Creates the extension from its fields.
    public init(nbBitmaps: UInt32, reserved32: UInt32, directorySize: UInt64, directoryOffset: UInt64) {
        self.nbBitmaps = nbBitmaps
        self.reserved32 = reserved32
        self.directorySize = directorySize
        self.directoryOffset = directoryOffset
    }

    /// Parses the first 24 bytes of the extension data.
    init(parsing r: inout ByteReader) throws(QCOW2Error) {
        nbBitmaps = try r.u32("nb_bitmaps")
        reserved32 = try r.u32("reserved32")
        directorySize = try r.u64("bitmap_directory_size")
        directoryOffset = try r.u64("bitmap_directory_offset")
    }
}
