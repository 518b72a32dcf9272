/// Reads the bitmap directory and checks the extension (E1-E12) and entry (D1-D15) rules.
///
/// It reads at most one bounded `pread` of the directory (≤ 67,107,840 bytes, QEMU's own cap),
/// and keeps going past broken entries where the framing still allows it.
enum BitmapDirectoryParser {
    struct Result {
        var extension_: BitmapsExtension?
        var entries: [BitmapDirectoryEntry] = []
        var findings: [Finding] = []
    }

    static func parse(header h: Header, extensions: [HeaderExtension], source: any ImageSource) throws(QCOW2Error)
        -> Result
    {
        var r = Result()
        let ext = extensions.first { $0.kind == .bitmaps }
        func add(_ code: String, _ sev: Finding.Severity, _ structure: String, _ field: String?, _ value: String?,
            _ off: UInt64?, _ msg: String, bitmap: Int? = nil)
        {
            r.findings.append(
                Finding(code, sev, structure: structure, field: field, value: value, offset: off, bitmapIndex: bitmap,
                    message: msg))
        }
        guard let ext else {
            if h.bitmapsConsistentBit {
                add("E3", .error, "header", "autoclear_features", "bitmaps", 88,
                    "autoclear bit 0 (bitmaps) is set but there is no bitmaps extension; QEMU's first write will mark the image corrupt")
            }
            return r
        }
        if ext.length != 24 {
            add("E1", .error, "bitmaps_extension", "length", "\(ext.length)", ext.offset + 4, "bitmaps_ext: Invalid extension length")
        }
        guard case .bitmaps(let b) = ext.payload else { return r }
        r.extension_ = b
        let base = ext.dataOffset
        if h.version < 3 {
            add("E12", .error, "bitmaps_extension", "version", "\(h.version)", 4,
                "Cannot store dirty bitmaps in qcow2 v2 files; QEMU ignores this extension")
        } else if !h.bitmapsConsistentBit {
            add("E2", .warning, "header", "autoclear_features", Hex.string(h.autoclearFeatures), 88,
                "a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent")
        }
        if b.reserved32 != 0 {
            add("E4", .error, "bitmaps_extension", "reserved32", "\(b.reserved32)", base + 4, "bitmaps_ext: Reserved field is not zero")
        }
        if b.nbBitmaps == 0 {
            add("E5", .error, "bitmaps_extension", "nb_bitmaps", "0", base, "found bitmaps extension with zero bitmaps")
        }
        if UInt64(b.nbBitmaps) > Limits.maxBitmaps {
            add("E6", .error, "bitmaps_extension", "nb_bitmaps", "\(b.nbBitmaps)", base,
                "bitmaps_ext: Image has \(b.nbBitmaps) bitmaps, exceeding the QEMU supported maximum of 65535")
        }
        if b.directoryOffset % h.clusterSize != 0 {
            add("E7", .error, "bitmaps_extension", "bitmap_directory_offset", Hex.string(b.directoryOffset), base + 16,
                "bitmaps_ext: invalid bitmap directory offset (not cluster aligned); directory not read")
            return r
        }
        if b.directorySize > Limits.maxBitmapDirectorySize {
            add("E8", .error, "bitmaps_extension", "bitmap_directory_size", "\(b.directorySize)", base + 8,
                "bitmaps_ext: bitmap directory size (\(b.directorySize)) exceeds the maximum supported size (67107840); directory not read")
            return r
        }
        if b.directorySize == 0 {
            add("E9", .error, "bitmaps_extension", "bitmap_directory_size", "0", base + 8, "Requested bitmap directory size is zero")
            return r
        }
        // Read what exists of the directory; a directory past the end of the file is E10.
        var size = b.directorySize
        if b.directoryOffset >= source.size {
            add("E10", .error, "bitmaps_extension", "bitmap_directory_offset", Hex.string(b.directoryOffset), base + 16,
                "Broken bitmap directory: it starts past the end of the file (\(source.size) bytes)")
            return r
        }
        if let end = b.directoryOffset +? size, end > source.size {
            add("E10", .error, "bitmap_directory", "bitmap_directory_size", "\(b.directorySize)", base + 8,
                "Broken bitmap directory: it ends at \(end), past the end of the file (\(source.size) bytes); reading what exists")
            size = source.size - b.directoryOffset
        }
        let bytes = try source.read("bitmap_directory", at: b.directoryOffset, count: size)
        var reader = ByteReader(bytes, base: b.directoryOffset, structure: "bitmap_directory")
        var names: [ByteString: Int] = [:]
        var broken = false
        while reader.remaining > 0 {
            let index = r.entries.count
            if index >= Limits.maxDirectoryEntries {
                add("E11", .error, "bitmap_directory", nil, "\(index)+", reader.fileOffset,
                    "More bitmaps found than specified in header extension (parsing stopped at \(index))")
                break
            }
            let entry: BitmapDirectoryEntry
            do {
                entry = try BitmapDirectoryEntry(parsing: &reader, index: index)
            } catch {
                add("E10", .error, error.structure, error.field, error.value, error.offset,
                    "Broken bitmap directory: \(error.message)", bitmap: index)
                broken = true
                break
            }
            r.entries.append(entry)
            if index == Int(b.nbBitmaps) && b.nbBitmaps > 0 {
                add("E11", .error, "bitmap_directory[\(index)]", nil, "\(index + 1) > \(b.nbBitmaps)", entry.entryOffset,
                    "More bitmaps found than specified in header extension", bitmap: index)
            }
            r.findings += checkEntry(entry, header: h, fileSize: source.size)
            if let first = names[entry.name] {
                add("D12", .error, "bitmap_directory[\(index)]", "name", entry.name.escaped, entry.entryOffset,
                    "Bitmap already exists: \(entry.name.escaped) (same name as entry \(first))", bitmap: index)
            } else {
                names[entry.name] = index
            }
        }
        if !broken && r.entries.count < Int(b.nbBitmaps) && UInt64(b.nbBitmaps) <= Limits.maxBitmaps {
            add("E11", .error, "bitmaps_extension", "nb_bitmaps", "\(b.nbBitmaps)", base,
                "Less bitmaps found than specified in header extension (\(r.entries.count) found)")
        }
        if reader.remaining == 0, size == b.directorySize, let last = r.entries.last,
            last.entryOffset + last.entrySize != b.directoryOffset + b.directorySize
        {
            add("E10", .error, "bitmap_directory", "bitmap_directory_size", "\(b.directorySize)", base + 8,
                "Broken bitmap directory: the last entry does not end at the end of the directory")
        }
        return r
    }

    /// The directory entry rules D1-D11, D13-D15 for one entry.
    static func checkEntry(_ e: BitmapDirectoryEntry, header h: Header, fileSize: UInt64) -> [Finding] {
        var f: [Finding] = []
        let s = "bitmap_directory[\(e.index)]"
        let o = e.entryOffset
        let label = "Bitmap '\(e.name.escaped)' doesn't satisfy the constraints"
        func add(_ code: String, _ sev: Finding.Severity, _ field: String, _ value: String, _ off: UInt64, _ why: String) {
            f.append(
                Finding(code, sev, structure: s, field: field, value: value, offset: off, bitmapIndex: e.index,
                    message: "\(label): \(why)"))
        }
        let cs = h.clusterSize
        if e.extraDataSize != 0 {
            add("D1", .error, "extra_data_size", "\(e.extraDataSize)", o + 20, "Bitmap extra data is not supported")
        }
        if e.tableSize == 0 {
            add("D2", .error, "bitmap_table_size", "0", o + 8, "bitmap_table_size is zero")
        }
        if e.tableOffset == 0 {
            add("D3", .error, "bitmap_table_offset", "0", o, "bitmap_table_offset is zero")
        } else if e.tableOffset % cs != 0 {
            add("D3", .error, "bitmap_table_offset", Hex.string(e.tableOffset), o, "bitmap_table_offset is not cluster aligned")
        }
        let tooLarge = UInt64(e.tableSize) > Limits.maxBitmapTableSize
        if tooLarge {
            add("D4", .error, "bitmap_table_size", "\(e.tableSize)", o + 8, "more than 134217728 table entries")
        }
        if e.granularityBits < 9 || e.granularityBits > 31 {
            add("D5", .error, "granularity_bits", "\(e.granularityBits)", o + 17, "granularity_bits must be 9-31")
        }
        if e.flags & ~UInt32(3) != 0 {
            add("D6", .error, "flags", Hex.string(e.flags), o + 12, "unknown or unsupported flag bits \(e.flagNames.filter { $0 != "in-use" && $0 != "auto" })")
        }
        if UInt64(e.nameSize) > Limits.maxBitmapNameSize {
            add("D7", .error, "name_size", "\(e.nameSize)", o + 18, "name longer than 1023 bytes")
        }
        if e.type != 1 {
            add("D8", .error, "type", "\(e.type)", o + 16, "type must be 1 (dirty tracking bitmap)")
        }
        let phys = UInt64(e.tableSize) *? cs
        if !tooLarge && (phys == nil || phys.map({ $0 > Limits.maxBitmapPhysSize }) == true) {
            add("D9", .error, "bitmap_table_size", "\(e.tableSize)", o + 8,
                "\(e.tableSize) table entries x \(cs)-byte clusters exceed 512 MiB of bitmap data")
        }
        if e.nameSize == 0 {
            add("D13", .error, "name_size", "0", o + 18, "the name is empty")
        }
        if e.padding.contains(where: { $0 != 0 }) {
            let padOff = o + 24 + UInt64(e.extraDataSize) + UInt64(e.nameSize)
            add("D14", .warning, "padding", Hex.bytes(e.padding), padOff, "padding bytes after the name are not zero")
        }
        if e.inUse {
            f.append(
                Finding(
                    "D15", .info, structure: s, field: "flags", value: Hex.string(e.flags), offset: o + 12,
                    bitmapIndex: e.index,
                    message:
                        "bitmap '\(e.name.escaped)' is in use: a writer has it open or crashed; its table and data may be stale (size rules D10/D11 skipped)"
                ))
        } else if !f.contains(where: { $0.severity == .error }) {
            // D10/D11 only for entries that pass the other constraints, as QEMU checks them after.
            let covered = e.bytesPerTableEntry(clusterSize: cs).flatMap { UInt64(e.tableSize) *? $0 }
            if let covered, covered < h.size {
                add("D10", .error, "bitmap_table_size", "\(e.tableSize)", o + 8,
                    "table covers \(covered) guest bytes, less than the virtual size \(h.size)")
            } else if let need = e.requiredTableSize(virtualSize: h.size, clusterSize: cs), need != UInt64(e.tableSize) {
                add("D11", .error, "bitmap_table_size", "\(e.tableSize)", o + 8,
                    "Could not read bitmap '\(e.name.escaped)' from image: table size must be exactly \(need) for the virtual size")
            }
        }
        return f
    }
}
