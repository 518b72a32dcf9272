/// One rule of the format that qcowscope checks: its code, severity, structure, meaning and remedy.
///
/// Every rule is declared once, in `Rules.swift`, as a static member (``Rule/d5``, ``Rule/h1``, ...)
/// and listed in ``Rule/all``; a ``Finding`` can only be made from a `Rule`, so every code an image
/// can yield is in the registry. Codes `E1`-`E12`, `D1`-`D15` and `T1`-`T5` are the bitmap rules of
/// qcow2-format.md §2.5; `H*` are header rules, `X*` header extension rules, `S*` snapshot table rules, `B*` backing file rules, `M*` cluster mapping rules, `C*` the refcount check's rules, `K*` the checkpoint (incremental-backup readiness) rules.
///
/// Two rules are equal when their codes are.
public struct Rule: Sendable, Hashable, Identifiable, CustomStringConvertible {
    /// The on-disk structure a rule is about.
    public enum Structure: String, Sendable, Hashable, CaseIterable {
        /// The image header (cluster 0, offsets 0 to `header_length`).
        case header
        /// The header extension area and its extensions (other than the bitmaps extension).
        case headerExtension = "header_extension"
        /// The bitmaps header extension and the autoclear bit that vouches for it.
        case bitmapsExtension = "bitmaps_extension"
        /// The bitmap directory and its entries.
        case bitmapDirectory = "bitmap_directory"
        /// A bitmap's table of data cluster offsets.
        case bitmapTable = "bitmap_table"
        /// A bitmap's data clusters.
        case bitmapData = "bitmap_data"
        /// The internal snapshot table.
        case snapshotTable = "snapshot_table"
        /// The backing file the header names, looked for in the images directory.
        case backingFile = "backing_file"
        /// The cluster mapping: the L1 table and the L2 tables it points at.
        case clusterTable = "cluster_table"
        /// The refcount table, the refcount blocks and what they count (the read-only check).
        case refcounts
        /// A checkpoint: the bitmaps of one name across the backing chain, as an incremental backup merges them.
        case checkpoint
    }

    /// The code, e.g. `D5`: the letter names the structure family, the number the rule.
    public let code: String
    /// The severity of the rule's findings.
    public let severity: Finding.Severity
    /// The severity of the rule's "not checked" findings, `nil` for rules that have none.
    ///
    /// A rule that may be too expensive to check fully (today only ``Rule/t1``, the whole-table
    /// check) says so with a finding of this severity instead of ``severity``, made with
    /// ``Finding/init(notChecked:structure:field:value:offset:bitmapIndex:message:)``.
    public let notCheckedSeverity: Finding.Severity?
    /// The structure the rule concerns.
    public let structure: Structure
    /// One line: what the rule requires.
    public let summary: String
    /// One line for users: what to do about an image that breaks the rule.
    public let action: String
    /// Where the rule comes from: a section of qcow2-format.md / qcow2.txt, or the QEMU function that enforces it.
    public let reference: String

    init(
        _ code: String, _ severity: Finding.Severity, notChecked: Finding.Severity? = nil, _ structure: Structure,
        summary: String, action: String, reference: String
    ) {
        self.code = code
        self.severity = severity
        self.notCheckedSeverity = notChecked
        self.structure = structure
        self.summary = summary
        self.action = action
        self.reference = reference
    }

    /// The code.
    public var id: String { code }

    /// The code.
    public var description: String { code }

    /// Every severity the rule's findings can carry: ``severity``, then ``notCheckedSeverity``.
    public var severities: [Finding.Severity] {
        if let n = notCheckedSeverity, n != severity { return [severity, n] }
        return [severity]
    }

    /// The registered rule with `code`, `nil` when there is none.
    public static func withCode(_ code: String) -> Rule? { byCode[code] }

    private static let byCode: [String: Rule] = {
        var d: [String: Rule] = [:]
        for r in all where d[r.code] == nil { d[r.code] = r }
        return d
    }()

    /// Equal codes.
    public static func == (lhs: Rule, rhs: Rule) -> Bool { lhs.code == rhs.code }

    /// Hashes the code.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
