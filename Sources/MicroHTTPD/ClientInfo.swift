/// What the transport knows of a request besides its head: who sent it, and how.
public struct ClientInfo: Sendable {
    /// The client's numeric IP address (`127.0.0.1`, `::1`), or an empty string if unknown.
    public var remoteAddress: String
    /// The protocol version from the request line, for example `HTTP/1.1`.
    public var version: String
    /// The uid of the client process on a Unix-domain socket (`SO_PEERCRED`); nil over TCP.
    public var peerUID: UInt32? = nil
    /// The client's TLS certificate, when the server asks for one (``TLSCredentials/clientCAPEM``).
    public var certificate: Certificate? = nil

    /// What a TLS client presented when a client certificate was asked for.
    public enum Certificate: Sendable, Equatable {
        /// None was presented.
        case absent
        /// One was presented and does not verify against the client CAs (wrong CA, expired, ...).
        case rejected
        /// One verified; its subject's distinguished name (RFC 4514 text).
        case verified(subject: String)
    }

    /// Creates client information; the server fills it, tests may build one by hand.
    public init(remoteAddress: String = "", version: String = "HTTP/1.1") {
        self.remoteAddress = remoteAddress
        self.version = version
    }
}
