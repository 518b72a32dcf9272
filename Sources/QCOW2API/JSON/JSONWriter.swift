/// Serializes ``JSONValue``: compact for HTTP, indented for people, or exactly like Python's `json.dumps`.
///
/// Writes UTF-8 bytes straight into one growing buffer (no intermediate `String` per value), so
/// a 4096-entry table page costs one allocation pattern, not thousands.
public struct JSONWriter: Sendable {
    /// Output layout.
    public enum Style: Sendable {
        /// No whitespace: `{"a":1}`.
        case compact
        /// Newlines and `indent` spaces, `"key": value`, `[]`/`{}` for empty containers.
        case pretty(indent: Int)
        /// `json.dumps(obj, indent=4)`: like pretty with ASCII-only `\uXXXX` escapes.
        case python
    }

    /// The layout.
    public var style: Style

    /// Creates a writer.
    public init(style: Style = .compact) {
        self.style = style
    }

    /// The serialized text.
    public func string(_ value: JSONValue) -> String {
        String(decoding: bytes(value), as: UTF8.self)
    }

    /// The serialized UTF-8 bytes.
    public func bytes(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(value, depth: 0, into: &out)
        return out
    }

    private var indent: Int? {
        switch style {
        case .compact: nil
        case .pretty(let n): n
        case .python: 4
        }
    }

    private var asciiOnly: Bool {
        if case .python = style { return true }
        return false
    }

    private func write(_ v: JSONValue, depth: Int, into out: inout [UInt8]) {
        switch v {
        case .uint(let n): JSONWriter.decimal(n, into: &out)
        case .int(let n):
            if n < 0 {
                out.append(0x2d)
                JSONWriter.decimal(n.magnitude, into: &out)
            } else {
                JSONWriter.decimal(UInt64(n), into: &out)
            }
        case .double(let d):
            let s = d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) + ".0" : String(d)) : "null"
            out += s.utf8
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .null: out += "null".utf8
        case .string(let s): JSONWriter.quote(s, asciiOnly: asciiOnly, into: &out)
        case .array(let a):
            if a.isEmpty {
                out += "[]".utf8
                return
            }
            out.append(0x5b)
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(0x2c) }
                newline(depth + 1, &out)
                write(e, depth: depth + 1, into: &out)
            }
            newline(depth, &out)
            out.append(0x5d)
        case .object(let o):
            if o.isEmpty {
                out += "{}".utf8
                return
            }
            out.append(0x7b)
            for (i, (k, e)) in o.enumerated() {
                if i > 0 { out.append(0x2c) }
                newline(depth + 1, &out)
                JSONWriter.quote(k, asciiOnly: asciiOnly, into: &out)
                out.append(0x3a)
                if indent != nil { out.append(0x20) }
                write(e, depth: depth + 1, into: &out)
            }
            newline(depth, &out)
            out.append(0x7d)
        }
    }

    private func newline(_ depth: Int, _ out: inout [UInt8]) {
        guard let indent else { return }
        out.append(0x0a)
        out.append(contentsOf: repeatElement(0x20, count: indent * depth))
    }

    /// Appends the decimal digits of `n`.
    static func decimal(_ n: UInt64, into out: inout [UInt8]) {
        if n < 10 {
            out.append(0x30 + UInt8(n))
            return
        }
        var digits: (UInt64, Int) = (n, 0)
        var tmp = [UInt8](repeating: 0, count: 20)
        while digits.0 > 0 {
            tmp[19 - digits.1] = 0x30 + UInt8(digits.0 % 10)
            digits.0 /= 10
            digits.1 += 1
        }
        out.append(contentsOf: tmp[(20 - digits.1)...])
    }

    /// Appends `s` as a JSON string literal.
    static func quote(_ s: String, asciiOnly: Bool, into out: inout [UInt8]) {
        out.append(0x22)
        // Fast path: printable ASCII without quote or backslash is copied as is; the check walks the
        // string's own bytes (a span: no iterator, no copy).
        let bytes = s.utf8.span
        var plain = true
        for i in bytes.indices {
            let b = bytes[i]
            if b < 0x20 || b >= 0x7f || b == 0x22 || b == 0x5c {
                plain = false
                break
            }
        }
        if plain {
            out.append(contentsOf: s.utf8)
            out.append(0x22)
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\"".utf8
            case "\\": out += "\\\\".utf8
            case "\n": out += "\\n".utf8
            case "\r": out += "\\r".utf8
            case "\t": out += "\\t".utf8
            case "\u{08}": out += "\\b".utf8
            case "\u{0C}": out += "\\f".utf8
            default:
                if u.value < 0x20 || (asciiOnly && u.value > 0x7e) {
                    if u.value > 0xffff {
                        let v = u.value - 0x10000
                        hex4(0xd800 + (v >> 10), &out)
                        hex4(0xdc00 + (v & 0x3ff), &out)
                    } else {
                        hex4(u.value, &out)
                    }
                } else if u.value == 0x2028 || u.value == 0x2029 {
                    hex4(u.value, &out)
                } else {
                    out += String(u).utf8
                }
            }
        }
        out.append(0x22)
    }

    /// Appends `s` as a JSON string literal to text.
    static func quote(_ s: String, asciiOnly: Bool, into out: inout String) {
        var bytes: [UInt8] = []
        quote(s, asciiOnly: asciiOnly, into: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }

    private static func hex4(_ v: UInt32, _ out: inout [UInt8]) {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        out += "\\u".utf8
        for shift in stride(from: 12, through: 0, by: -4) { out.append(digits[Int((v >> UInt32(shift)) & 0xf)]) }
    }
}
