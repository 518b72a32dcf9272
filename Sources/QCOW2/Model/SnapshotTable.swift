/// The internal snapshot table: entries that could be parsed and the `S*` findings about it.
public struct SnapshotTable: Sendable, Hashable {
    /// Entries in table order.
    public var entries: [SnapshotEntry]
    /// Findings about the table.
    public var findings: [Finding]
}

extension QCOW2Image {
    /// Parses the snapshot table (at most ``Limits/maxSnapshots`` entries and 64 MiB), reading it in
    /// bounded chunks; problems become findings and parsing stops at the first broken entry.
    public func snapshots() -> SnapshotTable {
        var table = SnapshotTable(entries: [], findings: [])
        let h = header
        let n = min(UInt64(h.nbSnapshots), Limits.maxSnapshots)
        guard n > 0 else { return table }
        func add(_ code: String, _ sev: Finding.Severity, _ structure: String, _ field: String?, _ value: String?,
            _ off: UInt64?, _ msg: String)
        {
            table.findings.append(Finding(code, sev, structure: structure, field: field, value: value, offset: off, message: msg))
        }
        let start = h.snapshotsOffset
        guard start < source.size else {
            add("S1", .error, "header", "snapshots_offset", Hex.string(start), 64,
                "snapshot table starts past the end of the file (\(source.size) bytes)")
            return table
        }
        let limitEnd = min(source.size, start +? Limits.maxSnapshotTableSize ?? source.size)
        var buffer: [UInt8] = []
        var pos: UInt64 = 0  // relative to start
        var ids: Set<ByteString> = []
        let chunk: UInt64 = 64 << 10
        /// Makes sure `buffer` holds at least `need` bytes from `start`; false when the table cannot.
        func ensure(_ need: UInt64) -> Bool {
            if UInt64(buffer.count) >= need { return true }
            guard need <= limitEnd - start else { return false }
            let have = UInt64(buffer.count)
            let want = min(max(need - have, chunk), limitEnd - start - have)
            guard let more = try? source.read("snapshot_table", at: start + have, count: want) else { return false }
            buffer += more
            return UInt64(buffer.count) >= need
        }
        for i in 0..<Int(n) {
            let entryAt = start + pos
            guard ensure(pos + 40) else {
                add("S1", .error, "snapshot[\(i)]", nil, nil, entryAt,
                    "snapshot table truncated: entry \(i) of \(h.nbSnapshots) runs past the end of the file or 64 MiB")
                break
            }
            let p = Int(pos)
            let extra = ByteReader.uint(buffer, at: p + 36, width: 4)
            let idSize = ByteReader.uint(buffer, at: p + 12, width: 2)
            let nameSize = ByteReader.uint(buffer, at: p + 14, width: 2)
            let size = (40 + extra + idSize + nameSize + 7) / 8 * 8
            if extra > Limits.maxSnapshotExtraData {
                add("S4", .error, "snapshot[\(i)]", "extra_data_size", "\(extra)", entryAt + 36,
                    "Too much extra metadata in snapshot table entry \(i) (QEMU allows 1024 bytes)")
            }
            // The last entry's padding may be missing: files can end right after the name.
            let unpadded = 40 + extra + idSize + nameSize
            guard ensure(pos + unpadded) else {
                add("S1", .error, "snapshot[\(i)]", nil, nil, entryAt,
                    "snapshot table truncated: entry \(i) (\(size) bytes) runs past the end of the file or 64 MiB")
                break
            }
            let have = min(Int(size), buffer.count - p)
            var r = ByteReader(Array(buffer[p..<(p + have)]), base: entryAt, structure: "snapshot[\(i)]")
            guard let e = try? SnapshotEntry(parsing: &r, index: i) else {
                add("S1", .error, "snapshot[\(i)]", nil, nil, entryAt, "snapshot entry \(i) cannot be parsed")
                break
            }
            if e.l1TableOffset % h.clusterSize != 0 {
                add("S2", .error, "snapshot[\(i)]", "l1_table_offset", Hex.string(e.l1TableOffset), entryAt,
                    "snapshot L1 table offset is not cluster aligned")
            }
            if h.version >= 3 && e.extraDataSize < 16 {
                add("S3", .error, "snapshot[\(i)]", "extra_data_size", "\(e.extraDataSize)", entryAt + 36,
                    "version 3 snapshots need at least 16 bytes of extra data")
            }
            if ids.contains(e.id) {
                add("S5", .error, "snapshot[\(i)]", "id_str", e.id.escaped, entryAt + 40 + UInt64(e.extraDataSize),
                    "duplicate snapshot ID")
            }
            if UInt64(e.l1Size) * 8 > Limits.maxL1Bytes {
                add("S6", .error, "snapshot[\(i)]", "l1_size", "\(e.l1Size)", entryAt + 8, "snapshot L1 table larger than 32 MiB")
            }
            ids.insert(e.id)
            table.entries.append(e)
            pos += size
        }
        if UInt64(h.nbSnapshots) > n {
            add("S1", .error, "header", "nb_snapshots", "\(h.nbSnapshots)", 60, "only the first \(n) snapshots were read")
        }
        return table
    }
}
