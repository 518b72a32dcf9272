/// A rule of the format that the image breaks: which rule, where, how bad. The image is still served.
///
/// Findings are made only from a ``Rule`` of the registry (``Rule/all``): the code and the severity
/// come from the rule. Codes `E1`-`E12`, `D1`-`D15` and `T1`-`T5` are the bitmap rules of
/// qcow2-format.md §2.5; `H*` are header rules, `X*` header extension rules, `S*` snapshot table rules.
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

    /// The rule broken.
    public let rule: Rule
    /// The rule code, e.g. `D5` (``Rule/code``).
    public let code: String
    /// The severity: the rule's ``Rule/severity``, or its ``Rule/notCheckedSeverity`` for a "not checked" finding.
    public let severity: Severity
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

    /// Creates a finding of `rule`, with the rule's severity.
    public init(
        _ rule: Rule, structure: String, field: String? = nil, value: String? = nil, offset: UInt64? = nil,
        bitmapIndex: Int? = nil, message: String
    ) {
        self.init(rule, rule.severity, structure, field, value, offset, bitmapIndex, message)
    }

    /// Creates a finding that says `rule` was not (fully) checked, e.g. because of a size limit or budget.
    ///
    /// Its severity is the rule's ``Rule/notCheckedSeverity`` (`info` for a rule that declares none).
    public init(
        notChecked rule: Rule, structure: String, field: String? = nil, value: String? = nil, offset: UInt64? = nil,
        bitmapIndex: Int? = nil, message: String
    ) {
        self.init(rule, rule.notCheckedSeverity ?? .info, structure, field, value, offset, bitmapIndex, message)
    }

    private init(
        _ rule: Rule, _ severity: Severity, _ structure: String, _ field: String?, _ value: String?, _ offset: UInt64?,
        _ bitmapIndex: Int?, _ message: String
    ) {
        self.rule = rule
        self.code = rule.code
        self.severity = severity
        self.structure = structure
        self.field = field
        self.value = value
        self.offset = offset
        self.bitmapIndex = bitmapIndex
        self.message = message
    }
}
