import QCOW2

/// The text of qcow2.py's `dump-header` and `dump-header-exts`, byte for byte.
///
/// Every scalar line is `'{:<25} {}'`; the header's 18 fields and a blank line come first (for
/// `dump-header`), then each extension: `Header extension:`, magic with its name, length, then `data`
/// or the bitmaps extension's fields, directory entries and table rows, and a blank line. When the dump
/// stopped, the text ends where qcow2.py's output ends (Python prints as it goes).
struct DumpTextRenderer {
    /// What to print.
    let dump: Qcow2PyDump

    /// Renders `dump-header` (`includeHeader`) or `dump-header-exts` into `out`; the stop to report, if any.
    func render(includeHeader: Bool, out: DumpOutput) -> DumpStop? {
        var out = out
        let header = dump.header
        if includeHeader {
            for field in Qcow2PyHeaderFields.rows(header) {
                let text: String
                switch field.style {
                case .hex: text = Hex.string(field.value)
                case .bits: text = PythonFormat.bitList(field.value)
                case .decimal: text = String(field.value)
                }
                out.line(field.name, text)
            }
            out.newline()
        }
        var renderStop: DumpStop?
        let clusterSize = PythonInt.powerOfTwo(UInt64(header.clusterBits))
        for (i, e) in dump.extensions.enumerated() {
            let last = i == dump.extensions.count - 1
            out.write("Header extension:\n")
            out.line("magic", "\(Hex.string(e.record.magic)) (\(e.name))")
            out.line("length", String(e.record.length))
            if let data = e.dataString {
                out.line("data", data)
            } else if let b = e.bitmaps {
                out.line("nb_bitmaps", String(b.nbBitmaps))
                out.line("reserved32", String(b.reserved32))
                out.line("bitmap_directory_size", Hex.string(b.directorySize))
                out.line("bitmap_directory_offset", Hex.string(b.directoryOffset))
                for bitmap in e.directory {
                    let entry = bitmap.entry
                    out.newline()
                    out.line("Bitmap name", bitmap.displayName)
                    out.line("bitmap_table_offset", Hex.string(entry.tableOffset))
                    out.line("bitmap_table_size", String(entry.tableSize))
                    out.line("flags", PythonFormat.bitmapFlags(entry.flags))
                    out.line("type", String(entry.type))
                    out.line("granularity_bits", String(entry.granularityBits))
                    out.line("name_size", String(entry.nameSize))
                    out.line("extra_data_size", String(entry.extraDataSize))
                    out.write(
                        PythonFormat.pad("Bitmap table", 14) + " " + PythonFormat.pad("type", 15) + " "
                            + PythonFormat.pad("size", 12) + " offset\n")
                    renderStop = dump.forEachTableRow(bitmap) { t in
                        var size = "0"
                        if t.kind == .serialized {
                            guard let clusterSize else {
                                return DumpStop(.valueError, structure: "header", field: "cluster_bits", offset: 20,
                                    message: "cluster_bits \(header.clusterBits) is too large to print 1 << cluster_bits; qcow2.py stops here with ValueError")
                            }
                            size = clusterSize
                        }
                        var row = PythonFormat.pad(String(t.index), 14) + " "
                        row += PythonFormat.pad(t.kind.rawValue, 15) + " "
                        row += PythonFormat.pad(size, 12) + " "
                        row += String(t.dataOffset) + "\n"
                        out.write(row)
                        return nil
                    }
                    if renderStop != nil { break }
                }
            }
            // The blank line after each extension, unless the dump stopped inside this one.
            if renderStop != nil { break }
            if !(last && dump.stoppedInsideLastExtension) { out.newline() }
        }
        out.flush()
        return dump.escapedNames.first ?? renderStop ?? dump.firstStop
    }
}
