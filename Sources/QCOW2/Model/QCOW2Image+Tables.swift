extension QCOW2Image {
    /// Reads one page of a bitmap's table with a single `pread` of `limit` entries at most.
    ///
    /// Reads are proportional to the page, never to the table: the last page of a million-entry
    /// table costs the same as the first.
    /// - Parameters:
    ///   - bitmap: the directory entry.
    ///   - offset: index of the first entry; must be below `bitmap_table_size` (0 is always allowed).
    ///   - limit: entries wanted, 1...``Limits/maxTablePage``.
    /// - Throws: ``QCOW2Error`` `outOfRange` for a bad offset or limit, `truncated` when the table
    ///   runs past the end of the file, `io` on a read failure.
    public func bitmapTable(_ bitmap: BitmapDirectoryEntry, offset: UInt64 = 0, limit: Int = 256) throws(QCOW2Error)
        -> [BitmapTableEntry]
    {
        let total = UInt64(bitmap.tableSize)
        let s = "bitmap_table[\(bitmap.index)]"
        guard limit >= 1, limit <= Limits.maxTablePage else {
            throw QCOW2Error(.outOfRange, structure: s, field: "limit", value: "\(limit)", message: "limit must be 1...\(Limits.maxTablePage)")
        }
        if total == 0 && offset == 0 { return [] }
        guard offset < total else {
            throw QCOW2Error(
                .outOfRange, structure: s, field: "offset", value: "\(offset)",
                message: "offset past the end of the table (\(total) entries)")
        }
        let count = min(UInt64(limit), total - offset)
        guard let start = bitmap.tableOffset +? offset * 8 else {
            throw QCOW2Error(.outOfRange, structure: s, field: "bitmap_table_offset", value: Hex.string(bitmap.tableOffset),
                offset: bitmap.entryOffset, message: "table offset overflows")
        }
        // QEMU reads a table past the end of the file as zeros (T6 says so): all-zeroes entries, clean.
        let bytes = try source.readZeroFilled(s, at: start, count: count * 8)
        let per = bitmap.bytesPerTableEntry(clusterSize: header.clusterSize)
        var out: [BitmapTableEntry] = []
        out.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            let raw = ByteReader.uint(bytes, at: i * 8, width: 8)
            out.append(BitmapTableEntry(index: offset + UInt64(i), raw: raw, bytesPerEntry: per, virtualSize: header.size))
        }
        return out
    }

    /// The bytes of one bitmap data cluster (the whole cluster at `entry`'s data offset), `nil` when unreadable.
    func bitmapDataCluster(_ entry: BitmapTableEntry) -> [UInt8]? {
        try? source.read("bitmap_data", at: entry.dataOffset, count: header.clusterSize)
    }
}
