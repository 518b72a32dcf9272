import QCOW2API

#if canImport(Glibc)
    import Glibc
#endif

/// Renders an API document as aligned text for a terminal.
///
/// Objects become `key  value` lines with the keys padded to a common width (byte counts as qemu-img
/// prints them, `64 MiB (67108864 bytes)`; magic numbers in hex); nested objects are
/// indented under `key:`; arrays of flat objects (table rows, findings) become column tables;
/// other arrays of objects become `[i]` blocks. Control characters in strings (from names in the
/// image) are escaped so that an image cannot drive the terminal.
enum TextRenderer {
    /// Widest row printed as a table; wider rows become `[i]` blocks.
    static let maxTableWidth = 160

    /// The text form of `value`, ending with a newline.
    static func render(_ value: JSONValue) -> String {
        var out = ""
        switch value {
        case .object(let pairs): object(pairs, indent: 0, into: &out)
        case .array(let items): array(items, indent: 0, into: &out)
        default: out += scalar(value) + "\n"
        }
        return out
    }

    private static func isScalar(_ v: JSONValue) -> Bool {
        switch v {
        case .array, .object: return false
        default: return true
        }
    }

    /// Printed on one line: a scalar, an array of scalars, or an empty container.
    private static func isInline(_ v: JSONValue) -> Bool {
        switch v {
        case .array(let a): return a.allSatisfy(isScalar)
        case .object(let o): return o.isEmpty
        default: return true
        }
    }

    private static func inline(_ v: JSONValue, separator: String = ", ") -> String {
        switch v {
        case .array(let a): return a.isEmpty ? "(none)" : a.map { scalar($0) }.joined(separator: separator)
        case .object: return "(none)"
        default: return scalar(v)
        }
    }

    /// Whether every item is an object whose values are all inline.
    private static func isFlatTable(_ items: [JSONValue]) -> Bool {
        items.allSatisfy { item in
            if case .object(let o) = item { return o.allSatisfy { isInline($0.1) } }
            return false
        }
    }

    private static func object(_ pairs: [(String, JSONValue)], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        let width = pairs.filter { isInline($0.1) }.map { $0.0.count }.max() ?? 0
        for (k, v) in pairs {
            if isInline(v) {
                let text = labelled(k, v) ?? inline(v)
                out += pad + k
                if !text.isEmpty { out += String(repeating: " ", count: width - k.count) + "  " + text }
                out += "\n"
                continue
            }
            out += pad + k + ":\n"
            switch v {
            case .object(let o): object(o, indent: indent + 2, into: &out)
            case .array(let a): array(a, indent: indent + 2, into: &out)
            default: break
            }
        }
    }

    private static func array(_ items: [JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        if items.isEmpty {
            out += pad + "(none)\n"
            return
        }
        if isFlatTable(items) {
            var t = ""
            table(items, indent: indent, into: &t)
            // Rows too wide for a terminal read better as blocks.
            if t.split(separator: "\n").allSatisfy({ $0.count <= maxTableWidth }) {
                out += t
                return
            }
        }
        for (i, item) in items.enumerated() {
            switch item {
            case .object(let o):
                out += pad + "[\(i)]\n"
                object(o, indent: indent + 2, into: &out)
            case .array(let a):
                out += pad + "[\(i)]\n"
                array(a, indent: indent + 2, into: &out)
            default:
                out += pad + "[\(i)]  " + scalar(item) + "\n"
            }
        }
    }

    private static func table(_ items: [JSONValue], indent: Int, into out: inout String) {
        var columns: [String] = []
        for case .object(let o) in items {
            for (k, _) in o where !columns.contains(k) { columns.append(k) }
        }
        let rows: [[String]] = items.map { item in
            columns.map { c in item[c].map { inline($0, separator: ",") } ?? "" }
        }
        var widths = columns.map(\.count)
        for r in rows {
            for (j, cell) in r.enumerated() { widths[j] = max(widths[j], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var s = String(repeating: " ", count: indent)
            for (j, cell) in cells.enumerated() {
                if j == cells.count - 1 {
                    s += cell
                } else {
                    s += cell + String(repeating: " ", count: widths[j] - cell.count + 2)
                }
            }
            while s.hasSuffix(" ") { s.removeLast() }
            return s + "\n"
        }
        out += line(columns)
        for r in rows { out += line(r) }
    }

    /// Keys whose unsigned values are byte counts, printed as qemu-img does.
    static let sizeKeys: Set<String> = [
        "virtual_size", "actual_size", "size_bytes", "size", "cluster_size", "granularity", "dirty_bytes",
        "vm_state_size", "disk_size", "length", "total_bytes", "bytes",
    ]

    /// The text of a key's value when the key says what the number means: sizes and magic numbers.
    static func labelled(_ key: String, _ v: JSONValue) -> String? {
        guard case .uint(let n) = v else { return nil }
        if key == "magic" { return "0x" + String(n, radix: 16) }
        if sizeKeys.contains(key) { return "\(humanSize(n)) (\(n) bytes)" }
        return nil
    }

    /// qemu-img's `size_to_str`: the value in the largest binary unit that keeps it under 1000, `%0.3g`.
    static func humanSize(_ value: UInt64) -> String {
        let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
        var exponent: Int32 = 0
        _ = frexp(Double(value) / (1000.0 / 1024.0), &exponent)
        let i = max(0, min(suffixes.count - 1, Int((exponent - 1) / 10)))
        let scaled = Double(value) / Double(UInt64(1) << UInt64(i * 10))
        var buffer = [CChar](repeating: 0, count: 32)
        _ = withVaList([scaled]) { args in buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, 32, "%0.3g", args) } }
        let number = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return number + " " + suffixes[i] + "B"
    }

    /// A scalar as text: strings unquoted with control characters escaped, null as `-`.
    static func scalar(_ v: JSONValue) -> String {
        switch v {
        case .uint(let n): return String(n)
        case .int(let n): return String(n)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "-"
        case .string(let s): return sanitize(s)
        case .double, .array, .object: return JSONWriter(style: .compact).string(v)
        }
    }

    /// Escapes C0 and C1 control characters, DEL and the Unicode line/paragraph separators.
    static func sanitize(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            let v = u.value
            if v < 0x20 || (v >= 0x7f && v < 0xa0) || v == 0x2028 || v == 0x2029 {
                let h = String(v, radix: 16)
                out += v < 0x100 ? "\\x" + String(repeating: "0", count: 2 - h.count) + h : "\\u{" + h + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
