/// Bytes from the image that are meant to be text (names, file names), kept losslessly.
///
/// Valid UTF-8 renders as itself, backslashes included (as qemu-img shows it). Anything else renders
/// in ``escaped`` form, where each byte that is not part of valid UTF-8 becomes `\xNN` and a
/// backslash becomes `\\`, so that form is reversible and never drops a byte; ``hex`` gives the raw bytes.
public struct ByteString: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The raw bytes.
    public let bytes: [UInt8]

    /// Wraps bytes.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Wraps the UTF-8 bytes of a string.
    public init(_ string: String) {
        self.bytes = Array(string.utf8)
    }

    /// The text when the bytes are valid UTF-8, `nil` otherwise.
    public var utf8: String? {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        var out = ""
        while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s): out.unicodeScalars.append(s)
            case .emptyInput: return out
            case .error: return nil
            }
        }
    }

    /// Whether every byte is printable ASCII (what Python's `str.isprintable` accepts for ASCII).
    public var isPrintableASCII: Bool {
        bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }

    /// The text: valid UTF-8 exactly as it is; otherwise lossless, with valid sequences as they are,
    /// `\` as `\\` and every other byte as `\xNN`.
    public var escaped: String {
        if let s = utf8 { return s }
        var out = ""
        var i = 0
        while i < bytes.count {
            let len = ByteString.validSequenceLength(bytes, at: i)
            if len == 0 {
                out += "\\x" + Hex.bytes([bytes[i]])
                i += 1
            } else if len == 1 && bytes[i] == 0x5c {
                out += "\\\\"
                i += 1
            } else {
                out += String(decoding: bytes[i..<(i + len)], as: UTF8.self)
                i += len
            }
        }
        return out
    }

    /// The bytes before the first NUL: the name QEMU shows and uses (it keeps names as C strings).
    public var beforeNUL: ByteString {
        guard let i = bytes.firstIndex(of: 0) else { return self }
        return ByteString(Array(bytes[..<i]))
    }

    /// Whether a NUL byte is stored inside the name.
    public var containsNUL: Bool { bytes.contains(0) }

    /// Lowercase hex of the bytes.
    public var hex: String { Hex.bytes(bytes) }

    /// The escaped form.
    public var description: String { escaped }

    /// Byte-wise order (as the directory would sort them by bytes).
    public static func < (lhs: ByteString, rhs: ByteString) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    /// Length of the valid UTF-8 sequence starting at `i`, 0 when the byte there starts none.
    static func validSequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let c = b[i]
        let need: Int
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xbf
        switch c {
        case 0x00...0x7f: return 1
        case 0xc2...0xdf: need = 1
        case 0xe0: need = 2; lo = 0xa0
        case 0xe1...0xec, 0xee...0xef: need = 2
        case 0xed: need = 2; hi = 0x9f
        case 0xf0: need = 3; lo = 0x90
        case 0xf1...0xf3: need = 3
        case 0xf4: need = 3; hi = 0x8f
        default: return 0
        }
        guard i + need < b.count else { return 0 }
        for k in 1...need {
            let x = b[i + k]
            let l: UInt8 = k == 1 ? lo : 0x80
            let h: UInt8 = k == 1 ? hi : 0xbf
            guard x >= l && x <= h else { return 0 }
        }
        return need + 1
    }
}
