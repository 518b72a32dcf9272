public import QCOW2

/// One bitmap directory entry as qcow2.py reads it, and how much of its table can be dumped.
public struct Qcow2PyBitmap: Sendable, Hashable {
    /// The entry's fields, decoded by the parser's ``BitmapDirectoryEntry/init(decodingFixedPart:at:index:)``.
    ///
    /// `name` holds the name bytes that could be read (fewer than `name_size` at the end of the file, as
    /// Python's `fd.read` gives); `extraData` and `padding` stay empty: qcow2.py seeks over them.
    public var entry: BitmapDirectoryEntry
    /// Table rows that can be read: `bitmap_table_size`, less only for the entry where the dump stops.
    public var readableRows: UInt64

    /// Creates a bitmap.
    public init(entry: BitmapDirectoryEntry, readableRows: UInt64) {
        self.entry = entry
        self.readableRows = readableRows
    }

    /// The name as qcow2.py prints it: ASCII as is, other bytes as `\xNN` (Python's `backslashreplace`).
    public var displayName: String { PythonFormat.backslashReplace(entry.name.bytes) }
}
