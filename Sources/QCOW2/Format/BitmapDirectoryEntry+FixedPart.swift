extension BitmapDirectoryEntry {
    /// Bytes of an entry's fixed part (`bitmap_table_offset` to `extra_data_size`).
    public static let fixedPartLength = 24

    /// Decodes the fixed part of entry `index` from bytes read at file offset `offset`, checking nothing.
    ///
    /// Extra data, name and padding are left empty for a caller that reads them its own way (qcow2.py
    /// seeks over the extra data and reads the name wherever that lands, directory size or not).
    /// - Throws: ``QCOW2Error`` `truncated` when `bytes` holds fewer than 24 bytes.
    public init(decodingFixedPart bytes: [UInt8], at offset: UInt64, index: Int) throws(QCOW2Error) {
        var r = ByteReader(bytes, base: offset, structure: "bitmap_directory[\(index)]")
        self = try Self.fixedPart(&r, index: index)
    }

    /// Reads the fixed part at the reader's position: the one decoder of the 24 bytes, used by the
    /// parser (``init(parsing:index:)``) and by the qcow2.py dump. Extra data, name and padding are empty.
    static func fixedPart(_ r: inout ByteReader, index: Int) throws(QCOW2Error) -> BitmapDirectoryEntry {
        var e = BitmapDirectoryEntry(index: index, entryOffset: r.fileOffset)
        e.tableOffset = try r.u64("bitmap_table_offset")
        e.tableSize = try r.u32("bitmap_table_size")
        e.flags = try r.u32("flags")
        e.type = try r.u8("type")
        e.granularityBits = try r.u8("granularity_bits")
        e.nameSize = try r.u16("name_size")
        e.extraDataSize = try r.u32("extra_data_size")
        return e
    }

    /// An entry at `index` and `entryOffset` with every field zero and nothing read yet.
    private init(index: Int, entryOffset: UInt64) {
        self.index = index
        self.entryOffset = entryOffset
        tableOffset = 0
        tableSize = 0
        flags = 0
        type = 0
        granularityBits = 0
        nameSize = 0
        extraDataSize = 0
        extraData = []
        name = ByteString([])
        padding = []
    }
}
