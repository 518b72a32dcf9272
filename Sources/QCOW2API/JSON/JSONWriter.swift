/// Serializes ``JSONValue``: compact for HTTP, indented for people, or exactly like Python's `json.dumps`.
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
        var out = ""
        write(value, depth: 0, into: &out)
        return out
    }

    /// The serialized UTF-8 bytes.
    public func bytes(_ value: JSONValue) -> [UInt8] {
        Array(string(value).utf8)
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

    private func write(_ v: JSONValue, depth: Int, into out: inout String) {
        switch v {
        case .uint(let n): out += String(n)
        case .int(let n): out += String(n)
        case .double(let d): out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) + ".0" : String(d)) : "null"
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .string(let s): JSONWriter.quote(s, asciiOnly: asciiOnly, into: &out)
        case .array(let a):
            if a.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, e) in a.enumerated() {
                if i > 0 { out += "," }
                newline(depth + 1, &out)
                write(e, depth: depth + 1, into: &out)
            }
            newline(depth, &out)
            out += "]"
        case .object(let o):
            if o.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (i, (k, e)) in o.enumerated() {
                if i > 0 { out += "," }
                newline(depth + 1, &out)
                JSONWriter.quote(k, asciiOnly: asciiOnly, into: &out)
                out += indent == nil ? ":" : ": "
                write(e, depth: depth + 1, into: &out)
            }
            newline(depth, &out)
            out += "}"
        }
    }

    private func newline(_ depth: Int, _ out: inout String) {
        guard let indent else { return }
        out += "\n"
        out += String(repeating: " ", count: indent * depth)
    }

    /// Appends `s` as a JSON string literal.
    static func quote(_ s: String, asciiOnly: Bool, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (asciiOnly && u.value > 0x7e) || u.value == 0x7f && asciiOnly {
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
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    private static func hex4(_ v: UInt32, _ out: inout String) {
        let s = String(v, radix: 16)
        out += "\\u" + String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}
