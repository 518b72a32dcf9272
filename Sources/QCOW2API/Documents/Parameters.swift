/// The parameters of a document request: name → raw bytes, from a query string or the CLI's options.
///
/// Typed access validates and fails as ``DocumentError/invalidParameter(name:value:allowed:)``,
/// which HTTP answers with 400 and the CLI with a usage error naming the option.
public struct Parameters: Sendable {
    private var pairs: [(name: String, value: [UInt8])] = []

    /// No parameters.
    public init() {}

    /// Parameters from names and values (the CLI's options).
    public init(_ pairs: [(name: String, value: String)]) {
        self.pairs = pairs.map { ($0.name, Array($0.value.utf8)) }
    }

    /// Parses a raw query string `a=1&b=2` (without `?`); a malformed escape is an error.
    public init(query raw: Substring) throws(DocumentError) {
        guard !raw.isEmpty else { return }
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let k = PercentEncoding.decode(kv[0], plusIsSpace: true),
                let v = PercentEncoding.decode(kv.count > 1 ? kv[1] : "", plusIsSpace: true)
            else {
                throw .invalidQuery(String(part.prefix(64)))
            }
            pairs.append((String(decoding: k, as: UTF8.self), v))
        }
    }

    /// Every name and raw value, in order.
    public var items: [(name: String, value: [UInt8])] { pairs }

    /// The parameters as a query string `a=1&b=2` (without `?`), every value percent-encoded.
    public var queryString: String {
        pairs.map { PercentEncoding.encode(Array($0.name.utf8)) + "=" + PercentEncoding.encode($0.value) }.joined(separator: "&")
    }

    /// Sets `name` (replacing every earlier value).
    public mutating func set(_ name: String, _ value: String) {
        pairs.removeAll { $0.name == name }
        pairs.append((name, Array(value.utf8)))
    }

    /// Replaces every value of each name in `next` with the values `next` gives (a `next` page's query,
    /// where a name such as `with` may repeat).
    public mutating func replace(with next: [(name: String, value: String)]) {
        let names = Set(next.map(\.name))
        pairs.removeAll { names.contains($0.name) }
        pairs += next.map { ($0.name, Array($0.value.utf8)) }
    }

    /// The raw bytes of the first value of `name`.
    public func bytes(_ name: String) -> [UInt8]? {
        pairs.first { $0.name == name }?.value
    }

    /// Every value of `name`, in order (a repeated parameter).
    public func all(_ name: String) -> [[UInt8]] {
        pairs.filter { $0.name == name }.map(\.value)
    }

    /// The first value of `name` as text (lossy for non-UTF-8, which then fails validation anyway).
    public func string(_ name: String) -> String? {
        bytes(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// An unsigned integer parameter in `range`, `default` when absent.
    public func integer(_ name: String, default def: UInt64, range: ClosedRange<UInt64>) throws(DocumentError) -> UInt64 {
        guard let s = string(name) else { return def }
        guard !s.isEmpty, s.utf8.count <= 20, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = UInt64(s),
            range.contains(v)
        else {
            throw .invalidParameter(name: name, value: String(s.prefix(64)), allowed: .range(range))
        }
        return v
    }

    /// The `limit` of a paginated route.
    public func limit(_ paging: PageLimits) throws(DocumentError) -> UInt64 {
        try integer("limit", default: paging.defaultLimit, range: paging.range)
    }
}
