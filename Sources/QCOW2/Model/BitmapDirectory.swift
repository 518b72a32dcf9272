/// The bitmap directory as decoded: the bitmaps extension, the entries that could be decoded, and
/// the problems that stopped or limited decoding.
///
/// It reads at most one bounded `pread` of the directory (≤ 67,107,840 bytes, QEMU's own cap), and
/// keeps going past nothing it cannot frame: the first undecodable entry ends the walk.
struct BitmapDirectory {
    var bitmapsExtension: BitmapsExtension?
    var entries: [BitmapDirectoryEntry] = []
    var issues: [DecodeIssue] = []

    /// Whether the directory the extension describes is read at all: cluster aligned, not empty,
    /// and not larger than QEMU's maximum (otherwise rules E7, E9 or E8 say why not).
    static func isReadable(_ b: BitmapsExtension, clusterSize: UInt64) -> Bool {
        b.directoryOffset % clusterSize == 0 && b.directorySize <= Limits.maxBitmapDirectorySize && b.directorySize != 0
    }

    /// Decodes the directory the first bitmaps extension points at.
    ///
    /// - Throws: ``QCOW2Error`` only when the source fails with an I/O error.
    static func read(header h: Header, extensions: [HeaderExtension], source: any ImageSource) throws(QCOW2Error)
        -> BitmapDirectory
    {
        var r = BitmapDirectory()
        guard let ext = extensions.first(where: { $0.kind == .bitmaps }), case .bitmaps(let b) = ext.payload else {
            return r
        }
        r.bitmapsExtension = b
        guard isReadable(b, clusterSize: h.clusterSize) else { return r }
        // Read what exists of the directory.
        var size = b.directorySize
        if b.directoryOffset >= source.size {
            r.issues.append(.bitmapDirectoryStartsPastEnd(directoryOffset: b.directoryOffset, fileSize: source.size))
            return r
        }
        if let end = b.directoryOffset +? size, end > source.size {
            r.issues.append(.bitmapDirectoryPastEnd(end: end, fileSize: source.size))
            size = source.size - b.directoryOffset
        }
        let bytes = try source.read("bitmap_directory", at: b.directoryOffset, count: size)
        var reader = ByteReader(bytes, base: b.directoryOffset, structure: "bitmap_directory")
        while reader.remaining > 0 {
            let index = r.entries.count
            if index >= Limits.maxDirectoryEntries {
                r.issues.append(.tooManyBitmapDirectoryEntries(index: index, offset: reader.fileOffset))
                break
            }
            do {
                r.entries.append(try BitmapDirectoryEntry(parsing: &reader, index: index))
            } catch {
                r.issues.append(.bitmapDirectoryEntryUndecodable(index: index, error: error, bytesLeft: reader.remaining))
                break
            }
        }
        return r
    }
}
