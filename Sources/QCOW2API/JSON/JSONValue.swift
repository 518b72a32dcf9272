/// A JSON document with ordered object keys and exact 64-bit integers.
///
/// Written here rather than taken from Foundation's `JSONEncoder` because the API and the
/// qcow2.py-compatible dumps need a fixed key order, every u64 printed exactly (offsets and
/// masks above 2^53), and Python's `json.dumps(indent=4)` layout byte for byte.
public enum JSONValue: Sendable, Hashable {
    /// An unsigned integer, printed exactly.
    case uint(UInt64)
    /// A signed integer, printed exactly.
    case int(Int64)
    /// A finite floating-point number (printed in Swift's shortest round-trip form).
    case double(Double)
    /// A string.
    case string(String)
    /// A boolean.
    case bool(Bool)
    /// null.
    case null
    /// An array.
    case array([JSONValue])
    /// An object, keys in insertion order.
    case object([(String, JSONValue)])

    /// Builds an object from ordered pairs.
    public static func obj(_ pairs: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(pairs.map { ($0.key, $0.value) })
    }

    /// An integer from any binary integer.
    public static func num<T: BinaryInteger>(_ v: T) -> JSONValue {
        if v < 0 { return .int(Int64(clamping: v)) }
        return .uint(UInt64(clamping: v))
    }

    /// An optional string, `null` when nil.
    public static func str(_ s: String?) -> JSONValue {
        s.map { .string($0) } ?? .null
    }

    /// Equality that respects key order.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.uint(let a), .uint(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Hashes structure and values.
    public func hash(into h: inout Hasher) {
        switch self {
        case .uint(let v): h.combine(v)
        case .int(let v): h.combine(v)
        case .string(let s): h.combine(s)
        case .double(let d): h.combine(d)
        case .bool(let b): h.combine(b)
        case .null: h.combine(0)
        case .array(let a): h.combine(a)
        case .object(let o):
            for (k, v) in o {
                h.combine(k)
                h.combine(v)
            }
        }
    }

    /// Looks up a key of an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o.first { $0.0 == key }?.1 }
        return nil
    }

    /// Adds or replaces a key of an object (no effect on other values).
    public mutating func set(_ key: String, _ value: JSONValue) {
        guard case .object(var o) = self else { return }
        if let i = o.firstIndex(where: { $0.0 == key }) {
            o[i].1 = value
        } else {
            o.append((key, value))
        }
        self = .object(o)
    }
}
