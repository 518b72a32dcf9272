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
        self.index = index
        entryOffset = offset
        tableOffset = try r.u64("bitmap_table_offset")
        tableSize = try r.u32("bitmap_table_size")
        flags = try r.u32("flags")
        type = try r.u8("type")
        granularityBits = try r.u8("granularity_bits")
        nameSize = try r.u16("name_size")
        extraDataSize = try r.u32("extra_data_size")
        extraData = []
        name = ByteString([])
        padding = []
    }
}
