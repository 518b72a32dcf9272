/// Reads JSON text (RFC 8259) into a ``JSONValue``, keeping what ``JSONWriter`` needs to print it again
/// byte for byte: object keys in order, integers exact (`uint` for non-negative, `int` for negative),
/// a number with a fraction or an exponent as `double`.
///
/// The remote CLI reads the daemon's documents with it and prints them as the local run does. The
/// input is untrusted: nesting is bounded (``maximumDepth``), every index is checked, and an error
/// names the byte offset.
public struct JSONParser: Sendable {
    /// Deepest nesting of arrays and objects accepted (the API's documents go 6 deep).
    public static let maximumDepth = 64

    /// Why a text is not JSON, with the byte offset where reading stopped.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// What was expected or found.
        public var reason: String
        /// Byte offset in the text.
        public var offset: Int

        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    private let bytes: [UInt8]
    private var at = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Parses one JSON value that fills `bytes` (surrounding whitespace allowed).
    public static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        var p = JSONParser(bytes)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.at == bytes.count else { throw p.fail("text after the value") }
        return v
    }

    private func fail(_ reason: String) -> Failure { Failure(reason: reason, offset: at) }

    private var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

    private mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 { at += 1 }
    }

    private mutating func expect(_ word: String, _ v: JSONValue) throws(Failure) -> JSONValue {
        for b in word.utf8 {
            guard peek == b else { throw fail("expected \(word)") }
            at += 1
        }
        return v
    }

    private mutating func value(depth: Int) throws(Failure) -> JSONValue {
        guard let c = peek else { throw fail("unexpected end") }
        switch c {
        case 0x7b: return try object(depth: depth + 1)
        case 0x5b: return try array(depth: depth + 1)
        case 0x22: return .string(try string())
        case 0x74: return try expect("true", .bool(true))
        case 0x66: return try expect("false", .bool(false))
        case 0x6e: return try expect("null", .null)
        case 0x2d, 0x30...0x39: return try number()
        default: throw fail("unexpected byte 0x\(String(c, radix: 16))")
        }
    }

    private mutating func object(depth: Int) throws(Failure) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw fail("nested deeper than \(Self.maximumDepth)") }
        at += 1
        var pairs: [(String, JSONValue)] = []
        skipSpace()
        if peek == 0x7d {
            at += 1
            return .object(pairs)
        }
        while true {
            skipSpace()
            guard peek == 0x22 else { throw fail("expected a key") }
            let key = try string()
            skipSpace()
            guard peek == 0x3a else { throw fail("expected ':'") }
            at += 1
            skipSpace()
            pairs.append((key, try value(depth: depth)))
            skipSpace()
            switch peek {
            case 0x2c: at += 1
            case 0x7d:
                at += 1
                return .object(pairs)
            default: throw fail("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int) throws(Failure) -> JSONValue {
        guard depth <= Self.maximumDepth else { throw fail("nested deeper than \(Self.maximumDepth)") }
        at += 1
        var items: [JSONValue] = []
        skipSpace()
        if peek == 0x5d {
            at += 1
            return .array(items)
        }
        while true {
            skipSpace()
            items.append(try value(depth: depth))
            skipSpace()
            switch peek {
            case 0x2c: at += 1
            case 0x5d:
                at += 1
                return .array(items)
            default: throw fail("expected ',' or ']'")
            }
        }
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek else { throw fail("short \\u escape") }
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("bad \\u escape")
            }
            v = v << 4 | d
            at += 1
        }
        return v
    }

    private mutating func string() throws(Failure) -> String {
        at += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw fail("unterminated string") }
            at += 1
            switch c {
            case 0x22:
                return String(decoding: out, as: UTF8.self)
            case 0x5c:
                guard let e = peek else { throw fail("unterminated escape") }
                at += 1
                switch e {
                case 0x22, 0x5c, 0x2f: out.append(e)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0c)
                case 0x6e: out.append(0x0a)
                case 0x72: out.append(0x0d)
                case 0x74: out.append(0x09)
                case 0x75:
                    var scalar = try hex4()
                    if scalar >= 0xd800 && scalar < 0xdc00, peek == 0x5c, at + 1 < bytes.count, bytes[at + 1] == 0x75 {
                        let save = at
                        at += 2
                        let low = try hex4()
                        if low >= 0xdc00 && low < 0xe000 {
                            scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                        } else {
                            at = save
                        }
                    }
                    // A lone surrogate is not a scalar: it reads as U+FFFD, as a decoder of bad UTF-8 does.
                    out += String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8
                default: throw Failure(reason: "bad escape", offset: at - 1)
                }
            case 0x00..<0x20:
                throw Failure(reason: "control byte in a string", offset: at - 1)
            default:
                out.append(c)
            }
        }
    }

    private mutating func number() throws(Failure) -> JSONValue {
        let start = at
        if peek == 0x2d { at += 1 }
        guard let first = peek, first >= 0x30 && first <= 0x39 else { throw fail("expected a digit") }
        if first == 0x30 {
            at += 1
        } else {
            while let c = peek, c >= 0x30 && c <= 0x39 { at += 1 }
        }
        var integral = true
        if peek == 0x2e {
            integral = false
            at += 1
            guard let c = peek, c >= 0x30 && c <= 0x39 else { throw fail("expected a digit after '.'") }
            while let c = peek, c >= 0x30 && c <= 0x39 { at += 1 }
        }
        if peek == 0x65 || peek == 0x45 {
            integral = false
            at += 1
            if peek == 0x2b || peek == 0x2d { at += 1 }
            guard let c = peek, c >= 0x30 && c <= 0x39 else { throw fail("expected a digit in the exponent") }
            while let c = peek, c >= 0x30 && c <= 0x39 { at += 1 }
        }
        let text = String(decoding: bytes[start..<at], as: UTF8.self)
        if integral {
            if bytes[start] == 0x2d {
                if let v = Int64(text) { return v == 0 ? .uint(0) : .int(v) }
            } else if let v = UInt64(text) {
                return .uint(v)
            }
        }
        guard let d = Double(text), d.isFinite else { throw Failure(reason: "number out of range", offset: start) }
        return .double(d)
    }
}
