/// A rule of the format that the image breaks: what, where, how bad. The image is still served.
///
/// Codes `E1`-`E12`, `D1`-`D15` and `T1`-`T5` are the bitmap rules of qcow2-format.md §2.5;
/// `H*` are header rules, `X*` header extension rules, `S*` snapshot table rules (see ``Rule``).
public struct Finding: Sendable, Hashable {
    /// How much the finding matters.
    public enum Severity: String, Sendable, Hashable, CaseIterable, Comparable {
        /// QEMU refuses the image, or data in it cannot be trusted.
        case error
        /// Allowed, but suspicious or outside what QEMU writes.
        case warning
        /// A fact worth knowing (e.g. an in-use bitmap), not a defect.
        case info

        private var rank: Int {
            switch self {
            case .error: 0
            case .warning: 1
            case .info: 2
            }
        }

        /// Errors first.
        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    /// The rule code, e.g. `D5`.
    public var code: String
    /// The severity.
    public var severity: Severity
    /// The structure, e.g. `header`, `bitmaps_extension`, `bitmap_directory[2]`, `bitmap_table[2][17]`.
    public var structure: String
    /// The field, when one is to blame.
    public var field: String?
    /// The offending value as text.
    public var value: String?
    /// The file offset of the field or structure.
    public var offset: UInt64?
    /// One line of explanation.
    public var message: String
    /// The directory index of the bitmap this concerns, if any.
    public var bitmapIndex: Int?

    /// Creates a finding.
    public init(
        _ code: String, _ severity: Severity, structure: String, field: String? = nil, value: String? = nil,
        offset: UInt64? = nil, bitmapIndex: Int? = nil, message: String
    ) {
        self.code = code
        self.severity = severity
        self.structure = structure
        self.field = field
        self.value = value
        self.offset = offset
        self.bitmapIndex = bitmapIndex
        self.message = message
    }
}
