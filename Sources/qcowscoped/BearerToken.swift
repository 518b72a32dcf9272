import Synchronization

/// The shared secret clients send as `Authorization: Bearer <token>` (RFC 6750), read from a file.
///
/// The file holds one token: surrounding whitespace (a trailing newline) is removed, and the rest must be
/// 16 to 4096 visible ASCII characters without spaces. ``reload()`` (SIGHUP) reads the file again; if it
/// is unusable then, the previous token stays in use. Comparison takes the same time wherever the first
/// difference is.
final class BearerToken: Sendable {
    /// The token file.
    let path: String
    private let token: Mutex<[UInt8]>

    /// The shortest token accepted.
    static let minimumLength = 16

    /// Reads the token file.
    ///
    /// - Throws: ``StartupError`` when the file cannot be read or holds no valid token.
    init(path: String) throws(StartupError) {
        self.path = path
        token = Mutex(try Self.load(path))
    }

    /// Reads the file again and uses its token from now on.
    ///
    /// - Throws: ``StartupError`` (the previous token stays in use).
    func reload() throws(StartupError) {
        let fresh = try Self.load(path)
        token.withLock { $0 = fresh }
    }

    /// Whether an `Authorization` header value carries this token (scheme `Bearer`, case-insensitive).
    func accepts(authorization: String?) -> Bool {
        guard let authorization else { return false }
        let bytes = Array(authorization.utf8)
        let scheme = Array("bearer ".utf8)
        guard bytes.count > scheme.count,
            zip(bytes, scheme).allSatisfy({ ($0 | 0x20) == $1 })
        else { return false }
        var presented = bytes[scheme.count...].drop { $0 == 0x20 }
        while presented.last == 0x20 || presented.last == 0x09 { presented.removeLast() }
        let expected = token.withLock { $0 }
        return Self.constantTimeEqual(Array(presented), expected)
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

    /// The token in the file at `path`, checked.
    private static func load(_ path: String) throws(StartupError) -> [UInt8] {
        var bytes = try SmallFile.read(path, what: "token file", limit: 65536)[...]
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        while let first = bytes.first, isSpace(first) { bytes.removeFirst() }
        while let last = bytes.last, isSpace(last) { bytes.removeLast() }
        guard !bytes.isEmpty else { throw StartupError("token file '\(path)' is empty") }
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw StartupError("token file '\(path)' must hold one token of visible ASCII characters, without spaces")
        }
        guard bytes.count >= minimumLength, bytes.count <= 4096 else {
            throw StartupError(
                "token in '\(path)' has \(bytes.count) characters (expected \(minimumLength) to 4096; "
                    + "e.g. openssl rand -hex 32)")
        }
        return Array(bytes)
    }
}
