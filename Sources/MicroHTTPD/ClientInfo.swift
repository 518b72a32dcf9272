/// What the transport knows of a request besides its head: who sent it, and how.
public struct ClientInfo: Sendable {
    /// The client's numeric IP address (`127.0.0.1`, `::1`), or an empty string if unknown.
    public var remoteAddress: String
    /// The protocol version from the request line, for example `HTTP/1.1`.
    public var version: String
    /// The uid of the client process on a Unix-domain socket (`SO_PEERCRED`); nil over TCP.
    public var peerUID: UInt32? = nil

    /// Creates client information; the server fills it, tests may build one by hand.
    public init(remoteAddress: String = "", version: String = "HTTP/1.1") {
        self.remoteAddress = remoteAddress
        self.version = version
    }
}
