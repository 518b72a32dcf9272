public import QCOW2

/// What QEMU's `tests/qemu-iotests/qcow2.py` reads for `dump-header` and `dump-header-exts`, read the
/// same way, for ``DumpRenderer`` to print byte for byte.
///
/// The walk mirrors `qcow2_format.py` (the final upstream form, with `-j`): the 104-byte header struct
/// with v2 defaults, extensions from `header_length` up to `min(cluster_size, backing_file_offset)` until
/// magic 0, the bitmaps extension read as a 24-byte struct whatever its `length` says, `nb_bitmaps`
/// directory entries one after the other from `bitmap_directory_offset` (the directory size is not
/// used), each followed by its whole bitmap table. Every structure is decoded by the parser's own
/// Format-layer decoders into the parser's types (``Header``, ``HeaderExtension``,
/// ``BitmapsExtension``, ``BitmapDirectoryEntry``, ``BitmapTableEntry``).
///
/// Where qcow2.py stops with a Python exception (a read past the end of the file, a seek it cannot
/// make) the dump stops too, at ``stop``, and everything before it is still printed. A bitmap name that
/// is not ASCII (qcow2.py's UnicodeDecodeError) is shown with `\xNN` escapes and recorded in
/// ``escapedNames``; the dump goes on. Nothing is ever written.
public struct Qcow2PyDump: Sendable {
    /// The bytes; the renderers read the bitmap tables from here as they print.
    public let source: any ImageSource
    /// The header fields, decoded by ``Header/init(decodingFixedPart:)`` (v2 images get the v3 defaults).
    public let header: Header
    /// The extensions read, in file order (the last one may be incomplete when ``stop`` is set).
    public let extensions: [Qcow2PyExtension]
    /// Where qcow2.py stops on a non-ASCII bitmap name while this dump goes on, in reading order.
    public let escapedNames: [DumpStop]
    /// Where reading stopped: where qcow2.py raises (or a cap of ``DumpCaps`` was reached).
    public let stop: DumpStop?
    /// Whether ``stop`` is inside the last extension of ``extensions`` (rather than before the next one).
    public let stoppedInsideLastExtension: Bool
    /// Whether ``stop`` came after every extension was read (the seek to the backing file name), so that
    /// both documents are complete.
    public let stoppedAfterExtensions: Bool

    /// Reads the header, the extensions, the bitmap directory and the table sizes like qcow2.py.
    ///
    /// - Throws: ``DumpStop`` when the header itself cannot be read: fewer than 104 bytes (Python's
    ///   `struct.error`), a magic other than `QFI\xfb` (qcow2.py would dump any file; this one refuses),
    ///   or a read error.
    public init(source: any ImageSource) throws(DumpStop) {
        self.source = source
        let size = source.size
        guard size >= UInt64(Header.fixedPartLength) else {
            throw DumpStop(.structError, structure: "header", offset: 0,
                message: "file has \(size) bytes; qcow2.py reads a \(Header.fixedPartLength)-byte header struct")
        }
        let raw = try Qcow2PyWalk.read(source, "header", at: 0, count: UInt64(Header.fixedPartLength))
        let header = try Qcow2PyWalk.decode("header") { () throws(QCOW2Error) in try Header(decodingFixedPart: raw) }
        guard header.magic == Header.magicValue else {
            throw DumpStop(.notQcow2, structure: "header", field: "magic", offset: 0,
                message: "not a qcow2 image (magic \(Hex.string(header.magic)), expected 0x514649fb)")
        }
        self.header = header
        var walk = Qcow2PyWalk(source: source, header: header)
        walk.readExtensions()
        extensions = walk.extensions
        escapedNames = walk.escapedNames
        stoppedInsideLastExtension = walk.stoppedInsideLastExtension
        // Then qcow2.py reads the backing file name: `fd.seek(backing_file_offset)` may fail.
        let backing = header.backingFileOffset
        if walk.stop == nil, backing != 0,
            let seek = Qcow2PyWalk.seekStop(source, to: backing, structure: "header", field: "backing_file_offset", at: 8,
                after: " after reading the extensions")
        {
            stop = seek
            stoppedAfterExtensions = true
        } else {
            stop = walk.stop
            stoppedAfterExtensions = false
        }
    }

    /// Opens `path` read-only (`O_RDONLY`, `pread`, no lock) and reads it.
    ///
    /// - Throws: ``DumpStop`` when the file cannot be opened or its header cannot be read.
    public init(path: String) throws(DumpStop) {
        let source: FileImageSource
        do {
            source = try FileImageSource(path: path)
        } catch {
            throw DumpStop(.readError, structure: "file", offset: nil, message: error.message)
        }
        try self.init(source: source)
    }

    /// The stop to report in one line: the first failure qcow2.py hits. A non-ASCII bitmap name raises
    /// UnicodeDecodeError as its entry is read, before anything the walk meets later (``stop`` comes after
    /// every entry of ``escapedNames``), so the first of those if any, else ``stop``.
    public var firstStop: DumpStop? { escapedNames.first ?? stop }

    /// How many places the output differs from qcow2.py's at: ``escapedNames`` and ``stop``.
    public var stopCount: Int { escapedNames.count + (stop == nil ? 0 : 1) }

    /// Reads the readable rows of `bitmap`'s table in chunks and calls `body` for each, until it returns a stop.
    ///
    /// - Returns: the stop `body` returned, or a read error of the table; `nil` when every row was handed over.
    func forEachTableRow(_ bitmap: Qcow2PyBitmap, _ body: (BitmapTableEntry) -> DumpStop?) -> DumpStop? {
        let entry = bitmap.entry
        let width = UInt64(BitmapTableEntry.encodedLength)
        var row: UInt64 = 0
        while row < bitmap.readableRows {
            let n = min(DumpCaps.rowChunk, bitmap.readableRows - row)
            // readableRows entries fit in the file after tableOffset: no overflow.
            let at = entry.tableOffset + row * width
            let bytes: [UInt8]
            do {
                bytes = try Qcow2PyWalk.read(source, "bitmap_table[\(entry.index)]", at: at, count: n * width)
            } catch {
                return error
            }
            for e in BitmapTableEntry.decode(bytes, firstIndex: row) {
                if let stop = body(e) { return stop }
            }
            row += n
        }
        return nil
    }
}
