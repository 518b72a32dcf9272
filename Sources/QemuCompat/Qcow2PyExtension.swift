public import QCOW2

/// One header extension as qcow2.py reads it.
public struct Qcow2PyExtension: Sendable, Hashable {
    /// Magic, length, offset and data, as the parser's structure.
    ///
    /// `data` holds the bytes qcow2.py reads, up to `length` (fewer at the end of the file); it is empty
    /// for the bitmaps extension, which qcow2.py reads as a 24-byte struct instead (``bitmaps``).
    public var record: HeaderExtension
    /// The bitmaps extension's four fields; `nil` for other extensions, and when the 24 bytes could not
    /// be read (the dump stopped there).
    public var bitmaps: BitmapsExtension?
    /// The bitmap directory entries read from `bitmap_directory_offset`: all `nb_bitmaps` of them unless
    /// the dump stopped in the directory.
    public var directory: [Qcow2PyBitmap]

    /// Creates an extension.
    public init(record: HeaderExtension, bitmaps: BitmapsExtension? = nil, directory: [Qcow2PyBitmap] = []) {
        self.record = record
        self.bitmaps = bitmaps
        self.directory = directory
    }

    /// Whether qcow2.py reads this one as the bitmaps extension (by its magic).
    public var isBitmaps: Bool { record.kind == .bitmaps }

    /// qcow2.py's name for the magic (`QcowHeaderExtension.Magic.mapping`), or `<unknown>`.
    public var name: String { record.label }

    /// qcow2.py's `data_str`: `'text'` when every byte is in Python's `string.printable`, else `<binary>`;
    /// `nil` for the bitmaps extension.
    public var dataString: String? {
        isBitmaps ? nil : PythonFormat.dataString(record.data)
    }
}
