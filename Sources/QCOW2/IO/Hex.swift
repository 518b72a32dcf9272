/// Hexadecimal rendering helpers shared by errors, findings and presenters.
public enum Hex {
    private static let digits: [Character] = Array("0123456789abcdef")

    /// `0x`-prefixed lowercase hex without padding, like Python's `'%#x'` (`0x0` for zero).
    public static func string<T: BinaryInteger>(_ value: T) -> String {
        "0x" + String(value, radix: 16)
    }

    /// Lowercase hex of each byte, two digits a byte, no separator.
    public static func bytes(_ bytes: [UInt8]) -> String {
        var out = ""
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return out
    }
}
