/// The bitmaps extension rules (E1-E12) and the directory entry rules (D1-D15), checked against
/// the decoded extension and directory of a ``QCOW2Image``.
enum BitmapDirectoryChecks {
    /// Every E and D finding of the image, in QEMU's order of checks (qcow2-format.md §2.5).
    static func check(_ image: QCOW2Image) -> [Finding] {
        var f: [Finding] = []
        let h = image.header
        let fileSize = image.source.size
        guard let ext = image.extensions.first(where: { $0.kind == .bitmaps }) else {
            if h.bitmapsConsistentBit {
                f.append(
                    Finding(.e3, structure: "header", field: "autoclear_features", value: "bitmaps", offset: 88,
                        message: "autoclear bit 0 (bitmaps) is set but there is no bitmaps extension; QEMU's first write will mark the image corrupt"))
            }
            return f
        }
        if ext.length != 24 {
            f.append(
                Finding(.e1, structure: "bitmaps_extension", field: "length", value: "\(ext.length)", offset: ext.offset + 4,
                    message: "bitmaps_ext: Invalid extension length"))
        }
        guard case .bitmaps(let b) = ext.payload else { return f }
        let base = ext.dataOffset
        if h.version < 3 {
            f.append(
                Finding(.e12, structure: "bitmaps_extension", field: "version", value: "\(h.version)", offset: 4,
                    message: "Cannot store dirty bitmaps in qcow2 v2 files; QEMU ignores this extension"))
        } else if !h.bitmapsConsistentBit {
            f.append(
                Finding(.e2, structure: "header", field: "autoclear_features", value: Hex.string(h.autoclearFeatures), offset: 88,
                    message: "a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent"))
        }
        if b.reserved32 != 0 {
            f.append(
                Finding(.e4, structure: "bitmaps_extension", field: "reserved32", value: "\(b.reserved32)", offset: base + 4,
                    message: "bitmaps_ext: Reserved field is not zero"))
        }
        if b.nbBitmaps == 0 {
            f.append(
                Finding(.e5, structure: "bitmaps_extension", field: "nb_bitmaps", value: "0", offset: base,
                    message: "found bitmaps extension with zero bitmaps"))
        }
        if UInt64(b.nbBitmaps) > Limits.maxBitmaps {
            f.append(
                Finding(.e6, structure: "bitmaps_extension", field: "nb_bitmaps", value: "\(b.nbBitmaps)", offset: base,
                    message: "bitmaps_ext: Image has \(b.nbBitmaps) bitmaps, exceeding the QEMU supported maximum of 65535"))
        }
        if b.directoryOffset % h.clusterSize != 0 {
            f.append(
                Finding(.e7, structure: "bitmaps_extension", field: "bitmap_directory_offset", value: Hex.string(b.directoryOffset),
                    offset: base + 16, message: "bitmaps_ext: invalid bitmap directory offset (not cluster aligned); directory not read"))
            return f
        }
        if b.directorySize > Limits.maxBitmapDirectorySize {
            f.append(
                Finding(.e8, structure: "bitmaps_extension", field: "bitmap_directory_size", value: "\(b.directorySize)",
                    offset: base + 8,
                    message: "bitmaps_ext: bitmap directory size (\(b.directorySize)) exceeds the maximum supported size (67107840); directory not read"))
            return f
        }
        if b.directorySize == 0 {
            f.append(
                Finding(.e9, structure: "bitmaps_extension", field: "bitmap_directory_size", value: "0", offset: base + 8,
                    message: "Requested bitmap directory size is zero"))
            return f
        }
        // What stopped or limited the directory walk.
        var truncated = false
        var stop: Finding?
        var broken = false
        var walkedToEnd = true  // every byte read was consumed by entries (or by a failed last one)
        for issue in image.decodeIssues {
            switch issue {
            case .bitmapDirectoryStartsPastEnd:
                f.append(
                    Finding(.e10, structure: "bitmaps_extension", field: "bitmap_directory_offset",
                        value: Hex.string(b.directoryOffset), offset: base + 16,
                        message: "Broken bitmap directory: it starts past the end of the file (\(fileSize) bytes)"))
                return f
            case .bitmapDirectoryPastEnd(let end, let size):
                truncated = true
                f.append(
                    Finding(.e10, structure: "bitmap_directory", field: "bitmap_directory_size", value: "\(b.directorySize)",
                        offset: base + 8,
                        message: "Broken bitmap directory: it ends at \(end), past the end of the file (\(size) bytes); reading what exists"))
            case .bitmapDirectoryEntryUndecodable(let index, let error, let left):
                broken = true
                walkedToEnd = left == 0
                stop = Finding(.e10, structure: error.structure, field: error.field, value: error.value, offset: error.offset,
                    bitmapIndex: index, message: "Broken bitmap directory: \(error.message)")
            case .tooManyBitmapDirectoryEntries(let index, let offset):
                walkedToEnd = false
                stop = Finding(.e11, structure: "bitmap_directory", value: "\(index)+", offset: offset,
                    message: "More bitmaps found than specified in header extension (parsing stopped at \(index))")
            default:
                break
            }
        }
        var names: [ByteString: Int] = [:]
        for entry in image.bitmaps {
            let index = entry.index
            if index == Int(b.nbBitmaps) && b.nbBitmaps > 0 {
                f.append(
                    Finding(.e11, structure: "bitmap_directory[\(index)]", value: "\(index + 1) > \(b.nbBitmaps)",
                        offset: entry.entryOffset, bitmapIndex: index, message: "More bitmaps found than specified in header extension"))
            }
            f += checkEntry(entry, header: h)
            if let first = names[entry.name] {
                f.append(
                    Finding(.d12, structure: "bitmap_directory[\(index)]", field: "name", value: entry.name.escaped,
                        offset: entry.entryOffset, bitmapIndex: index,
                        message: "Bitmap already exists: \(entry.name.escaped) (same name as entry \(first))"))
            } else {
                names[entry.name] = index
            }
        }
        if let stop { f.append(stop) }
        let count = image.bitmaps.count
        if !broken && count < Int(b.nbBitmaps) && UInt64(b.nbBitmaps) <= Limits.maxBitmaps {
            f.append(
                Finding(.e11, structure: "bitmaps_extension", field: "nb_bitmaps", value: "\(b.nbBitmaps)", offset: base,
                    message: "Less bitmaps found than specified in header extension (\(count) found)"))
        }
        if walkedToEnd, !truncated, let last = image.bitmaps.last,
            last.entryOffset + last.entrySize != b.directoryOffset + b.directorySize
        {
            f.append(
                Finding(.e10, structure: "bitmap_directory", field: "bitmap_directory_size", value: "\(b.directorySize)",
                    offset: base + 8, message: "Broken bitmap directory: the last entry does not end at the end of the directory"))
        }
        return f
    }

    /// The directory entry rules D1-D11 and D13-D15 for one entry (D12 needs the whole directory).
    static func checkEntry(_ e: BitmapDirectoryEntry, header h: Header) -> [Finding] {
        var f: [Finding] = []
        let s = "bitmap_directory[\(e.index)]"
        let o = e.entryOffset
        let label = "Bitmap '\(e.name.escaped)' doesn't satisfy the constraints"
        func add(_ rule: Rule, field: String, value: String, offset: UInt64, why: String) {
            f.append(
                Finding(rule, structure: s, field: field, value: value, offset: offset, bitmapIndex: e.index,
                    message: "\(label): \(why)"))
        }
        let cs = h.clusterSize
        if e.extraDataSize != 0 {
            add(.d1, field: "extra_data_size", value: "\(e.extraDataSize)", offset: o + 20, why: "Bitmap extra data is not supported")
        }
        if e.tableSize == 0 {
            add(.d2, field: "bitmap_table_size", value: "0", offset: o + 8, why: "bitmap_table_size is zero")
        }
        if e.tableOffset == 0 {
            add(.d3, field: "bitmap_table_offset", value: "0", offset: o, why: "bitmap_table_offset is zero")
        } else if e.tableOffset % cs != 0 {
            add(.d3, field: "bitmap_table_offset", value: Hex.string(e.tableOffset), offset: o,
                why: "bitmap_table_offset is not cluster aligned")
        }
        let tooLarge = UInt64(e.tableSize) > Limits.maxBitmapTableSize
        if tooLarge {
            add(.d4, field: "bitmap_table_size", value: "\(e.tableSize)", offset: o + 8, why: "more than 134217728 table entries")
        }
        if e.granularityBits < 9 || e.granularityBits > 31 {
            add(.d5, field: "granularity_bits", value: "\(e.granularityBits)", offset: o + 17, why: "granularity_bits must be 9-31")
        }
        if e.flags & ~UInt32(3) != 0 {
            add(.d6, field: "flags", value: Hex.string(e.flags), offset: o + 12,
                why: "unknown or unsupported flag bits \(e.flagNames.filter { $0 != "in-use" && $0 != "auto" })")
        }
        if UInt64(e.nameSize) > Limits.maxBitmapNameSize {
            add(.d7, field: "name_size", value: "\(e.nameSize)", offset: o + 18, why: "name longer than 1023 bytes")
        }
        if e.type != 1 {
            add(.d8, field: "type", value: "\(e.type)", offset: o + 16, why: "type must be 1 (dirty tracking bitmap)")
        }
        let phys = UInt64(e.tableSize) *? cs
        if !tooLarge && (phys == nil || phys.map({ $0 > Limits.maxBitmapPhysSize }) == true) {
            add(.d9, field: "bitmap_table_size", value: "\(e.tableSize)", offset: o + 8,
                why: "\(e.tableSize) table entries x \(cs)-byte clusters exceed 512 MiB of bitmap data")
        }
        if e.nameSize == 0 {
            add(.d13, field: "name_size", value: "0", offset: o + 18, why: "the name is empty")
        }
        if e.name.containsNUL {
            add(.d16, field: "name", value: e.name.hex, offset: o &+ 24 &+ UInt64(e.extraDataSize),
                why: "the name holds a NUL byte: QEMU shows it as '\(e.name.beforeNUL.escaped)'")
        }
        if e.padding.contains(where: { $0 != 0 }) {
            let padOff = o + 24 + UInt64(e.extraDataSize) + UInt64(e.nameSize)
            add(.d14, field: "padding", value: Hex.bytes(e.padding), offset: padOff, why: "padding bytes after the name are not zero")
        }
        if e.inUse {
            f.append(
                Finding(.d15, structure: s, field: "flags", value: Hex.string(e.flags), offset: o + 12, bitmapIndex: e.index,
                    message: "bitmap '\(e.name.escaped)' is in use: a writer has it open or crashed; its table and data may be stale (size rules D10/D11 skipped)"))
        } else if !f.contains(where: { $0.severity == .error }) {
            // D10/D11 only for entries that pass the other constraints, as QEMU checks them after.
            let covered = e.bytesPerTableEntry(clusterSize: cs).flatMap { UInt64(e.tableSize) *? $0 }
            if let covered, covered < h.size {
                add(.d10, field: "bitmap_table_size", value: "\(e.tableSize)", offset: o + 8,
                    why: "table covers \(covered) guest bytes, less than the virtual size \(h.size)")
            } else if let need = e.requiredTableSize(virtualSize: h.size, clusterSize: cs), need != UInt64(e.tableSize) {
                add(.d11, field: "bitmap_table_size", value: "\(e.tableSize)", offset: o + 8,
                    why: "Could not read bitmap '\(e.name.escaped)' from image: table size must be exactly \(need) for the virtual size")
            }
        }
        return f
    }
}
