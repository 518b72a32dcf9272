/// An error from binding, listening on or starting an ``HTTPServer``.
///
/// The ``description`` is one line meant for people, for example
/// `cannot listen on 127.0.0.1:8741: address already in use`; ``code`` is for programs.
public struct HTTPServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure happened.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The short name of the code, for example `addressInUse`.
        public let name: String

        /// The text of a listen address cannot be parsed (not `IPv4:PORT` or `[IPv6]:PORT`).
        public static let invalidAddress = Code(name: "invalidAddress")
        /// Another socket already listens on the address (`EADDRINUSE`).
        public static let addressInUse = Code(name: "addressInUse")
        /// The address does not belong to this host (`EADDRNOTAVAIL`).
        public static let addressUnavailable = Code(name: "addressUnavailable")
        /// The process may not bind the address, usually a port below 1024 (`EACCES`).
        public static let permissionDenied = Code(name: "permissionDenied")
        /// Another socket call failed (`socket`, `setsockopt`, `listen`, `getsockname`, `fcntl`).
        public static let socketFailed = Code(name: "socketFailed")
        /// A configuration value is out of range, or no listen address was given.
        public static let invalidConfiguration = Code(name: "invalidConfiguration")
        /// libmicrohttpd refused to start a daemon on a socket.
        public static let startFailed = Code(name: "startFailed")

        public var description: String { name }
    }

    /// What kind of failure happened.
    public let code: Code
    /// One line describing the failure, naming the address or value involved.
    public let message: String
    /// The `errno` value behind the failure, or 0 when there is none.
    public let errno: Int32

    /// Creates an error from its parts.
    public init(code: Code, message: String, errno: Int32 = 0) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String { message }
}
