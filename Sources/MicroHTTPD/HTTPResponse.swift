/// A complete HTTP response: status, header fields and body bytes.
///
/// The server copies the body into libmicrohttpd (`MHD_RESPMEM_MUST_COPY`) and adds `Content-Length`
/// and `Date` itself; a `Content-Length` given here is ignored. For `HEAD` the body is not sent but
/// `Content-Length` still states its size, so build the same response for `HEAD` as for `GET`.
public struct HTTPResponse: Sendable {
    /// The status code, 100 to 999; anything else is answered as 500.
    public var status: Int
    /// Header fields in the order they should be sent.
    public var headers: [(name: String, value: String)]
    /// The body bytes.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of the first header field called `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { HTTPRequest.sameName($0.name, name) }?.value
    }
}
