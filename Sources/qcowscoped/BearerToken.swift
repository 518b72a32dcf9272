import Synchronization

/// The secrets clients send as `Authorization: Bearer <token>` (RFC 6750), read from a file: one per
/// client, each with a name that the access log and the metrics carry (never the token).
///
/// The file holds either one token alone (named `default`), or `name:token` lines, one per client
/// (rotation: add the new line, reload, move the clients, remove the old line, reload). Blank lines
/// and lines starting with `#` are ignored; surrounding whitespace is removed. A name is 1 to 64 of
/// `A-Z a-z 0-9 . _ -`, unique; a token is 16 to 4096 visible ASCII characters without spaces; at most
/// 1,000 tokens. ``reload()`` (SIGHUP) reads the file again: a removed token stops working at once; if
/// the file is unusable then, the previous tokens stay in use. Every token is compared, each in time
/// that depends only on the lengths, whichever matches.
final class BearerToken: Sendable {
    /// The token file.
    let path: String
    private let tokens: Mutex<[(name: String, token: [UInt8])]>

    /// The shortest token accepted.
    static let minimumLength = 16
    /// The most tokens one file may hold.
    static let maximumCount = 1000

    /// Reads the token file.
    ///
    /// - Throws: ``StartupError`` when the file cannot be read or holds no valid token.
    init(path: String) throws(StartupError) {
        self.path = path
        tokens = Mutex(try Self.load(path))
    }

    /// Reads the file again and uses its tokens from now on.
    ///
    /// - Throws: ``StartupError`` (the previous tokens stay in use).
    func reload() throws(StartupError) {
        let fresh = try Self.load(path)
        tokens.withLock { $0 = fresh }
    }

    /// The names of the tokens in use, in file order.
    var names: [String] { tokens.withLock { $0.map(\.name) } }

    /// Whether an `Authorization` header value carries one of the tokens (scheme `Bearer`, case-insensitive).
    func accepts(authorization: String?) -> Bool { name(for: authorization) != nil }

    /// The name of the token an `Authorization` header value carries, nil when it carries none of them.
    func name(for authorization: String?) -> String? {
        guard let authorization else { return nil }
        let bytes = Array(authorization.utf8)
        let scheme = Array("bearer ".utf8)
        guard bytes.count > scheme.count,
            zip(bytes, scheme).allSatisfy({ ($0 | 0x20) == $1 })
        else { return nil }
        var presented = bytes[scheme.count...].drop { $0 == 0x20 }
        while presented.last == 0x20 || presented.last == 0x09 { presented.removeLast() }
        let candidate = Array(presented)
        var found: String? = nil
        for t in tokens.withLock({ $0 }) where Self.constantTimeEqual(candidate, t.token) && found == nil {
            found = t.name
        }
        return found
    }

    /// Compares two byte strings in time that depends only on their lengths.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt64(a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= UInt64(x ^ y)
        }
        return difference == 0
    }

    /// The tokens in the file at `path`, checked.
    private static func load(_ path: String) throws(StartupError) -> [(name: String, token: [UInt8])] {
        let bytes = try SmallFile.read(path, what: "token file", limit: 1 << 20)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
        var lines: [(number: Int, text: ArraySlice<UInt8>)] = []
        for (i, raw) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            var line = raw
            while let first = line.first, isSpace(first) { line.removeFirst() }
            while let last = line.last, isSpace(last) { line.removeLast() }
            if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
            lines.append((i + 1, line))
        }
        guard !lines.isEmpty else { throw StartupError("token file '\(path)' is empty") }
        func checked(_ token: ArraySlice<UInt8>, line: Int) throws(StartupError) -> [UInt8] {
            guard token.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw StartupError("token file '\(path)' line \(line): a token is visible ASCII characters, without spaces")
            }
            guard token.count >= minimumLength, token.count <= 4096 else {
                throw StartupError(
                    "token file '\(path)' line \(line): the token has \(token.count) characters (expected \(minimumLength) to 4096; "
                        + "e.g. openssl rand -hex 32)")
            }
            return Array(token)
        }
        // One token alone, without a name: the format before names.
        if lines.count == 1, !lines[0].text.contains(UInt8(ascii: ":")) {
            return [("default", try checked(lines[0].text, line: lines[0].number))]
        }
        guard lines.count <= maximumCount else {
            throw StartupError("token file '\(path)' holds \(lines.count) tokens (at most \(maximumCount))")
        }
        var result: [(name: String, token: [UInt8])] = []
        for (number, text) in lines {
            guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else {
                throw StartupError("token file '\(path)' line \(number): expected name:token (one token alone needs no name)")
            }
            let name = text[..<colon]
            let nameOK = (1...64).contains(name.count) && name.allSatisfy { b in
                (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
                    || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
            }
            guard nameOK else {
                throw StartupError("token file '\(path)' line \(number): a name is 1 to 64 of A-Z a-z 0-9 . _ -")
            }
            let n = String(decoding: name, as: UTF8.self)
            guard !result.contains(where: { $0.name == n }) else {
                throw StartupError("token file '\(path)' line \(number): the name '\(n)' is used twice")
            }
            result.append((n, try checked(text[text.index(after: colon)...], line: number)))
        }
        return result
    }
}
