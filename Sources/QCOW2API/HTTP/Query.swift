/// Parsed query parameters with range-checked integer access that fails as a 400 ``Problem``.
struct Query {
    private var pairs: [(String, [UInt8])] = []

    /// Parses `a=1&b=2`; a malformed escape is a 400.
    init(_ raw: String) throws(Problem) {
        guard !raw.isEmpty else { return }
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = PercentEncoding.decode(kv[0], plusIsSpace: true),
                let v = PercentEncoding.decode(kv.count > 1 ? kv[1] : "", plusIsSpace: true)
            else {
                throw Problem(status: 400, slug: "invalid-query", title: "Invalid query string",
                    detail: "malformed percent-encoding in '\(part)'")
            }
            pairs.append((String(decoding: k, as: UTF8.self), v))
        }
    }

    /// The raw bytes of the first value of `name`.
    func bytes(_ name: String) -> [UInt8]? {
        pairs.first { $0.0 == name }?.1
    }

    /// The first value of `name` as text (lossy for non-UTF-8, which then fails validation anyway).
    func string(_ name: String) -> String? {
        bytes(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// An unsigned integer parameter in `range`, `default` when absent.
    func integer(_ name: String, default def: UInt64, range: ClosedRange<UInt64>) throws(Problem) -> UInt64 {
        guard let s = string(name) else { return def }
        let allowed = "an integer \(range.lowerBound)...\(range.upperBound)"
        guard !s.isEmpty, s.count <= 20, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = UInt64(s),
            range.contains(v)
        else {
            throw Problem.badParameter(name, String(s.prefix(64)), allowed: allowed)
        }
        return v
    }
}
