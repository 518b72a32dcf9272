public import HTTPTypes

/// One answer: its head (status and fields, swift-http-types), its body, and the route that made it.
///
/// For `HEAD` the transport sends the head of the `GET` answer (with its `Content-Length`) and drops
/// the body. `route` is nil when no route matched: metrics and logs label such answers `other`.
public struct Response: Sendable {
    /// Status and header fields.
    public var head: HTTPResponse
    /// The body bytes.
    public var body: [UInt8]
    /// The route that answered, if any.
    public var route: Route?
    /// Set when the same bytes may answer later requests for the same target (see ``Reuse``).
    public var reuse: Reuse?

    /// Creates a response.
    public init(head: HTTPResponse, body: [UInt8] = [], route: Route? = nil) {
        self.head = head
        self.body = body
        self.route = route
    }

    /// A JSON document, newline-terminated.
    static func json(_ value: JSONValue, fields: HTTPFields = [:]) -> Response {
        var f = fields
        f[.contentType] = "application/json"
        return Response(head: HTTPResponse(status: .ok, headerFields: f), body: JSONWriter(style: .compact).bytes(value) + [0x0a])
    }

    /// The status code.
    public var status: Int { head.status.code }

    /// The value of header field `name`, if present.
    public func header(_ name: HTTPField.Name) -> String? { head.headerFields[name] }
}
