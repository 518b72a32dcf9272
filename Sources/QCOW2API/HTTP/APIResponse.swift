/// A response: status, header fields and body bytes. HEAD responses keep the body; the transport drops it.
public struct APIResponse: Sendable {
    /// The status code.
    public var status: Int
    /// Header fields in order.
    public var headers: [(name: String, value: String)]
    /// The body.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name`, case-insensitively.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }

    /// A JSON response.
    static func json(_ value: JSONValue, status: Int = 200, extra: [(name: String, value: String)] = []) -> APIResponse {
        APIResponse(
            status: status, headers: [("Content-Type", "application/json")] + extra,
            body: JSONWriter(style: .compact).bytes(value) + [0x0a])
    }
}
