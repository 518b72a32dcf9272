import QCOW2

/// The bits of Python formatting qcow2.py's output depends on.
enum PythonFormat {
    /// Python's `'{:<N}'.format(s)`: left-justified, never truncated.
    static func pad(_ s: String, _ width: Int) -> String {
        let n = s.unicodeScalars.count
        return n >= width ? s : s + String(repeating: " ", count: width - n)
    }

    /// `Flags64.__str__`: the Python list of set bit numbers, `[]`, `[0]`, `[0, 3]`.
    static func bitList(_ v: UInt64) -> String {
        "[" + FeatureGroup.bits(of: v).map(String.init).joined(separator: ", ") + "]"
    }

    /// `BitmapFlags.__str__`: `0x3 (['in-use', 'auto'])`, unknown bits as `bit-N`.
    static func bitmapFlags(_ flags: UInt32) -> String {
        let names = FeatureGroup.bits(of: UInt64(flags)).map { bit -> String in
            switch bit {
            case 0: "'in-use'"
            case 1: "'auto'"
            default: "'bit-\(bit)'"
            }
        }
        return "\(Hex.string(flags)) ([\(names.joined(separator: ", "))])"
    }

    /// Membership in Python's `string.printable` (printable ASCII plus ` \t\n\r\x0b\x0c`).
    static func isPrintable(_ b: UInt8) -> Bool {
        (b >= 0x20 && b < 0x7f) || (b >= 0x09 && b <= 0x0d)
    }

    /// `QcowHeaderExtension.data_str`: the data quoted when all of it is printable, else `<binary>`.
    static func dataString(_ data: [UInt8]) -> String {
        guard data.allSatisfy(isPrintable) else { return "<binary>" }
        var s = "'"
        for b in data { s.unicodeScalars.append(Unicode.Scalar(b)) }
        return s + "'"
    }

    /// `bytes.decode('ascii', 'backslashreplace')`.
    static func backslashReplace(_ bytes: [UInt8]) -> String {
        var s = ""
        for b in bytes {
            if b < 0x80 {
                s.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                s += "\\x" + Hex.bytes([b])
            }
        }
        return s
    }
}
