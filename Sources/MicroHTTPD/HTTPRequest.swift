/// One HTTP request as the client sent it, with nothing decoded.
///
/// ``rawTarget`` is the request target exactly as it appeared on the request line; ``rawPath`` and
/// ``rawQuery`` are its two halves split at the first `?`. No percent-decoding and no `+`-to-space
/// conversion is applied anywhere: `/a%2Fb` stays `/a%2Fb`. The only change is that bytes which are
/// not valid UTF-8 become U+FFFD when the target is turned into a `String`.
public struct HTTPRequest: Sendable {
    /// The request method, for example `GET`, exactly as sent (case-sensitive).
    public var method: String
    /// The request target as sent: path and query (`/images?limit=10`).
    public var rawTarget: String
    /// The path part of ``rawTarget``, before the first `?`, not percent-decoded.
    public var rawPath: String
    /// The query part of ``rawTarget``, after the first `?`, not decoded; nil when there is no `?`.
    public var rawQuery: String?
    /// The header fields in the order received; names keep the client's spelling.
    public var headers: [(name: String, value: String)]
    /// The client's numeric IP address (`127.0.0.1`, `::1`), or an empty string if unknown.
    public var remoteAddress: String
    /// The protocol version from the request line, for example `HTTP/1.1`.
    public var version: String

    /// Creates a request; the server fills every field, tests may build one by hand.
    public init(
        method: String,
        rawTarget: String,
        headers: [(name: String, value: String)] = [],
        remoteAddress: String = "",
        version: String = "HTTP/1.1"
    ) {
        self.method = method
        self.rawTarget = rawTarget
        if let question = rawTarget.firstIndex(of: "?") {
            rawPath = String(rawTarget[..<question])
            rawQuery = String(rawTarget[rawTarget.index(after: question)...])
        } else {
            rawPath = rawTarget
            rawQuery = nil
        }
        self.headers = headers
        self.remoteAddress = remoteAddress
        self.version = version
    }

    /// The query split at `&` and then at the first `=`, in order, without any decoding.
    ///
    /// `a=1&b&c=` gives `[("a", "1"), ("b", nil), ("c", "")]`. Empty pieces (`a=1&&b=2`) are skipped.
    public var query: [(name: String, value: String?)] {
        guard let rawQuery else { return [] }
        return rawQuery.split(separator: "&", omittingEmptySubsequences: true).map { piece in
            if let equals = piece.firstIndex(of: "=") {
                return (String(piece[..<equals]), String(piece[piece.index(after: equals)...]))
            }
            return (String(piece), nil)
        }
    }

    /// The value of the first header field called `name`, compared case-insensitively (ASCII).
    public func header(_ name: String) -> String? {
        headers.first { Self.sameName($0.name, name) }?.value
    }

    /// The values of every header field called `name`, compared case-insensitively, in order.
    public func headers(named name: String) -> [String] {
        headers.filter { Self.sameName($0.name, name) }.map(\.value)
    }

    /// ASCII case-insensitive equality of two header names.
    static func sameName(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count
            && zip(a.utf8, b.utf8).allSatisfy { lower($0) == lower($1) }
    }

    /// The ASCII lower-case form of a byte.
    private static func lower(_ byte: UInt8) -> UInt8 {
        (byte >= 0x41 && byte <= 0x5A) ? byte + 0x20 : byte
    }
}
