import QCOW2

/// The `-j` output of qcow2.py's `dump-header` and `dump-header-exts`, byte for byte.
///
/// `dump-header -j` prints the header object (`json.dumps(indent=4)`), a blank line, then the array of
/// extensions; `dump-header-exts -j` prints the array only (`[]` when there are none). Python prints a
/// JSON document only once it is complete: when the dump stopped inside the extensions, `dump-header -j`
/// prints the header object only and `dump-header-exts -j` prints nothing.
struct DumpJSONRenderer {
    /// What to print.
    let dump: Qcow2PyDump

    /// Renders `dump-header -j` (`includeHeader`) or `dump-header-exts -j` into `out`; the stop to report, if any.
    func render(includeHeader: Bool, out: DumpOutput) -> DumpStop? {
        var w = PythonJSONStream(out: out)
        let complete = dump.stop == nil || dump.stoppedAfterExtensions
        if includeHeader {
            w.open("{")
            for field in Qcow2PyHeaderFields.rows(dump.header) { w.field(field.name, field.value) }
            w.close("}")
            w.out.write("\n")
            if complete { w.out.newline() }
        }
        guard complete else {
            w.out.flush()
            return dump.stop
        }
        w.open("[")
        var renderStop: DumpStop?
        for e in dump.extensions {
            w.open("{")
            w.field("name", e.name)
            w.field("magic", UInt64(e.record.magic))
            w.field("length", UInt64(e.record.length))
            if let data = e.dataString {
                w.field("data_str", data)
            } else if let b = e.bitmaps {
                w.key("data")
                w.open("{")
                w.field("nb_bitmaps", UInt64(b.nbBitmaps))
                w.field("reserved32", UInt64(b.reserved32))
                w.field("bitmap_directory_size", b.directorySize)
                w.field("bitmap_directory_offset", b.directoryOffset)
                w.key("bitmap_directory")
                w.open("[")
                for bitmap in e.directory {
                    let entry = bitmap.entry
                    w.open("{")
                    w.field("name", bitmap.displayName)
                    w.field("bitmap_table_offset", entry.tableOffset)
                    w.field("bitmap_table_size", UInt64(entry.tableSize))
                    w.field("flags", UInt64(entry.flags))
                    w.field("type", UInt64(entry.type))
                    w.field("granularity_bits", UInt64(entry.granularityBits))
                    w.field("name_size", UInt64(entry.nameSize))
                    w.field("extra_data_size", UInt64(entry.extraDataSize))
                    w.key("bitmap_table")
                    w.open("[")
                    renderStop = dump.forEachTableRow(bitmap) { t in
                        w.open("{")
                        w.field("type", t.kind.rawValue)
                        w.field("offset", t.dataOffset)
                        w.field("reserved", t.reserved)
                        w.close("}")
                        return nil
                    }
                    if renderStop != nil { break }
                    w.close("]")
                    w.close("}")
                }
                if renderStop != nil { break }
                w.close("]")
                w.close("}")
            }
            if renderStop != nil { break }
            w.close("}")
        }
        if renderStop == nil {
            w.close("]")
            w.out.write("\n")
        }
        w.out.flush()
        return dump.escapedNames.first ?? renderStop ?? dump.firstStop
    }
}
