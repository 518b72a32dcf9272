/// A parsed qcow2 image: header, header extensions and bitmap directory, read eagerly with a
/// bounded amount of I/O; bitmap tables and snapshots are read on demand.
///
/// Parsing is tolerant: only an unreadable header throws. What stops the decoding of a structure
/// is kept in ``decodeIssues`` and the rest of the image is still available; `ImageValidator`
/// checks the rules of the format against the image and turns those issues into findings.
public struct QCOW2Image: Sendable {
    /// Where the bytes come from.
    public internal(set) var source: any ImageSource
    /// The header.
    public let header: Header
    /// Header extensions in file order (without the end-of-area marker).
    public let extensions: [HeaderExtension]
    /// File offset of the end-of-area marker, when one was found.
    public let extensionsEndMarker: UInt64?
    /// The backing file name, when the header names one and it can be read.
    public let backingFile: ByteString?
    /// The bitmaps extension fields, when the image has a decodable one.
    public let bitmapsExtension: BitmapsExtension?
    /// The bitmap directory entries that could be parsed, in directory order.
    public let bitmaps: [BitmapDirectoryEntry]
    /// What stopped or limited the decoding of the extension area and the bitmap directory, in decode order.
    public let decodeIssues: [DecodeIssue]
    /// The directory index of the first bitmap of each name.
    private let firstByName: [ByteString: Int]

    /// Parses the header, the extensions, the backing file name and the bitmap directory.
    ///
    /// - Throws: ``QCOW2Error`` only when the header itself is unreadable (see ``Header/init(source:)``)
    ///   or the source fails with an I/O error.
    public init(source: any ImageSource) throws(QCOW2Error) {
        self.source = source
        let header = try Header(source: source)
        self.header = header
        let area = try ExtensionArea.parse(header: header, source: source)
        extensions = area.extensions
        extensionsEndMarker = area.endMarker

        var backing: ByteString? = nil
        if header.backingFileOffset != 0 {
            if header.backingFileOffset <= header.clusterSize,
                UInt64(header.backingFileSize) <= Limits.maxBackingFileName,
                let name = try? source.read(
                    "backing_file_name", at: header.backingFileOffset, count: UInt64(header.backingFileSize))
            {
                backing = ByteString(name)
            }
        }
        backingFile = backing

        let dir = try BitmapDirectory.read(header: header, extensions: area.extensions, source: source)
        bitmapsExtension = dir.bitmapsExtension
        bitmaps = dir.entries
        var first: [ByteString: Int] = [:]
        for (i, b) in dir.entries.enumerated() where first[b.name] == nil { first[b.name] = i }
        firstByName = first
        decodeIssues = area.issues + dir.issues
    }

    /// Opens and parses the file at `path` (read-only, `pread`, no lock).
    ///
    /// - Throws: ``QCOW2Error`` when the file cannot be opened or its header is unreadable.
    public init(path: String) throws(QCOW2Error) {
        try self.init(source: try FileImageSource(path: path))
    }

    /// The value of the backing format extension, if present.
    public var backingFormat: ByteString? {
        for e in extensions where e.kind == .backingFormat {
            if case .string(let s) = e.payload { return s }
        }
        return nil
    }

    /// The external data file name, if present.
    public var dataFile: ByteString? {
        for e in extensions where e.kind == .dataFile {
            if case .string(let s) = e.payload { return s }
        }
        return nil
    }

    /// The feature name table entries, if the image has the extension.
    public var featureNameTable: [FeatureNameEntry]? {
        for e in extensions where e.kind == .featureNameTable {
            if case .featureNames(let n) = e.payload { return n }
        }
        return nil
    }

    /// Names of the set bits of `group`: the spec's names, else the image's table, else `bit N`.
    public func featureNames(_ group: FeatureGroup) -> [String] {
        let mask: UInt64
        switch group {
        case .incompatible: mask = header.incompatibleFeatures
        case .compatible: mask = header.compatibleFeatures
        case .autoclear: mask = header.autoclearFeatures
        }
        let table = featureNameTable ?? []
        return FeatureGroup.bits(of: mask).map { bit in
            if let n = group.knownNames[bit] { return n }
            if let e = table.first(where: { $0.type == group.rawValue && Int($0.bit) == bit }) {
                return e.name.escaped
            }
            return "bit \(bit)"
        }
    }

    /// Whether the bitmap's data can be trusted: not in use, and the autoclear bitmaps bit is set (v3).
    public func isConsistent(_ bitmap: BitmapDirectoryEntry) -> Bool {
        inconsistencyReason(bitmap) == nil
    }

    /// Why the bitmap's data cannot be trusted, `nil` when it can.
    ///
    /// `writerPresent` is what a lock probe said about a writer (QEMU's lock byte 101) at the time of the
    /// answer: an in-use bitmap with a writer present is open, not damaged; without one, the program that
    /// had it open crashed or was killed; `nil` when unknown (the CLI without a probe, a failed probe).
    public func inconsistencyReason(_ bitmap: BitmapDirectoryEntry, writerPresent: Bool? = nil) -> String? {
        if bitmap.inUse {
            switch writerPresent {
            case true?:
                return "in-use: a writer has the image open (it holds QEMU's write lock) and keeps this bitmap in memory; "
                    + "it is saved when the writer closes the image"
            case false?:
                return "in-use: the bitmap was not saved cleanly and no writer holds the image: the program that had it "
                    + "open crashed or was killed"
            case nil:
                return "in-use: the bitmap was not saved cleanly (a writer has the image open, or it crashed or was killed)"
            }
        }
        if header.version < 3 { return "version 2 images cannot carry persistent bitmaps" }
        if !header.bitmapsConsistentBit {
            return "autoclear bit 0 is clear: a program without bitmap support modified the image"
        }
        return nil
    }

    /// Finds a bitmap by its exact name bytes (the first of that name, as QEMU's lookup does).
    public func bitmap(named name: ByteString) -> BitmapDirectoryEntry? {
        guard let i = firstByName[name], i < bitmaps.count else { return nil }
        return bitmaps[i]
    }

    /// The prefix of a bitmap address that names a directory index: `@index:N`.
    public static let indexAddressPrefix = "@index:"

    /// Finds a bitmap by its address: `@index:N` for directory entry N, else its exact name.
    ///
    /// Every entry has an address (``address(of:)``), including one whose name is empty or repeats an
    /// earlier entry's name, which no name can reach.
    public func bitmap(address: ByteString) -> BitmapDirectoryEntry? {
        let prefix = Array(Self.indexAddressPrefix.utf8)
        guard address.bytes.starts(with: prefix) else { return bitmap(named: address) }
        // `@index:N` is always an index: a bitmap named so has the address of its own index.
        let digits = address.bytes.dropFirst(prefix.count)
        guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let i = Int(String(decoding: digits, as: UTF8.self)), i < bitmaps.count
        else { return nil }
        return bitmaps[i]
    }

    /// The address of `bitmap` in paths: its name when the name reaches it (not empty, the first of its
    /// name, not itself of the form `@index:N`), else `@index:N`.
    public func address(of bitmap: BitmapDirectoryEntry) -> ByteString {
        let byName = !bitmap.name.bytes.isEmpty && firstByName[bitmap.name] == bitmap.index
            && !bitmap.name.bytes.starts(with: Array(Self.indexAddressPrefix.utf8))
        return byName ? bitmap.name : ByteString(Array("\(Self.indexAddressPrefix)\(bitmap.index)".utf8))
    }
}
