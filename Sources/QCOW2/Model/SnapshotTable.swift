/// The internal snapshot table: the entries that could be decoded and what stopped the decoding.
public struct SnapshotTable: Sendable, Hashable {
    /// Entries in table order.
    public var entries: [SnapshotEntry]
    /// What stopped the decoding, if anything (at most one issue; Validation turns it into an `S1` finding).
    public var issues: [DecodeIssue]

    /// Creates a table from decoded entries and issues.
    public init(entries: [SnapshotEntry], issues: [DecodeIssue]) {
        self.entries = entries
        self.issues = issues
    }
}

extension QCOW2Image {
    /// Decodes the snapshot table (at most ``Limits/maxSnapshots`` entries and 64 MiB), reading it in
    /// bounded chunks; decoding stops at the first entry that cannot be read, recorded in ``SnapshotTable/issues``.
    ///
    /// Bytes past the end of the file read as zeros, as QEMU's block layer reads them (`qemu-img snapshot
    /// -l` lists such entries); ``DecodeIssue/snapshotTablePastEnd(offset:fileSize:)`` records it.
    public func snapshots() -> SnapshotTable {
        var table = SnapshotTable(entries: [], issues: [])
        let h = header
        let n = min(UInt64(h.nbSnapshots), Limits.maxSnapshots)
        guard n > 0 else { return table }
        let start = h.snapshotsOffset
        let fileSize = source.size
        guard let limitEnd = start +? Limits.maxSnapshotTableSize else {
            table.issues.append(.snapshotTableStartsPastEnd(fileSize: fileSize))
            return table
        }
        var buffer: [UInt8] = []
        var pos: UInt64 = 0  // relative to start
        var dataEnd = start  // the end of the last entry read, without its padding
        let chunk: UInt64 = 64 << 10
        /// Makes sure `buffer` holds at least `need` bytes from `start`; false when the table cannot.
        func ensure(_ need: UInt64) -> Bool {
            if UInt64(buffer.count) >= need { return true }
            guard need <= limitEnd - start else { return false }
            let have = UInt64(buffer.count)
            let want = min(max(need - have, chunk), limitEnd - start - have)
            guard let more = try? source.readZeroFilled("snapshot_table", at: start + have, count: want) else { return false }
            buffer += more
            return UInt64(buffer.count) >= need
        }
        var i = 0
        while i < Int(n) {
            let entryAt = start + pos
            // Past the end of the file every byte is zero: so is every entry left (40 bytes, no id,
            // name or extra data). The first is decoded, the rest are copies of it, without reads.
            if entryAt >= fileSize, let zero = table.entries.last, zero.entryOffset >= fileSize, zero.entrySize == 40,
                UInt64(Int(n) - i) <= (limitEnd - entryAt) / 40
            {
                table.entries.reserveCapacity(Int(n))
                for k in i..<Int(n) {
                    var e = zero
                    e.index = k
                    e.entryOffset = entryAt &+ UInt64(k - i) &* 40
                    table.entries.append(e)
                }
                dataEnd = entryAt &+ UInt64(Int(n) - i) &* 40
                break
            }
            defer { i += 1 }
            guard ensure(pos + 40) else {
                table.issues.append(.snapshotEntryTruncated(index: i, offset: entryAt, entrySize: nil, extraDataSize: nil))
                break
            }
            let p = Int(pos)
            let extra = ByteReader.uint(buffer, at: p + 36, width: 4)
            let idSize = ByteReader.uint(buffer, at: p + 12, width: 2)
            let nameSize = ByteReader.uint(buffer, at: p + 14, width: 2)
            let size = (40 + extra + idSize + nameSize + 7) / 8 * 8
            // The last entry's padding may be missing: files can end right after the name.
            let unpadded = 40 + extra + idSize + nameSize
            guard ensure(pos + unpadded) else {
                table.issues.append(.snapshotEntryTruncated(index: i, offset: entryAt, entrySize: size, extraDataSize: extra))
                break
            }
            let have = min(Int(size), buffer.count - p)
            var r = ByteReader(Array(buffer[p..<(p + have)]), base: entryAt, structure: "snapshot[\(i)]")
            guard let e = try? SnapshotEntry(parsing: &r, index: i) else {
                table.issues.append(.snapshotEntryUndecodable(index: i, offset: entryAt, extraDataSize: extra))
                break
            }
            table.entries.append(e)
            dataEnd = entryAt &+ unpadded
            pos += size
        }
        // Entries that were read, in part or whole, from past the end of the file.
        if !table.entries.isEmpty, dataEnd > fileSize {
            table.issues.insert(.snapshotTablePastEnd(offset: max(start, fileSize), fileSize: fileSize), at: 0)
        }
        return table
    }
}
