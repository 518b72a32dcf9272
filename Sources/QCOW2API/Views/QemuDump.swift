public import QCOW2

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// QEMU's `tests/qemu-iotests/qcow2.py` `dump-header` and `dump-header-exts`, byte for byte.
///
/// The reader mirrors `qcow2_format.py` (the final upstream form, with `-j`) step by step: the
/// 104-byte header struct, v2 defaults, extensions read from `header_length` up to
/// `min(cluster_size, backing_file_offset)` until magic 0, the bitmaps extension read as a
/// 24-byte struct whatever its `length` says, `nb_bitmaps` directory entries read one after the
/// other from `bitmap_directory_offset` (the directory size is not used), each entry followed by
/// its whole bitmap table. The renderers reproduce its text (`'{:<25} {}'` lines) and its JSON
/// (`json.dumps(indent=4)`, ASCII only) exactly.
///
/// Where the original stops with a Python exception (a read past the end of the file, a seek
/// beyond 2^63, a bitmap name that is not ASCII) this reader records a ``Problem`` instead: a
/// *failure* ends the dump at that point (everything before it is still rendered), while a
/// non-ASCII name is only a *problem*: the name is shown with `\xNN` escapes (Python's
/// `backslashreplace`) and the dump goes on. Nothing is ever written; only
/// ``ImageSource/read(at:count:)`` is used.
public struct QemuDump: Sendable {
    /// Where and why the dump cannot be what qcow2.py would print.
    public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        /// The structure, e.g. `header_extension[2]`, `bitmap_directory[1]`, `bitmap_table[0]`.
        public var structure: String
        /// The field, when one is to blame.
        public var field: String?
        /// File offset of the structure or field.
        public var offset: UInt64?
        /// What happened.
        public var message: String

        /// Creates a problem.
        public init(structure: String, field: String? = nil, offset: UInt64?, message: String) {
            self.structure = structure
            self.field = field
            self.offset = offset
            self.message = message
        }

        /// One line: `structure.field at offset N (0xN): message`.
        public var description: String {
            var s = structure
            if let field { s += "." + field }
            if let offset { s += " at offset \(offset) (\(Hex.string(offset)))" }
            return s + ": " + message
        }
    }

    /// The 18 header fields, in qcow2.py's order (v2 images get its defaults for the v3 fields).
    public struct HeaderFields: Sendable, Hashable {
        /// Field names as qcow2.py prints them.
        public static let names = [
            "magic", "version", "backing_file_offset", "backing_file_size", "cluster_bits", "size",
            "crypt_method", "l1_size", "l1_table_offset", "refcount_table_offset", "refcount_table_clusters",
            "nb_snapshots", "snapshot_offset", "incompatible_features", "compatible_features",
            "autoclear_features", "refcount_order", "header_length",
        ]
        /// Field widths in bytes (big-endian, packed: 104 bytes in all).
        static let widths = [4, 4, 8, 4, 4, 8, 4, 4, 8, 8, 4, 4, 8, 8, 8, 8, 4, 4]
        /// Text formats: `d` decimal, `x` Python `#x`, `f` the list of set bits (`Flags64`).
        static let formats: [Character] = [
            "x", "d", "x", "x", "d", "d", "d", "d", "x", "x", "d", "d", "x", "f", "f", "f", "d", "d",
        ]

        /// The values, indexed like ``names``.
        public var values: [UInt64]

        /// A value by name (0 for an unknown name).
        public subscript(_ name: String) -> UInt64 {
            HeaderFields.names.firstIndex(of: name).map { values[$0] } ?? 0
        }
    }

    /// One bitmap directory entry as qcow2.py reads it.
    public struct BitmapEntry: Sendable, Hashable {
        /// Position in the directory.
        public var index: Int
        /// File offset of the entry.
        public var offset: UInt64
        /// `bitmap_table_offset`.
        public var tableOffset: UInt64
        /// `bitmap_table_size`.
        public var tableSize: UInt32
        /// `flags`.
        public var flags: UInt32
        /// `type`.
        public var type: UInt8
        /// `granularity_bits`.
        public var granularityBits: UInt8
        /// `name_size`.
        public var nameSize: UInt16
        /// `extra_data_size`.
        public var extraDataSize: UInt32
        /// The name bytes that could be read (fewer than `name_size` at the end of the file, as in Python).
        public var name: [UInt8]
        /// Table rows that can be read (less than `tableSize` only for the entry where the dump fails).
        public var readableRows: UInt64

        /// The name as qcow2.py prints it: ASCII as is, other bytes as `\xNN` (Python's `backslashreplace`).
        public var displayName: String { QemuDump.backslashReplace(name) }
    }

    /// The bitmaps extension body: its four fields and the directory entries read.
    public struct Bitmaps: Sendable, Hashable {
        /// `nb_bitmaps`.
        public var nbBitmaps: UInt32
        /// `reserved32`.
        public var reserved32: UInt32
        /// `bitmap_directory_size`.
        public var directorySize: UInt64
        /// `bitmap_directory_offset`.
        public var directoryOffset: UInt64
        /// The entries read (all `nb_bitmaps` of them unless the dump failed in the directory).
        public var entries: [BitmapEntry]
    }

    /// What follows an extension's magic and length.
    public enum Body: Sendable, Hashable {
        /// Any extension but bitmaps: the data bytes read (up to `length`; fewer at the end of the file).
        case data([UInt8])
        /// The bitmaps extension; `nil` when its 24 bytes could not be read (the dump failed there).
        case bitmaps(Bitmaps?)
    }

    /// One header extension as qcow2.py reads it.
    public struct Extension: Sendable, Hashable {
        /// File offset of the magic.
        public var offset: UInt64
        /// The magic.
        public var magic: UInt32
        /// The length field.
        public var length: UInt32
        /// The body.
        public var body: Body

        /// qcow2.py's name for the magic, or `<unknown>`.
        public var name: String { QemuDump.magicName(magic) }

        /// qcow2.py's `data_str`: `'text'` when every byte is in Python's `string.printable`, else `<binary>`.
        public var dataString: String? {
            guard case .data(let d) = body else { return nil }
            guard d.allSatisfy(QemuDump.isPythonPrintable) else { return "<binary>" }
            var s = "'"
            for b in d { s.unicodeScalars.append(Unicode.Scalar(b)) }
            return s + "'"
        }
    }

    /// Caps that keep a hostile image from making the dump unbounded (qcow2.py has none).
    public enum Caps {
        /// Header extensions read at most.
        public static let extensions = 65536
        /// Bytes of extension data held at most, all extensions together.
        public static let extensionBytes: UInt64 = 64 << 20
        /// Bitmap directory entries read at most (QEMU allows 65535).
        public static let bitmaps = 65536
        /// Bitmap table rows dumped at most, all tables together (QEMU's BME_MAX_TABLE_SIZE).
        public static let tableRows: UInt64 = 0x800_0000
        /// Table entries read per `pread` while rendering.
        static let rowChunk: UInt64 = 4096
    }

    /// The bytes.
    public let source: any ImageSource
    /// The header fields.
    public let header: HeaderFields
    /// The extensions read, in file order (the last one may be incomplete when ``failure`` is set).
    public let extensions: [Extension]
    /// Problems that do not stop the dump (non-ASCII bitmap names), in reading order.
    public let problems: [Problem]
    /// Where reading stopped because qcow2.py would have raised an exception there (or a cap was hit).
    public let failure: Problem?
    /// Whether ``failure`` happened inside the last extension of ``extensions`` (rather than before the next one).
    public let failedInLastExtension: Bool
    /// Whether ``failure`` happened after every extension was read (the backing file name's seek), so that
    /// both documents are complete.
    public let failedAfterExtensions: Bool

    /// Reads the header, the extensions, the bitmap directory and the table sizes like qcow2.py.
    ///
    /// - Throws: ``Problem`` when the header itself cannot be read: fewer than 104 bytes (Python's
    ///   `struct.error`), a magic other than `QFI\xfb` (qcow2.py would dump any file; this one refuses),
    ///   or an I/O error.
    public init(source: any ImageSource) throws(Problem) {
        self.source = source
        let size = source.size
        guard size >= 104 else {
            throw Problem(structure: "header", offset: 0,
                message: "file has \(size) bytes; qcow2.py reads a 104-byte header struct")
        }
        let raw = try QemuDump.read(source, "header", at: 0, count: 104)
        var values: [UInt64] = []
        var at = 0
        for w in HeaderFields.widths {
            values.append(QemuDump.be(raw, at, w))
            at += w
        }
        guard values[0] == UInt64(Header.magicValue) else {
            throw Problem(structure: "header", field: "magic", offset: 0,
                message: "not a qcow2 image (magic \(Hex.string(values[0])), expected 0x514649fb)")
        }
        if values[1] == 2 {
            // set_defaults()
            values[13] = 0
            values[14] = 0
            values[15] = 0
            values[16] = 4
            values[17] = 72
        }
        header = HeaderFields(values: values)
        var reader = Reader(source: source, clusterBits: values[4])
        reader.readExtensions(headerLength: values[17], backingFileOffset: values[2])
        extensions = reader.extensions
        problems = reader.problems
        failedInLastExtension = reader.failedInLast
        // Then qcow2.py reads the backing file name: `fd.seek(backing_file_offset)` may fail.
        if reader.failure == nil, values[2] != 0, let why = QemuDump.seekFailure(source, values[2]) {
            failure = Problem(structure: "header", field: "backing_file_offset", offset: 8,
                message: "cannot seek to \(Hex.string(values[2])) (\(why)); qcow2.py stops here with OSError after reading the extensions")
            failedAfterExtensions = true
        } else {
            failure = reader.failure
            failedAfterExtensions = false
        }
    }

    /// Opens `path` read-only (`O_RDONLY`, `pread`, no lock) and reads it.
    ///
    /// - Throws: ``Problem`` when the file cannot be opened or its header cannot be read.
    public init(path: String) throws(Problem) {
        let source: FileImageSource
        do {
            source = try FileImageSource(path: path)
        } catch {
            throw Problem(structure: "file", offset: nil, message: error.message)
        }
        try self.init(source: source)
    }

    /// The problem to report in one line: the failure if any, else the first problem.
    public var firstProblem: Problem? { failure ?? problems.first }

    // MARK: Reading

    /// The qcow2.py reading walk, with its file position.
    private struct Reader {
        let source: any ImageSource
        let clusterBits: UInt64
        var extensions: [Extension] = []
        var problems: [Problem] = []
        var failure: Problem?
        var failedInLast = false
        var dataBytes: UInt64 = 0
        var rowsLeft = Caps.tableRows

        init(source: any ImageSource, clusterBits: UInt64) {
            self.source = source
            self.clusterBits = clusterBits
        }

        var size: UInt64 { source.size }

        /// `fd.read(n)` at `pos`: at most `n` bytes, fewer at the end of the file.
        func readUpTo(_ structure: String, at pos: UInt64, count n: UInt64) throws(Problem) -> [UInt8] {
            guard pos < size else { return [] }
            return try QemuDump.read(source, structure, at: pos, count: min(n, size - pos))
        }

        /// `struct.unpack` of `n` bytes at `pos`: fails like Python when fewer exist.
        func readExactly(_ structure: String, at pos: UInt64, count n: UInt64, what: String) throws(Problem) -> [UInt8] {
            let have = pos < size ? size - pos : 0
            guard have >= n else {
                throw Problem(structure: structure, offset: pos,
                    message: "\(what) needs \(n) bytes but the file ends at \(size) (only \(have) left); qcow2.py stops here with struct.error")
            }
            return try QemuDump.read(source, structure, at: pos, count: n)
        }

        mutating func readExtensions(headerLength: UInt64, backingFileOffset: UInt64) {
            // cluster_size = 1 << cluster_bits: a Python int, so "infinite" past 2^63.
            var end = clusterBits < 64 ? UInt64(1) << clusterBits : UInt64.max
            if backingFileOffset != 0 { end = min(end, backingFileOffset) }
            var pos = headerLength
            var inside = false
            do throws(Problem) {
                while pos < end {
                    inside = false
                    let index = extensions.count
                    let s = "header_extension[\(index)]"
                    if index >= Caps.extensions {
                        throw Problem(structure: s, offset: pos,
                            message: "more than \(Caps.extensions) header extensions; the rest is not dumped")
                    }
                    let head = try readExactly(s, at: pos, count: 8, what: "the extension's magic and length")
                    let magic = UInt32(truncatingIfNeeded: QemuDump.be(head, 0, 4))
                    let length = UInt32(truncatingIfNeeded: QemuDump.be(head, 4, 4))
                    let start = pos
                    pos += 8
                    if magic == 0 { break }
                    if magic == HeaderExtension.Kind.bitmaps.rawValue {
                        extensions.append(Extension(offset: start, magic: magic, length: length, body: .bitmaps(nil)))
                        inside = true
                        let body = try readExactly(s, at: pos, count: 24, what: "the bitmaps extension")
                        var b = Bitmaps(
                            nbBitmaps: UInt32(truncatingIfNeeded: QemuDump.be(body, 0, 4)),
                            reserved32: UInt32(truncatingIfNeeded: QemuDump.be(body, 4, 4)),
                            directorySize: QemuDump.be(body, 8, 8), directoryOffset: QemuDump.be(body, 16, 8),
                            entries: [])
                        // The length field is ignored: the next extension follows these 24 bytes.
                        pos += 24
                        defer { extensions[index].body = .bitmaps(b) }
                        try readDirectory(&b, extension: s)
                    } else {
                        let padded = (UInt64(length) + 7) & ~UInt64(7)
                        let want = min(padded, pos < size ? size - pos : 0)
                        if dataBytes + want > Caps.extensionBytes {
                            throw Problem(structure: s, field: "length", offset: start + 4,
                                message: "\(length) bytes of data: more than \(Caps.extensionBytes) bytes of extension data in all; not dumped")
                        }
                        let data = try readUpTo(s, at: pos, count: padded)
                        dataBytes += UInt64(data.count)
                        pos += UInt64(data.count)
                        extensions.append(
                            Extension(offset: start, magic: magic, length: length, body: .data(Array(data.prefix(Int(length))))))
                    }
                }
            } catch {
                failure = error
                failedInLast = inside
            }
        }

        mutating func readDirectory(_ b: inout Bitmaps, extension s: String) throws(Problem) {
            if let why = QemuDump.seekFailure(source, b.directoryOffset) {
                throw Problem(structure: s, field: "bitmap_directory_offset", offset: nil,
                    message: "cannot seek to \(Hex.string(b.directoryOffset)) (\(why)); qcow2.py stops here with OSError")
            }
            var pos = b.directoryOffset
            for i in 0..<Int(b.nbBitmaps) {
                let es = "bitmap_directory[\(i)]"
                if i >= Caps.bitmaps {
                    throw Problem(structure: es, offset: pos,
                        message: "nb_bitmaps is \(b.nbBitmaps): more than \(Caps.bitmaps) entries are not dumped")
                }
                let raw = try readExactly(es, at: pos, count: 24, what: "the directory entry")
                var e = BitmapEntry(
                    index: i, offset: pos, tableOffset: QemuDump.be(raw, 0, 8),
                    tableSize: UInt32(truncatingIfNeeded: QemuDump.be(raw, 8, 4)),
                    flags: UInt32(truncatingIfNeeded: QemuDump.be(raw, 12, 4)),
                    type: UInt8(truncatingIfNeeded: QemuDump.be(raw, 16, 1)),
                    granularityBits: UInt8(truncatingIfNeeded: QemuDump.be(raw, 17, 1)),
                    nameSize: UInt16(truncatingIfNeeded: QemuDump.be(raw, 18, 2)),
                    extraDataSize: UInt32(truncatingIfNeeded: QemuDump.be(raw, 20, 4)), name: [], readableRows: 0)
                pos += 24 + UInt64(e.extraDataSize)
                let nameAt = pos
                e.name = try readUpTo(es, at: pos, count: UInt64(e.nameSize))
                pos += UInt64(e.name.count)
                if let bad = e.name.firstIndex(where: { $0 >= 0x80 }) {
                    problems.append(
                        Problem(structure: es, field: "name", offset: nameAt + UInt64(bad),
                            message: "bitmap name is not ASCII (byte \(Hex.string(e.name[bad]))); qcow2.py stops here with UnicodeDecodeError; shown as \(e.displayName)"))
                }
                let rawSize = 24 + UInt64(e.nameSize) + UInt64(e.extraDataSize)
                pos += ((rawSize + 7) & ~UInt64(7)) - rawSize
                // The table: seek(bitmap_table_offset), then bitmap_table_size 8-byte reads.
                let ts = "bitmap_table[\(i)]"
                if let why = QemuDump.seekFailure(source, e.tableOffset) {
                    b.entries.append(e)
                    throw Problem(structure: ts, field: "bitmap_table_offset", offset: e.offset,
                        message: "cannot seek to \(Hex.string(e.tableOffset)) (\(why)); qcow2.py stops here with OSError")
                }
                let n = UInt64(e.tableSize)
                let fit = e.tableOffset < size ? (size - e.tableOffset) / 8 : 0
                e.readableRows = min(n, fit, rowsLeft)
                rowsLeft -= e.readableRows
                b.entries.append(e)
                if e.readableRows < n {
                    let at = e.tableOffset + e.readableRows * 8
                    if e.readableRows < fit {
                        throw Problem(structure: ts, offset: at,
                            message: "more than \(Caps.tableRows) bitmap table rows in all; the rest is not dumped")
                    }
                    throw Problem(structure: ts, offset: at,
                        message: "table of \(n) entries at \(Hex.string(e.tableOffset)) is truncated: entry \(e.readableRows) lies past the end of the file (\(size) bytes); qcow2.py stops here with struct.error")
                }
            }
        }
    }

    // MARK: Text

    /// The text of `dump-header` (`includeHeader`) or `dump-header-exts`, handed to `sink` in pieces.
    ///
    /// - Returns: the problem to report (``firstProblem``, or an I/O error met while reading tables), `nil` when
    ///   the output is exactly what qcow2.py prints.
    @discardableResult
    public func text(includeHeader: Bool, into sink: (String) -> Void) -> Problem? {
        withoutActuallyEscaping(sink) { renderText(includeHeader: includeHeader, sink: $0) }
    }

    private func renderText(includeHeader: Bool, sink: @escaping (String) -> Void) -> Problem? {
        var out = Output(sink: sink)
        if includeHeader {
            for (i, name) in HeaderFields.names.enumerated() {
                let v = header.values[i]
                let s: String
                switch HeaderFields.formats[i] {
                case "x": s = Hex.string(v)
                case "f": s = QemuDump.bitList(v)
                default: s = String(v)
                }
                out.line(name, s)
            }
            out.newline()
        }
        var renderError: Problem?
        let sizeText = QemuDump.clusterSizeText(header["cluster_bits"])
        for (i, e) in extensions.enumerated() {
            let last = i == extensions.count - 1
            out.write("Header extension:\n")
            out.line("magic", "\(Hex.string(e.magic)) (\(e.name))")
            out.line("length", String(e.length))
            switch e.body {
            case .data:
                out.line("data", e.dataString ?? "")
            case .bitmaps(nil):
                break
            case .bitmaps(let b?):
                out.line("nb_bitmaps", String(b.nbBitmaps))
                out.line("reserved32", String(b.reserved32))
                out.line("bitmap_directory_size", Hex.string(b.directorySize))
                out.line("bitmap_directory_offset", Hex.string(b.directoryOffset))
                for entry in b.entries {
                    out.newline()
                    out.line("Bitmap name", entry.displayName)
                    out.line("bitmap_table_offset", Hex.string(entry.tableOffset))
                    out.line("bitmap_table_size", String(entry.tableSize))
                    out.line("flags", QemuDump.flagsText(entry.flags))
                    out.line("type", String(entry.type))
                    out.line("granularity_bits", String(entry.granularityBits))
                    out.line("name_size", String(entry.nameSize))
                    out.line("extra_data_size", String(entry.extraDataSize))
                    out.write(QemuDump.pad("Bitmap table", 14) + " " + QemuDump.pad("type", 15) + " " + QemuDump.pad("size", 12) + " offset\n")
                    renderError = forEachRow(entry) { row, e in
                        var size = "0"
                        if e.kind == .serialized {
                            guard let sizeText else {
                                return Problem(structure: "header", field: "cluster_bits", offset: 20,
                                    message: "cluster_bits \(header["cluster_bits"]) is too large to print 1 << cluster_bits")
                            }
                            size = sizeText
                        }
                        var rowText = QemuDump.pad(String(row), 14) + " "
                        rowText += QemuDump.pad(e.kind.rawValue, 15) + " "
                        rowText += QemuDump.pad(size, 12) + " "
                        rowText += String(e.dataOffset) + "\n"
                        out.write(rowText)
                        return nil
                    }
                    if renderError != nil { break }
                }
            }
            // The blank line after each extension, unless the dump stopped inside this one.
            if renderError != nil { break }
            if !(last && failedInLastExtension) { out.newline() }
        }
        out.flush()
        return renderError ?? firstProblem
    }

    /// The whole text as one string, and the problem to report.
    public func text(includeHeader: Bool) -> (text: String, problem: Problem?) {
        var s = ""
        let p = text(includeHeader: includeHeader) { s += $0 }
        return (s, p)
    }

    /// Reads the readable rows of `entry`'s table in chunks and calls `body` for each.
    private func forEachRow(_ entry: BitmapEntry, _ body: (UInt64, BitmapTableEntry) -> Problem?) -> Problem? {
        var row: UInt64 = 0
        while row < entry.readableRows {
            let n = min(Caps.rowChunk, entry.readableRows - row)
            let at = entry.tableOffset + row * 8
            let bytes: [UInt8]
            do {
                bytes = try QemuDump.read(source, "bitmap_table[\(entry.index)]", at: at, count: n * 8)
            } catch {
                return error
            }
            for k in 0..<Int(n) {
                let raw = QemuDump.be(bytes, k * 8, 8)
                if let p = body(row + UInt64(k), BitmapTableEntry(index: row + UInt64(k), raw: raw, bytesPerEntry: nil, virtualSize: 0)) {
                    return p
                }
            }
            row += n
        }
        return nil
    }

    // MARK: JSON

    /// The `-j` output of `dump-header` (`includeHeader`) or `dump-header-exts`, handed to `sink` in pieces.
    ///
    /// JSON documents are printed only when complete: when reading failed inside the extensions, `dump-header -j`
    /// prints the header object only, and `dump-header-exts -j` prints nothing.
    /// - Returns: the problem to report, `nil` when the output is exactly what qcow2.py prints.
    @discardableResult
    public func json(includeHeader: Bool, into sink: (String) -> Void) -> Problem? {
        withoutActuallyEscaping(sink) { renderJSON(includeHeader: includeHeader, sink: $0) }
    }

    private func renderJSON(includeHeader: Bool, sink: @escaping (String) -> Void) -> Problem? {
        var out = Output(sink: sink)
        if includeHeader {
            out.write(JSONWriter(style: .python).string(headerJSON) + "\n")
            if failure == nil || failedAfterExtensions { out.newline() }
        }
        out.flush()
        guard failure == nil || failedAfterExtensions else { return failure }
        var w = PythonJSONStream(out: out)
        w.open("[")
        var renderError: Problem?
        for e in extensions {
            w.open("{")
            w.key("name")
            w.string(e.name)
            w.key("magic")
            w.number(UInt64(e.magic))
            w.key("length")
            w.number(UInt64(e.length))
            switch e.body {
            case .data:
                w.key("data_str")
                w.string(e.dataString ?? "")
            case .bitmaps(let b):
                guard let b else { break }
                w.key("data")
                w.open("{")
                w.key("nb_bitmaps")
                w.number(UInt64(b.nbBitmaps))
                w.key("reserved32")
                w.number(UInt64(b.reserved32))
                w.key("bitmap_directory_size")
                w.number(b.directorySize)
                w.key("bitmap_directory_offset")
                w.number(b.directoryOffset)
                w.key("bitmap_directory")
                w.open("[")
                for entry in b.entries {
                    w.open("{")
                    w.key("name")
                    w.string(entry.displayName)
                    for (k, v) in [
                        ("bitmap_table_offset", entry.tableOffset), ("bitmap_table_size", UInt64(entry.tableSize)),
                        ("flags", UInt64(entry.flags)), ("type", UInt64(entry.type)),
                        ("granularity_bits", UInt64(entry.granularityBits)), ("name_size", UInt64(entry.nameSize)),
                        ("extra_data_size", UInt64(entry.extraDataSize)),
                    ] {
                        w.key(k)
                        w.number(v)
                    }
                    w.key("bitmap_table")
                    w.open("[")
                    renderError = forEachRow(entry) { _, t in
                        w.open("{")
                        w.key("type")
                        w.string(t.kind.rawValue)
                        w.key("offset")
                        w.number(t.dataOffset)
                        w.key("reserved")
                        w.number(t.reserved)
                        w.close("}")
                        return nil
                    }
                    if renderError != nil { break }
                    w.close("]")
                    w.close("}")
                }
                if renderError != nil { break }
                w.close("]")
                w.close("}")
            }
            if renderError != nil { break }
            w.close("}")
        }
        if renderError == nil {
            w.close("]")
            w.out.write("\n")
        }
        w.out.flush()
        return renderError ?? firstProblem
    }

    /// The whole JSON output as one string, and the problem to report.
    public func json(includeHeader: Bool) -> (text: String, problem: Problem?) {
        var s = ""
        let p = json(includeHeader: includeHeader) { s += $0 }
        return (s, p)
    }

    /// The header object of `dump-header -j`.
    public var headerJSON: JSONValue {
        .object(zip(HeaderFields.names, header.values).map { ($0, JSONValue.uint($1)) })
    }

    // MARK: Helpers

    /// Buffers small writes into larger pieces for the sink.
    private struct Output {
        let sink: (String) -> Void
        var buffer = ""

        mutating func write(_ s: String) {
            buffer += s
            if buffer.utf8.count >= 1 << 16 { flush() }
        }

        mutating func line(_ name: String, _ value: String) {
            write(QemuDump.pad(name, 25) + " " + value + "\n")
        }

        mutating func newline() { write("\n") }

        mutating func flush() {
            if !buffer.isEmpty {
                sink(buffer)
                buffer = ""
            }
        }
    }

    /// Writes JSON in `json.dumps(obj, indent=4)` layout as it goes, so big tables need no tree.
    private struct PythonJSONStream {
        var out: Output
        /// One entry per open container: whether it has an element yet.
        var stack: [Bool] = []
        var afterKey = false

        init(out: Output) { self.out = out }

        private mutating func element() {
            if afterKey {
                afterKey = false
                return
            }
            guard let has = stack.last else { return }
            out.write(has ? ",\n" : "\n")
            out.write(String(repeating: " ", count: 4 * stack.count))
            stack[stack.count - 1] = true
        }

        mutating func open(_ bracket: String) {
            element()
            out.write(bracket)
            stack.append(false)
        }

        mutating func close(_ bracket: String) {
            let has = stack.removeLast()
            if has { out.write("\n" + String(repeating: " ", count: 4 * stack.count)) }
            out.write(bracket)
        }

        mutating func key(_ k: String) {
            element()
            var s = ""
            JSONWriter.quote(k, asciiOnly: true, into: &s)
            out.write(s + ": ")
            afterKey = true
        }

        mutating func string(_ v: String) {
            element()
            var s = ""
            JSONWriter.quote(v, asciiOnly: true, into: &s)
            out.write(s)
        }

        mutating func number(_ v: UInt64) {
            element()
            out.write(String(v))
        }
    }

    static func read(_ source: any ImageSource, _ structure: String, at offset: UInt64, count: UInt64) throws(Problem)
        -> [UInt8]
    {
        guard count <= UInt64(Int.max) else {
            throw Problem(structure: structure, offset: offset, message: "read of \(count) bytes is too large")
        }
        do {
            return try source.read(at: offset, count: Int(count))
        } catch {
            throw Problem(structure: structure, offset: offset, message: error.message)
        }
    }

    /// Why Python's `fd.seek(offset)` would raise: past 2^63, or refused by `lseek` on this file (offsets
    /// beyond the file system's maximum file size give EINVAL, e.g. past 16 TiB on ext4); `nil` when it succeeds.
    ///
    /// Only the descriptor's file position moves; the dump itself reads with `pread`, and nothing is written.
    static func seekFailure(_ source: any ImageSource, _ offset: UInt64) -> String? {
        guard offset <= UInt64(Int64.max) else { return "past 2^63" }
        guard let file = source as? FileImageSource else { return nil }
        if lseek(file.fd, off_t(offset), SEEK_SET) < 0 {
            return unsafe String(cString: strerror(errno))
        }
        return nil
    }

    static func be(_ b: [UInt8], _ at: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in at..<(at + width) where i < b.count { v = v << 8 | UInt64(b[i]) }
        return v
    }

    /// Python's `'{:<N}'.format(s)`: left-justified, never truncated.
    static func pad(_ s: String, _ width: Int) -> String {
        let n = s.unicodeScalars.count
        return n >= width ? s : s + String(repeating: " ", count: width - n)
    }

    /// `Flags64.__str__`: the Python list of set bit numbers, `[]`, `[0]`, `[0, 3]`.
    static func bitList(_ v: UInt64) -> String {
        "[" + FeatureGroup.bits(of: v).map(String.init).joined(separator: ", ") + "]"
    }

    /// `BitmapFlags.__str__`: `0x3 (['in-use', 'auto'])`, unknown bits as `bit-N`.
    static func flagsText(_ flags: UInt32) -> String {
        let names = FeatureGroup.bits(of: UInt64(flags)).map { bit -> String in
            switch bit {
            case 0: "'in-use'"
            case 1: "'auto'"
            default: "'bit-\(bit)'"
            }
        }
        return "\(Hex.string(flags)) ([\(names.joined(separator: ", "))])"
    }

    /// The names of `QcowHeaderExtension.Magic.mapping`.
    static func magicName(_ magic: UInt32) -> String {
        HeaderExtension.Kind(rawValue: magic)?.label ?? "<unknown>"
    }

    /// Membership in Python's `string.printable` (printable ASCII plus ` \t\n\r\x0b\x0c`).
    static func isPythonPrintable(_ b: UInt8) -> Bool {
        (b >= 0x20 && b < 0x7f) || (b >= 0x09 && b <= 0x0d)
    }

    /// `bytes.decode('ascii', 'backslashreplace')`.
    static func backslashReplace(_ bytes: [UInt8]) -> String {
        var s = ""
        for b in bytes {
            if b < 0x80 {
                s.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                s += "\\x" + Hex.bytes([b])
            }
        }
        return s
    }

    /// `str(1 << cluster_bits)` in decimal (a Python int never overflows); `nil` past 4300 digits, where
    /// Python 3.11's int-to-str limit refuses too.
    static func clusterSizeText(_ bits: UInt64) -> String? {
        if bits < 64 { return String(UInt64(1) << bits) }
        guard bits <= 14000 else { return nil }
        let n = Int(bits)
        var limbs: [UInt64] = [1]
        for _ in 0..<n {
            var carry: UInt64 = 0
            for i in limbs.indices {
                let v = limbs[i] * 2 + carry
                limbs[i] = v % 1_000_000_000
                carry = v / 1_000_000_000
            }
            if carry > 0 { limbs.append(carry) }
        }
        var s = String(limbs.last ?? 0)
        for limb in limbs.dropLast().reversed() {
            let t = String(limb)
            s += String(repeating: "0", count: 9 - t.count) + t
        }
        return s
    }
}
