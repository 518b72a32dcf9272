/// Writes JSON in Python's `json.dumps(obj, indent=4)` layout as it goes, so big tables need no tree.
///
/// Keys and strings are escaped like `json.dumps` with its default `ensure_ascii=True`: `\"`, `\\`,
/// `\n`, `\r`, `\t`, `\b`, `\f`, and every other character outside `' '...'~'` as `\uXXXX`
/// (surrogate pairs above U+FFFF).
struct PythonJSONStream {
    var out: DumpOutput
    /// One entry per open container: whether it has an element yet.
    private var stack: [Bool] = []
    private var afterKey = false

    init(out: DumpOutput) { self.out = out }

    private mutating func element() {
        if afterKey {
            afterKey = false
            return
        }
        guard let has = stack.last else { return }
        out.write(has ? ",\n" : "\n")
        out.write(String(repeating: " ", count: 4 * stack.count))
        stack[stack.count - 1] = true
    }

    /// Opens `{` or `[`.
    mutating func open(_ bracket: String) {
        element()
        out.write(bracket)
        stack.append(false)
    }

    /// Closes the innermost container with `}` or `]` (an empty one prints as `{}` / `[]`).
    mutating func close(_ bracket: String) {
        let has = stack.popLast() ?? false
        if has { out.write("\n" + String(repeating: " ", count: 4 * stack.count)) }
        out.write(bracket)
    }

    mutating func key(_ k: String) {
        element()
        out.write(PythonJSONStream.quote(k) + ": ")
        afterKey = true
    }

    mutating func string(_ v: String) {
        element()
        out.write(PythonJSONStream.quote(v))
    }

    mutating func number(_ v: UInt64) {
        element()
        out.write(String(v))
    }

    /// A key and a number.
    mutating func field(_ k: String, _ v: UInt64) {
        key(k)
        number(v)
    }

    /// A key and a string.
    mutating func field(_ k: String, _ v: String) {
        key(k)
        string(v)
    }

    /// `json.dumps(s)` with `ensure_ascii=True`.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case " "..."~": out.unicodeScalars.append(u)
            default:
                if u.value > 0xffff {
                    let v = u.value - 0x10000
                    out += hex4(0xd800 + (v >> 10)) + hex4(0xdc00 + (v & 0x3ff))
                } else {
                    out += hex4(u.value)
                }
            }
        }
        return out + "\""
    }

    private static func hex4(_ v: UInt32) -> String {
        let digits = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
