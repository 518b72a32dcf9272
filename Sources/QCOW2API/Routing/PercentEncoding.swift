/// Percent-decoding of path segments and query components, and encoding for links.
public enum PercentEncoding {
    /// Decodes `%XX` escapes once into raw bytes; `nil` for a malformed escape.
    ///
    /// - Parameter plusIsSpace: treat `+` as a space (query components, as in HTML forms).
    public static func decode(_ s: Substring, plusIsSpace: Bool = false) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let c = it.next() {
            if c == 0x25 {
                guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else { return nil }
                out.append(hv << 4 | lv)
            } else if c == 0x2b && plusIsSpace {
                out.append(0x20)
            } else {
                out.append(c)
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// Encodes bytes for a path segment or query value: unreserved characters stay, all else is `%XX`.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out = ""
        for b in bytes {
            switch b {
            case 0x30...0x39, 0x41...0x5a, 0x61...0x7a, 0x2d, 0x2e, 0x5f, 0x7e:
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += "%" + String(b >> 4, radix: 16, uppercase: true) + String(b & 0xf, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// Encodes a string's UTF-8 bytes.
    public static func encode(_ s: String) -> String { encode(Array(s.utf8)) }
}
