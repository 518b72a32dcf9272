import QCOW2

/// qcow2.py's walk through the file: where it seeks and how much it reads, step by step.
///
/// The positions follow `qcow2_format.py` (the final upstream form); every structure is decoded by the
/// parser's Format-layer decoders, never here. Where Python would raise, the walk records a ``DumpStop``
/// and ends; a non-ASCII bitmap name is recorded and the walk goes on.
struct Qcow2PyWalk {
    let source: any ImageSource
    let header: Header
    var extensions: [Qcow2PyExtension] = []
    var escapedNames: [DumpStop] = []
    var stop: DumpStop?
    var stoppedInsideLastExtension = false
    private var dataBytes: UInt64 = 0
    private var nameBytes: UInt64 = 0
    private var rowsLeft = DumpCaps.tableRows

    init(source: any ImageSource, header: Header) {
        self.source = source
        self.header = header
    }

    private var size: UInt64 { source.size }

    /// `fd.read(n)` at `pos`: at most `n` bytes, fewer at the end of the file.
    private func readUpTo(_ structure: String, at pos: UInt64, count n: UInt64) throws(DumpStop) -> [UInt8] {
        guard pos < size else { return [] }
        return try Qcow2PyWalk.read(source, structure, at: pos, count: min(n, size - pos))
    }

    /// `struct.unpack` of `n` bytes at `pos`: stops like Python when fewer exist.
    private func readExactly(_ structure: String, at pos: UInt64, count n: Int, what: String) throws(DumpStop) -> [UInt8] {
        let have = pos < size ? size - pos : 0
        guard have >= UInt64(n) else {
            throw DumpStop(.structError, structure: structure, offset: pos,
                message: "\(what) needs \(n) bytes but the file ends at \(size) (only \(have) left); qcow2.py stops here with struct.error")
        }
        return try Qcow2PyWalk.read(source, structure, at: pos, count: UInt64(n))
    }

    /// `QcowHeader.read_extensions`: from header_length up to `min(cluster_size, backing_file_offset)`
    /// until magic 0.
    mutating func readExtensions() {
        // cluster_size = 1 << cluster_bits: a Python int, so "infinite" past 2^63.
        var end = header.clusterBits < 64 ? UInt64(1) << UInt64(header.clusterBits) : UInt64.max
        if header.backingFileOffset != 0 { end = min(end, header.backingFileOffset) }
        // Every step below moves `pos` only over bytes that were read, so it stays within the file
        // (or at header_length + 8 <= 2^32 + 7): no addition can overflow.
        var pos = UInt64(header.headerLength)
        var inside = false
        do throws(DumpStop) {
            while pos < end {
                inside = false
                let index = extensions.count
                let s = "header_extension[\(index)]"
                if index >= DumpCaps.extensions {
                    throw DumpStop(.cap, structure: s, offset: pos,
                        message: "more than \(DumpCaps.extensions) header extensions; the rest is not dumped")
                }
                let framingBytes = try readExactly(s, at: pos, count: HeaderExtension.framingLength,
                    what: "the extension's magic and length")
                let framing = try Qcow2PyWalk.decode(s) { () throws(QCOW2Error) in
                    try HeaderExtension.decodeFraming(framingBytes, at: pos)
                }
                let start = pos
                pos += UInt64(HeaderExtension.framingLength)
                if framing.magic == 0 { break }
                if framing.magic == HeaderExtension.Kind.bitmaps.rawValue {
                    let record = HeaderExtension(magic: framing.magic, length: framing.length, offset: start, data: [])
                    extensions.append(Qcow2PyExtension(record: record))
                    inside = true
                    let body = try readExactly(s, at: pos, count: BitmapsExtension.encodedLength, what: "the bitmaps extension")
                    let fields = try Qcow2PyWalk.decode(s) { () throws(QCOW2Error) in
                        try BitmapsExtension(decoding: body, at: pos)
                    }
                    extensions[index].bitmaps = fields
                    // The length field is ignored: the next extension follows these 24 bytes.
                    pos += UInt64(BitmapsExtension.encodedLength)
                    try readDirectory(fields, into: index, extension: s)
                } else {
                    let padded = (UInt64(framing.length) + 7) & ~UInt64(7)
                    let want = min(padded, pos < size ? size - pos : 0)
                    if dataBytes + want > DumpCaps.extensionBytes {
                        throw DumpStop(.cap, structure: s, field: "length", offset: start + 4,
                            message: "\(framing.length) bytes of data: more than \(DumpCaps.extensionBytes) bytes of extension data in all; not dumped")
                    }
                    let data = try readUpTo(s, at: pos, count: padded)
                    dataBytes += UInt64(data.count)
                    pos += UInt64(data.count)
                    let record = HeaderExtension(
                        magic: framing.magic, length: framing.length, offset: start,
                        data: Array(data.prefix(Int(framing.length))))
                    extensions.append(Qcow2PyExtension(record: record))
                }
            }
        } catch {
            stop = error
            stoppedInsideLastExtension = inside
        }
    }

    /// `Qcow2BitmapExt.read_bitmap_directory`: `nb_bitmaps` entries one after the other from the directory
    /// offset (its size is not used), each followed by its whole table.
    private mutating func readDirectory(_ b: BitmapsExtension, into ext: Int, extension s: String) throws(DumpStop) {
        if let stop = Qcow2PyWalk.seekStop(source, to: b.directoryOffset, structure: s, field: "bitmap_directory_offset", at: nil) {
            throw stop
        }
        // `pos` moves over the 24 bytes read, at most 2^32 - 1 of extra data and the name bytes read
        // (within the file), so it stays below 2^63 + 2^33: no addition can overflow.
        var pos = b.directoryOffset
        for i in 0..<Int(b.nbBitmaps) {
            let es = "bitmap_directory[\(i)]"
            if i >= DumpCaps.bitmaps {
                throw DumpStop(.cap, structure: es, offset: pos,
                    message: "nb_bitmaps is \(b.nbBitmaps): more than \(DumpCaps.bitmaps) entries are not dumped")
            }
            let raw = try readExactly(es, at: pos, count: BitmapDirectoryEntry.fixedPartLength, what: "the directory entry")
            var e = try Qcow2PyWalk.decode(es) { () throws(QCOW2Error) in
                try BitmapDirectoryEntry(decodingFixedPart: raw, at: pos, index: i)
            }
            // fd.seek(extra_data_size, 1), then fd.read(name_size) wherever that lands.
            pos += UInt64(BitmapDirectoryEntry.fixedPartLength) + UInt64(e.extraDataSize)
            let nameAt = pos
            let want = min(UInt64(e.nameSize), pos < size ? size - pos : 0)
            if nameBytes + want > DumpCaps.nameBytes {
                throw DumpStop(.cap, structure: es, field: "name_size", offset: e.entryOffset + 18,
                    message: "more than \(DumpCaps.nameBytes) bytes of bitmap names in all; the rest is not dumped")
            }
            let name = try readUpTo(es, at: pos, count: UInt64(e.nameSize))
            nameBytes += UInt64(name.count)
            e.name = ByteString(name)
            pos += UInt64(name.count)
            let bitmap = Qcow2PyBitmap(entry: e, readableRows: 0)
            if let bad = name.firstIndex(where: { $0 >= 0x80 }) {
                escapedNames.append(
                    DumpStop(.unicodeDecodeError, structure: es, field: "name", offset: nameAt + UInt64(bad),
                        message: "bitmap name is not ASCII (byte \(Hex.string(name[bad]))); qcow2.py stops here with UnicodeDecodeError; shown as \(bitmap.displayName)"))
            }
            // fd.seek(padding, 1): padding of the entry's raw size (what the fields say, not what was read).
            let rawSize = UInt64(BitmapDirectoryEntry.fixedPartLength) + UInt64(e.nameSize) + UInt64(e.extraDataSize)
            pos += e.entrySize - rawSize
            try readTable(bitmap, into: ext)
        }
    }

    /// `Qcow2BitmapTable`: `seek(bitmap_table_offset)`, then `bitmap_table_size` 8-byte entries. Only
    /// how many rows can be read is found here; the renderers read them as they print.
    private mutating func readTable(_ bitmap: Qcow2PyBitmap, into ext: Int) throws(DumpStop) {
        var bitmap = bitmap
        let e = bitmap.entry
        let ts = "bitmap_table[\(e.index)]"
        if let stop = Qcow2PyWalk.seekStop(source, to: e.tableOffset, structure: ts, field: "bitmap_table_offset", at: e.entryOffset) {
            extensions[ext].directory.append(bitmap)
            throw stop
        }
        let n = UInt64(e.tableSize)
        let entryBytes = UInt64(BitmapTableEntry.encodedLength)
        let fit = e.tableOffset < size ? (size - e.tableOffset) / entryBytes : 0
        bitmap.readableRows = min(n, fit, rowsLeft)
        rowsLeft -= bitmap.readableRows
        extensions[ext].directory.append(bitmap)
        guard bitmap.readableRows < n else { return }
        // readableRows <= fit, so this offset lies within the file.
        let at = e.tableOffset + bitmap.readableRows * entryBytes
        if bitmap.readableRows < fit {
            throw DumpStop(.cap, structure: ts, offset: at,
                message: "more than \(DumpCaps.tableRows) bitmap table rows in all; the rest is not dumped")
        }
        throw DumpStop(.structError, structure: ts, offset: at,
            message: "table of \(n) entries at \(Hex.string(e.tableOffset)) is truncated: entry \(bitmap.readableRows) lies past the end of the file (\(size) bytes); qcow2.py stops here with struct.error")
    }

    /// `count` bytes at `offset`, a read error becoming a stop at `structure`.
    static func read(_ source: any ImageSource, _ structure: String, at offset: UInt64, count: UInt64) throws(DumpStop)
        -> [UInt8]
    {
        guard count <= UInt64(Int.max) else {
            throw DumpStop(.readError, structure: structure, offset: offset, message: "read of \(count) bytes is too large")
        }
        do {
            return try source.read(at: offset, count: Int(count))
        } catch {
            throw DumpStop(.readError, structure: structure, offset: offset, message: error.message)
        }
    }

    /// A Format-layer decode of bytes already read in full; its error (which cannot happen) becomes a stop.
    static func decode<T>(_ structure: String, _ body: () throws(QCOW2Error) -> T) throws(DumpStop) -> T {
        do {
            return try body()
        } catch {
            throw DumpStop(.readError, structure: structure, field: error.field, offset: error.offset, message: error.message)
        }
    }

    /// Where Python's `fd.seek(target)` raises: ValueError past 2^63 - 1 (no `off_t` holds it), OSError when the
    /// source refuses the position (``ImageSource/seekFailure(at:)``, e.g. EINVAL past 16 TiB on ext4);
    /// `nil` when the seek succeeds. `after` ends the message.
    static func seekStop(
        _ source: any ImageSource, to target: UInt64, structure: String, field: String, at offset: UInt64?,
        after: String = ""
    ) -> DumpStop? {
        let place = "cannot seek to \(Hex.string(target))"
        guard target <= UInt64(Int64.max) else {
            return DumpStop(.valueError, structure: structure, field: field, offset: offset,
                message: "\(place) (past 2^63 - 1); qcow2.py stops here with ValueError\(after)")
        }
        guard let why = source.seekFailure(at: target) else { return nil }
        return DumpStop(.osError, structure: structure, field: field, offset: offset,
            message: "\(place) (\(why)); qcow2.py stops here with OSError\(after)")
    }
}
