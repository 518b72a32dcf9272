/// A request as the API sees it: method, the raw (still percent-encoded) path and query, headers.
public struct APIRequest: Sendable {
    /// The method, e.g. `GET`.
    public var method: String
    /// The path exactly as sent, not percent-decoded.
    public var rawPath: String
    /// The raw query string without `?` (not decoded), empty when there is none.
    public var rawQuery: String
    /// Header fields; names compared case-insensitively.
    public var headers: [(name: String, value: String)]

    /// Creates a request.
    public init(method: String, rawPath: String, rawQuery: String = "", headers: [(name: String, value: String)] = []) {
        self.method = method
        self.rawPath = rawPath
        self.rawQuery = rawQuery
        self.headers = headers
    }

    /// Creates a request from a request target such as `/v1/images?limit=2`.
    public init(method: String, target: String, headers: [(name: String, value: String)] = []) {
        if let q = target.firstIndex(of: "?") {
            self.init(method: method, rawPath: String(target[..<q]), rawQuery: String(target[target.index(after: q)...]), headers: headers)
        } else {
            self.init(method: method, rawPath: target, headers: headers)
        }
    }

    /// The first value of header `name`, case-insensitively.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }
}
