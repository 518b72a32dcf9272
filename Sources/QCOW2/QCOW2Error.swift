/// An error that stops parsing: the structure, field, value and file offset that caused it.
///
/// A `QCOW2Error` means "cannot continue" (wrong magic, unsupported version, truncated header,
/// an I/O failure, a read past the end of the file). Anything that can be parsed but breaks a
/// rule of the format is a ``Finding`` instead.
public struct QCOW2Error: Error, Sendable, Hashable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: String, Sendable, Hashable {
        /// The file could not be opened or read (errno in ``QCOW2Error/value``).
        case io
        /// The structure runs past the end of the file.
        case truncated
        /// The first four bytes are not `QFI\xfb`.
        case badMagic = "bad_magic"
        /// The version is neither 2 nor 3.
        case unsupportedVersion = "unsupported_version"
        /// A header field makes the rest of the image unreadable.
        case invalidHeader = "invalid_header"
        /// A count or size is above the caps in ``Limits``.
        case limitExceeded = "limit_exceeded"
        /// A request asked for something outside the structure (e.g. a table page past its end).
        case outOfRange = "out_of_range"
    }

    /// The class of failure.
    public var kind: Kind
    /// The on-disk structure, e.g. `header`, `bitmap_table`.
    public var structure: String
    /// The field within the structure, when one is to blame.
    public var field: String?
    /// The offending value as text, when there is one.
    public var value: String?
    /// The file offset of the field or structure, when known.
    public var offset: UInt64?
    /// A one-line human explanation.
    public var message: String

    /// Creates an error.
    public init(
        _ kind: Kind, structure: String, field: String? = nil, value: String? = nil, offset: UInt64? = nil,
        message: String
    ) {
        self.kind = kind
        self.structure = structure
        self.field = field
        self.value = value
        self.offset = offset
        self.message = message
    }

    /// One line: where, what and why.
    public var description: String {
        var s = structure
        if let field { s += ".\(field)" }
        if let value { s += " = \(value)" }
        if let offset { s += " at offset \(offset) (\(Hex.string(offset)))" }
        return s + ": " + message
    }
}
