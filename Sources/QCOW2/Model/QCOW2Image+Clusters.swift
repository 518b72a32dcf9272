// The cluster mapping's tables, a page at a time: the L1 table and one L2 table (qcow2.txt "Cluster
// mapping"). Each page reads exactly the entries it returns: the cost of the last page equals the first.

extension QCOW2Image {
    /// Whether L2 entries are 128 bits with subcluster bitmaps (incompatible bit 4).
    public var hasExtendedL2: Bool { header.incompatibleFeatures & Header.extendedL2Bit != 0 }

    /// Bytes per L2 entry: 8, or 16 with extended L2 entries.
    public var l2EntryBytes: UInt64 { hasExtendedL2 ? 16 : 8 }

    /// Entries per L2 table (one cluster).
    public var l2EntriesPerTable: UInt64 { header.clusterSize / l2EntryBytes }

    /// Guest bytes one L2 table maps, nil on overflow.
    public var bytesPerL2Table: UInt64? { l2EntriesPerTable *? header.clusterSize }

    /// Entries of the L1 table this image may have: `l1_size`, capped at QEMU's 32 MiB L1 limit.
    public var l1EntryCount: UInt64 { min(UInt64(header.l1Size), Limits.maxL1Bytes / 8) }

    /// A page of the L1 table: `limit` entries from `offset`.
    ///
    /// - Throws: ``QCOW2Error`` `outOfRange` for a page outside the table, or the read's error.
    public func l1Entries(offset: UInt64 = 0, limit: Int = 256) throws(QCOW2Error) -> [L1Entry] {
        let s = "l1_table"
        let total = l1EntryCount
        try Self.checkPage(s, offset: offset, limit: limit, total: total)
        if total == 0 { return [] }
        let count = min(UInt64(limit), total - offset)
        guard let start = header.l1TableOffset +? offset * 8 else {
            throw QCOW2Error(
                .outOfRange, structure: s, field: "l1_table_offset", value: Hex.string(header.l1TableOffset), offset: 40,
                message: "the L1 table offset overflows")
        }
        let bytes = try source.read(s, at: start, count: count * 8)
        let per = bytesPerL2Table
        return (0..<Int(count)).map { i in
            L1Entry(index: offset + UInt64(i), raw: ByteReader.uint(bytes, at: i * 8, width: 8), bytesPerL2: per,
                virtualSize: header.size)
        }
    }

    /// A page of the L2 table that `l1` points at: `limit` entries from `offset`. An unallocated L2
    /// table (offset 0) reads as unallocated entries without touching the file.
    ///
    /// - Throws: ``QCOW2Error`` `outOfRange` for a page outside the table or an L2 offset that is not
    ///   cluster aligned (QEMU refuses it as corruption), or the read's error (a table past the end).
    public func l2Entries(_ l1: L1Entry, offset: UInt64 = 0, limit: Int = 256) throws(QCOW2Error) -> [L2Entry] {
        let s = "l2_table[\(l1.index)]"
        let total = l2EntriesPerTable
        try Self.checkPage(s, offset: offset, limit: limit, total: total)
        let count = min(UInt64(limit), total - offset)
        let tableStart = bytesPerL2Table.flatMap { l1.index *? $0 }
        let cluster = UInt64(header.clusterBits)
        func entry(_ i: Int, _ raw: UInt64, _ bitmap: UInt64?) -> L2Entry {
            L2Entry(
                index: offset + UInt64(i), raw: raw, bitmap: bitmap, clusterBits: UInt32(cluster),
                tableStart: tableStart, virtualSize: header.size)
        }
        guard l1.l2Offset != 0 else {
            return (0..<Int(count)).map { entry($0, 0, hasExtendedL2 ? 0 : nil) }
        }
        guard l1.l2Offset % header.clusterSize == 0 else {
            throw QCOW2Error(
                .outOfRange, structure: "l1_table[\(l1.index)]", field: "l2_offset", value: Hex.string(l1.l2Offset),
                offset: header.l1TableOffset &+ l1.index &* 8, message: "the L2 table offset is not cluster aligned")
        }
        let width = l2EntryBytes
        guard let start = l1.l2Offset +? offset * width else {
            throw QCOW2Error(.outOfRange, structure: s, field: "l2_offset", value: Hex.string(l1.l2Offset), message: "overflow")
        }
        let bytes = try source.read(s, at: start, count: count * width)
        let w = Int(width)
        return (0..<Int(count)).map { i in
            entry(
                i, ByteReader.uint(bytes, at: i * w, width: 8),
                hasExtendedL2 ? ByteReader.uint(bytes, at: i * w + 8, width: 8) : nil)
        }
    }

    /// Refuses a page outside a table of `total` entries, or a limit outside 1...``Limits/maxTablePage``.
    static func checkPage(_ s: String, offset: UInt64, limit: Int, total: UInt64) throws(QCOW2Error) {
        guard limit >= 1, limit <= Limits.maxTablePage else {
            throw QCOW2Error(.outOfRange, structure: s, field: "limit", value: "\(limit)", message: "limit must be 1...\(Limits.maxTablePage)")
        }
        guard offset < total || (total == 0 && offset == 0) else {
            throw QCOW2Error(
                .outOfRange, structure: s, field: "offset", value: "\(offset)", message: "offset past the end of the table (\(total) entries)")
        }
    }
}
