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
        let bytes = try source.read(s, at: start, count: count * 8)
        let per = bitmap.bytesPerTableEntry(clusterSize: header.clusterSize)
        var out: [BitmapTableEntry] = []
        out.reserveCapacity(Int(count))
        for i in 0..<Int(count) {
            let raw = ByteReader.uint(bytes, at: i * 8, width: 8)
            out.append(BitmapTableEntry(index: offset + UInt64(i), raw: raw, bytesPerEntry: per, virtualSize: header.size))
        }
        return out
    }

    /// Checks the table rules T1-T5 for one bitmap, reading its whole table in bounded chunks.
    ///
    /// Tables larger than ``Limits/maxTableEntriesChecked`` (which D4/D9 already flag) are not read;
    /// an `info` finding says so. In-use bitmaps are checked too: their findings say the data is stale.
    public func tableFindings(_ bitmap: BitmapDirectoryEntry) -> [Finding] {
        var f: [Finding] = []
        let total = UInt64(bitmap.tableSize)
        let s = "bitmap_table[\(bitmap.index)]"
        let name = bitmap.name.escaped
        guard total > 0, bitmap.tableOffset != 0 else { return f }
        guard total <= Limits.maxTableEntriesChecked else {
            f.append(
                Finding("T1", .info, structure: s, field: "bitmap_table_size", value: "\(total)", offset: bitmap.entryOffset + 8,
                    bitmapIndex: bitmap.index, message: "table of \(total) entries is too large to check (limit \(Limits.maxTableEntriesChecked)); entries not checked"))
            return f
        }
        let cs = header.clusterSize
        var refs = RefcountReader(image: self)
        var lastSerialized: BitmapTableEntry?
        var offset: UInt64 = 0
        var reported = 0
        let maxReported = 100
        func add(_ finding: Finding) {
            if reported < maxReported { f.append(finding) }
            reported += 1
        }
        while offset < total {
            let page: [BitmapTableEntry]
            do {
                page = try bitmapTable(bitmap, offset: offset, limit: Limits.maxTablePage)
            } catch {
                add(Finding("T1", .error, structure: s, field: error.field, value: error.value, offset: error.offset,
                    bitmapIndex: bitmap.index, message: "Could not read bitmap_table table from image for bitmap '\(name)': \(error.message)"))
                break
            }
            for e in page {
                let at = bitmap.tableOffset &+ e.index &* 8
                let es = "bitmap_table[\(bitmap.index)][\(e.index)]"
                if e.reserved != 0 {
                    add(Finding("T1", .error, structure: es, field: "reserved", value: Hex.string(e.raw), offset: at,
                        bitmapIndex: bitmap.index, message: "reserved bits set in a table entry of bitmap '\(name)'"))
                }
                if e.kind == .invalid {
                    add(Finding("T2", .error, structure: es, field: "all_ones", value: Hex.string(e.raw), offset: at,
                        bitmapIndex: bitmap.index, message: "entry has a data offset and the all-ones bit in bitmap '\(name)'"))
                }
                if e.dataOffset != 0 {
                    if e.dataOffset % cs != 0 {
                        add(Finding("T3", .error, structure: es, field: "offset", value: Hex.string(e.dataOffset), offset: at,
                            bitmapIndex: bitmap.index, message: "data cluster offset is not cluster aligned in bitmap '\(name)'"))
                    } else if e.dataOffset >= source.size {
                        add(Finding("T3", .error, structure: es, field: "offset", value: Hex.string(e.dataOffset), offset: at,
                            bitmapIndex: bitmap.index, message: "data cluster lies past the end of the file (\(source.size))"))
                    } else if let rc = refs.refcount(of: e.dataOffset), rc == 0 {
                        add(Finding("T5", .error, structure: es, field: "offset", value: Hex.string(e.dataOffset), offset: at,
                            bitmapIndex: bitmap.index, message: "data cluster has refcount 0 (would be reused by a writer)"))
                    }
                }
                if e.kind == .serialized && e.reserved == 0 && e.dataOffset % cs == 0 { lastSerialized = e }
            }
            offset += UInt64(page.count)
            if page.isEmpty { break }
        }
        if reported > maxReported {
            f.append(Finding("T1", .info, structure: s, bitmapIndex: bitmap.index,
                message: "\(reported - maxReported) more table findings for bitmap '\(name)' not listed"))
        }
        // T5 for the table's own clusters.
        let tableBytes = total * 8
        let tableEnd = bitmap.tableOffset +? tableBytes ?? UInt64.max
        var c = bitmap.tableOffset / cs * cs
        while c < tableEnd && c < source.size {
            if let rc = refs.refcount(of: c), rc == 0 {
                f.append(Finding("T5", .error, structure: s, field: "bitmap_table_offset", value: Hex.string(c), offset: bitmap.entryOffset,
                    bitmapIndex: bitmap.index, message: "bitmap table cluster at \(Hex.string(c)) has refcount 0"))
                break
            }
            c += cs
        }
        if let last = lastSerialized, let tail = tailFinding(bitmap, last) { f.append(tail) }
        return f
    }

    /// T4: bits past the end of the virtual disk in the last data cluster must be zero.
    private func tailFinding(_ bitmap: BitmapDirectoryEntry, _ entry: BitmapTableEntry) -> Finding? {
        guard let g = bitmap.granularity, bitmap.granularityBits <= 63 else { return nil }
        let cs = header.clusterSize
        let totalBits = Checked.divCeil(header.size, g)
        let bitsPerCluster = cs * 8
        guard let firstBit = entry.index *? bitsPerCluster else { return nil }
        // Only the cluster holding the last bit (or beyond it) can have tail bits.
        guard let endBit = firstBit +? bitsPerCluster, endBit > totalBits else { return nil }
        let validInCluster = totalBits > firstBit ? totalBits - firstBit : 0
        guard let data = try? source.read("bitmap_data", at: entry.dataOffset, count: cs) else { return nil }
        var bad: UInt64?
        var bit = validInCluster
        while bit < bitsPerCluster {
            let byte = data[Int(bit / 8)]
            if bit % 8 == 0 && byte == 0 {
                bit += 8
                continue
            }
            if byte >> (bit % 8) & 1 != 0 {
                bad = bit
                break
            }
            bit += 1
        }
        guard let bad else { return nil }
        return Finding("T4", .warning, structure: "bitmap_data[\(bitmap.index)][\(entry.index)]", field: "tail", value: "bit \(firstBit + bad)",
            offset: entry.dataOffset + bad / 8, bitmapIndex: bitmap.index,
            message: "bits past the end of the virtual disk are set in the last data cluster of bitmap '\(bitmap.name.escaped)'")
    }
}
