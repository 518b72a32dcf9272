import QCOW2

/// A place where QEMU's qcow2.py stops with a Python exception, or where this dump stops before it does.
///
/// Reading an image the way qcow2.py does, ``Qcow2PyDump`` meets these where qcow2.py would raise
/// (``Kind-swift.enum`` names the exception) or where it must stop first (a cap on a hostile image,
/// a read error, a file that is not qcow2). ``description`` is the one line the CLI prints on stderr:
/// `structure.field at offset N (0xN): message`.
public struct DumpStop: Error, Sendable, Hashable, CustomStringConvertible {
    /// What stops there.
    public enum Kind: String, Sendable, Hashable {
        /// qcow2.py's `struct.unpack` gets fewer bytes than it needs: the file ends.
        case structError = "struct.error"
        /// qcow2.py's `fd.seek` is refused by the system (EINVAL past the file system's largest file).
        case osError = "OSError"
        /// qcow2.py decodes a bitmap name as ASCII and it is not; this dump goes on with `\xNN` escapes.
        case unicodeDecodeError = "UnicodeDecodeError"
        /// Python refuses an int: a seek past 2^63 - 1, or printing `1 << cluster_bits` in more than 4300 digits.
        case valueError = "ValueError"
        /// A cap of ``DumpCaps`` is reached: qcow2.py would go on, this dump stops.
        case cap
        /// The source could not be opened or read.
        case readError = "read_error"
        /// The file is no qcow2 image (too short, wrong magic): qcow2.py would dump it anyway; this dump refuses.
        case notQcow2 = "not_qcow2"
    }

    /// What stops there.
    public var kind: Kind
    /// The structure, e.g. `header_extension[2]`, `bitmap_directory[1]`, `bitmap_table[0]`.
    public var structure: String
    /// The field, when one is to blame.
    public var field: String?
    /// File offset of the structure or field.
    public var offset: UInt64?
    /// What happened, and what qcow2.py does there.
    public var message: String

    /// Creates a stop.
    public init(_ kind: Kind, structure: String, field: String? = nil, offset: UInt64?, message: String) {
        self.kind = kind
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
