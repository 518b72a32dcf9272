public import QCOW2

/// Every finding of one image version, sorted and indexed once, so no answer filters them all again.
///
/// Built once per file version (``ImageEntry/findingIndex``): a hostile image with hundreds of
/// thousands of findings costs one sort, after which counts, pages and per-bitmap lists are lookups.
public struct FindingIndex: Sendable {
    /// Every finding: errors first, then warnings, then info; within a severity by file offset.
    public let sorted: [Finding]
    /// Findings by severity.
    public let bySeverity: [Finding.Severity: Int]
    /// Findings by rule code, codes in ascending order.
    public let byCode: [(code: String, count: Int)]

    /// Sorts and counts `findings`.
    public init(_ findings: [Finding]) {
        sorted = findings.enumerated().sorted { a, b in
            if a.element.severity != b.element.severity { return a.element.severity < b.element.severity }
            let ao = a.element.offset ?? UInt64.max
            let bo = b.element.offset ?? UInt64.max
            return ao != bo ? ao < bo : a.offset < b.offset
        }.map(\.element)
        var sev: [Finding.Severity: Int] = [:]
        var code: [String: Int] = [:]
        for f in findings {
            sev[f.severity, default: 0] += 1
            code[f.code, default: 0] += 1
        }
        bySeverity = sev
        byCode = code.sorted { a, b in
            // E2 before E10: letters, then the number.
            let (ap, an) = FindingIndex.split(a.key)
            let (bp, bn) = FindingIndex.split(b.key)
            return ap != bp ? ap < bp : an != bn ? an < bn : a.key < b.key
        }.map { ($0.key, $0.value) }
    }

    /// The number of findings of `severity`.
    public func count(_ severity: Finding.Severity) -> Int { bySeverity[severity] ?? 0 }

    /// Whether any finding is an error or a warning.
    public var hasSerious: Bool { count(.error) + count(.warning) > 0 }

    private static func split(_ code: String) -> (String, Int) {
        let letters = code.prefix { !$0.isNumber }
        return (String(letters), Int(code.dropFirst(letters.count)) ?? 0)
    }
}
