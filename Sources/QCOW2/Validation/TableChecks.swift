/// The bitmap table and data rules T1-T6 for one bitmap, reading its whole table in bounded chunks.
enum TableChecks {
    /// Checks one bitmap's table (see ``ImageValidator/tableFindings(_:_:)``).
    static func check(_ image: QCOW2Image, _ bitmap: BitmapDirectoryEntry) -> [Finding] {
        var f: [Finding] = []
        let total = UInt64(bitmap.tableSize)
        let s = "bitmap_table[\(bitmap.index)]"
        let name = bitmap.name.escaped
        guard total > 0, bitmap.tableOffset != 0 else { return f }
        guard total <= Limits.maxTableEntriesChecked else {
            f.append(
                Finding(notChecked: .t1, structure: s, field: "bitmap_table_size", value: "\(total)",
                    offset: bitmap.entryOffset + 8, bitmapIndex: bitmap.index,
                    message: "table of \(total) entries is too large to check (limit \(Limits.maxTableEntriesChecked)); entries not checked"))
            return f
        }
        let cs = image.header.clusterSize
        let fileSize = image.source.size
        if let t6 = pastEnd(image, bitmap) { f.append(t6) }
        var refs = RefcountReader(image: image)
        var lastSerialized: BitmapTableEntry?
        var offset: UInt64 = 0
        var reported = 0
        let maxReported = 100
        func add(_ finding: Finding) {
            if reported < maxReported { f.append(finding) }
            reported += 1
        }
        while offset < total {
            // Entries past the end of the file read as zeros, which break no rule (T6 reports the table):
            // a table of millions of them is not read page by page.
            if let at = (offset *? 8).flatMap({ bitmap.tableOffset +? $0 }), at >= fileSize { break }
            let page: [BitmapTableEntry]
            do {
                page = try image.bitmapTable(bitmap, offset: offset, limit: Limits.maxTablePage)
            } catch {
                add(
                    Finding(.t1, structure: s, field: error.field, value: error.value, offset: error.offset,
                        bitmapIndex: bitmap.index,
                        message: "Could not read bitmap_table table from image for bitmap '\(name)': \(error.message)"))
                break
            }
            for e in page {
                let at = bitmap.tableOffset &+ e.index &* 8
                let es = "bitmap_table[\(bitmap.index)][\(e.index)]"
                if e.reserved != 0 {
                    add(
                        Finding(.t1, structure: es, field: "reserved", value: Hex.string(e.raw), offset: at,
                            bitmapIndex: bitmap.index, message: "reserved bits set in a table entry of bitmap '\(name)'"))
                }
                if e.kind == .invalid {
                    add(
                        Finding(.t2, structure: es, field: "all_ones", value: Hex.string(e.raw), offset: at,
                            bitmapIndex: bitmap.index, message: "entry has a data offset and the all-ones bit in bitmap '\(name)'"))
                }
                if e.dataOffset != 0 {
                    if e.dataOffset % cs != 0 {
                        add(
                            Finding(.t3, structure: es, field: "offset", value: Hex.string(e.dataOffset), offset: at,
                                bitmapIndex: bitmap.index, message: "data cluster offset is not cluster aligned in bitmap '\(name)'"))
                    } else if e.dataOffset >= fileSize {
                        add(
                            Finding(.t3, structure: es, field: "offset", value: Hex.string(e.dataOffset), offset: at,
                                bitmapIndex: bitmap.index, message: "data cluster lies past the end of the file (\(fileSize))"))
                    } else if let rc = refs.refcount(of: e.dataOffset), rc == 0 {
                        add(
                            Finding(.t5, structure: es, field: "offset", value: Hex.string(e.dataOffset), offset: at,
                                bitmapIndex: bitmap.index, message: "data cluster has refcount 0 (would be reused by a writer)"))
                    }
                }
                if e.kind == .serialized && e.reserved == 0 && e.dataOffset % cs == 0 { lastSerialized = e }
            }
            offset += UInt64(page.count)
            if page.isEmpty { break }
        }
        if reported > maxReported {
            f.append(
                Finding(notChecked: .t1, structure: s, bitmapIndex: bitmap.index,
                    message: "\(reported - maxReported) more table findings for bitmap '\(name)' not listed"))
        }
        // T5 for the table's own clusters.
        let tableBytes = total * 8
        let tableEnd = bitmap.tableOffset +? tableBytes ?? UInt64.max
        var c = bitmap.tableOffset / cs * cs
        while c < tableEnd && c < fileSize {
            if let rc = refs.refcount(of: c), rc == 0 {
                f.append(
                    Finding(.t5, structure: s, field: "bitmap_table_offset", value: Hex.string(c), offset: bitmap.entryOffset,
                        bitmapIndex: bitmap.index, message: "bitmap table cluster at \(Hex.string(c)) has refcount 0"))
                break
            }
            c += cs
        }
        if let last = lastSerialized, let tail = tailFinding(image, bitmap, last) { f.append(tail) }
        return f
    }

    /// T6: the table ends past the end of the file (that part reads as zeros), nil when it does not.
    static func pastEnd(_ image: QCOW2Image, _ bitmap: BitmapDirectoryEntry) -> Finding? {
        let total = UInt64(bitmap.tableSize)
        let fileSize = image.source.size
        guard total > 0, bitmap.tableOffset != 0, let end = bitmap.tableOffset +? total &* 8, end > fileSize else { return nil }
        return Finding(
            .t6, structure: "bitmap_table[\(bitmap.index)]", field: "bitmap_table_offset", value: Hex.string(bitmap.tableOffset),
            offset: bitmap.entryOffset, bitmapIndex: bitmap.index,
            message: "the table of bitmap '\(bitmap.name.escaped)' (\(total) entries at \(Hex.string(bitmap.tableOffset))) ends at \(end), past the end of the file (\(fileSize)): that part reads as zeros (clean), as in QEMU")
    }

    /// T4: bits past the end of the virtual disk in the last data cluster must be zero.
    static func tailFinding(_ image: QCOW2Image, _ bitmap: BitmapDirectoryEntry, _ entry: BitmapTableEntry) -> Finding? {
        guard let g = bitmap.granularity, bitmap.granularityBits <= 63 else { return nil }
        let cs = image.header.clusterSize
        let totalBits = Checked.divCeil(image.header.size, g)
        let bitsPerCluster = cs * 8
        guard let firstBit = entry.index *? bitsPerCluster else { return nil }
        // Only the cluster holding the last bit (or beyond it) can have tail bits.
        guard let endBit = firstBit +? bitsPerCluster, endBit > totalBits else { return nil }
        let validInCluster = totalBits > firstBit ? totalBits - firstBit : 0
        guard let data = image.bitmapDataCluster(entry) else { return nil }
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
        return Finding(
            .t4, structure: "bitmap_data[\(bitmap.index)][\(entry.index)]", field: "tail", value: "bit \(firstBit + bad)",
            offset: entry.dataOffset + bad / 8, bitmapIndex: bitmap.index,
            message: "bits past the end of the virtual disk are set in the last data cluster of bitmap '\(bitmap.name.escaped)'")
    }
}
