public import QCOW2

/// Every finding of one image version, sorted and indexed once, so no answer filters them all again.
///
/// Built once per file version (``ImageEntry/findingIndex``): a hostile image with hundreds of
/// thousands of findings costs one sort, after which counts, pages and per-bitmap lists are lookups.
public struct FindingIndex: Sendable {
    /// Every finding it was made from: errors first, then warnings, then info; within a severity by file
    /// offset (added findings are not in it: see ``page(_:_:)``).
    public let sorted: [Finding]
    /// Findings by severity.
    public let bySeverity: [Finding.Severity: Int]
    /// Findings by rule code, codes in ascending order.
    public let byCode: [(code: String, count: Int)]

    /// Findings added to an index (a check's problems), in the same order; kept apart so that adding a
    /// few to an index of hundreds of thousands copies none of them.
    private let extra: [Finding]
    /// For each of ``extra``, how many of ``sorted`` come before it.
    private let extraPositions: [Int]

    /// Every finding, ``sorted`` and the added ones together.
    public var total: Int { sorted.count + extra.count }

    /// `base` with `more` added (sorted into place in ``page(_:_:)``, counted at once); `base`'s
    /// findings are shared, not copied.
    public init(_ base: FindingIndex, adding more: [Finding]) {
        sorted = base.sorted
        let added = more.enumerated().sorted { a, b in
            Self.precedes(a.element, b.element) || (!Self.precedes(b.element, a.element) && a.offset < b.offset)
        }.map(\.element)
        let all = base.extra + added
        extra = all.enumerated().sorted { a, b in
            Self.precedes(a.element, b.element) || (!Self.precedes(b.element, a.element) && a.offset < b.offset)
        }.map(\.element)
        extraPositions = extra.map { e in
            // The first base finding that `e` precedes: ties keep the base first.
            var lo = 0
            var hi = base.sorted.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if Self.precedes(e, base.sorted[mid]) { hi = mid } else { lo = mid + 1 }
            }
            return lo
        }
        var sev = base.bySeverity
        var code = Dictionary(base.byCode.map { ($0.code, $0.count) }, uniquingKeysWith: +)
        for f in more {
            sev[f.severity, default: 0] += 1
            code[f.code, default: 0] += 1
        }
        bySeverity = sev
        byCode = Self.codeOrder(code)
    }

    /// Findings `start..<end` of the whole order (``sorted`` and the added ones merged).
    public func page(_ start: Int, _ end: Int) -> [Finding] {
        let end = min(end, total)
        guard start < end else { return [] }
        if extra.isEmpty { return Array(sorted[start..<end]) }
        // Added finding k sits at extraPositions[k] + k of the merged order.
        var j = 0
        while j < extra.count && extraPositions[j] + j < start { j += 1 }
        var i = start - j
        var out: [Finding] = []
        out.reserveCapacity(end - start)
        for position in start..<end {
            if j < extra.count && extraPositions[j] + j == position {
                out.append(extra[j])
                j += 1
            } else if i < sorted.count {
                out.append(sorted[i])
                i += 1
            }
        }
        return out
    }

    /// The order of the index: errors first, then warnings, then info; within a severity by file offset.
    private static func precedes(_ a: Finding, _ b: Finding) -> Bool {
        if a.severity != b.severity { return a.severity < b.severity }
        return (a.offset ?? UInt64.max) < (b.offset ?? UInt64.max)
    }

    /// Codes in ascending order, E2 before E10: letters, then the number.
    private static func codeOrder(_ code: [String: Int]) -> [(code: String, count: Int)] {
        code.sorted { a, b in
            let (ap, an) = FindingIndex.split(a.key)
            let (bp, bn) = FindingIndex.split(b.key)
            return ap != bp ? ap < bp : an != bn ? an < bn : a.key < b.key
        }.map { ($0.key, $0.value) }
    }

    /// Sorts and counts `findings`.
    public init(_ findings: [Finding]) {
        extra = []
        extraPositions = []
        // Indices are sorted, not (index, finding) pairs: 32,768 table findings of a hostile image would
        // otherwise be copied twice more at once (20 MB of a 64 MiB memory limit).
        let order = findings.indices.sorted { a, b in
            let fa = findings[a]
            let fb = findings[b]
            if fa.severity != fb.severity { return fa.severity < fb.severity }
            let ao = fa.offset ?? UInt64.max
            let bo = fb.offset ?? UInt64.max
            return ao != bo ? ao < bo : a < b
        }
        sorted = order.map { findings[$0] }
        var sev: [Finding.Severity: Int] = [:]
        var code: [String: Int] = [:]
        for f in findings {
            sev[f.severity, default: 0] += 1
            code[f.code, default: 0] += 1
        }
        bySeverity = sev
        byCode = Self.codeOrder(code)
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
