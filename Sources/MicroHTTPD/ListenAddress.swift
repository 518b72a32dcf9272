import CMicroHTTPD
import Glibc

/// A numeric IPv4 or IPv6 address and a TCP port to listen on, or a Unix-domain socket path.
///
/// The text form is `IPv4:PORT` (`127.0.0.1:8741`), `[IPv6]:PORT` (`[::1]:8741`) or `unix:/ABSOLUTE/PATH`.
/// Host names are not resolved. Port 0 asks the kernel for a free port; ``HTTPServer/boundAddresses``
/// tells which.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family of a ``ListenAddress``.
    public enum Family: Sendable, Hashable {
        /// `AF_INET`.
        case ipv4
        /// `AF_INET6`; such sockets are bound with `IPV6_V6ONLY`.
        case ipv6
        /// `AF_UNIX`: ``host`` is the socket's path, ``port`` is 0.
        case unix
    }

    /// The numeric host, without brackets (`127.0.0.1`, `::1`); the path of a Unix-domain socket.
    public let host: String
    /// The TCP port; 0 means "any free port" (always 0 for a Unix-domain socket).
    public let port: UInt16
    /// The address family, derived from ``host``.
    public let family: Family

    /// Creates an address from a numeric host and a port.
    ///
    /// - Throws: ``HTTPServerError/Code/invalidAddress`` when `host` is not a numeric IPv4 or IPv6 address.
    public init(host: String, port: UInt16) throws(HTTPServerError) {
        if Self.isNumeric(host, family: AF_INET) {
            family = .ipv4
        } else if Self.isNumeric(host, family: AF_INET6) {
            family = .ipv6
        } else {
            throw HTTPServerError(
                code: .invalidAddress,
                message: "invalid listen address '\(host)': not a numeric IPv4 or IPv6 address")
        }
        self.host = host
        self.port = port
    }

    /// A Unix-domain socket at `path`: absolute, at most 107 bytes, no NUL.
    ///
    /// - Throws: ``HTTPServerError/Code/invalidAddress`` naming what is wrong with the path.
    public init(unixPath path: String) throws(HTTPServerError) {
        guard path.hasPrefix("/"), path.utf8.count <= 107, !path.utf8.contains(0) else {
            throw HTTPServerError(
                code: .invalidAddress,
                message: "invalid listen address 'unix:\(path)': the socket path must be absolute and at most 107 bytes")
        }
        host = path
        port = 0
        family = .unix
    }

    /// Parses `IPv4:PORT`, `[IPv6]:PORT` or `unix:/PATH`.
    ///
    /// - Throws: ``HTTPServerError/Code/invalidAddress`` naming the text and what is wrong with it.
    public init(parsing text: String) throws(HTTPServerError) {
        func invalid(_ reason: String) -> HTTPServerError {
            HTTPServerError(
                code: .invalidAddress,
                message: "invalid listen address '\(text)': \(reason) (expected IPv4:PORT, [IPv6]:PORT or unix:/PATH)")
        }
        if text.hasPrefix("unix:") {
            self = try ListenAddress(unixPath: String(text.dropFirst(5)))
            return
        }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw invalid("missing ']'") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw invalid("missing ':PORT' after ']'") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw invalid("missing ':PORT'") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { throw invalid("IPv6 addresses must be written in brackets") }
        }
        guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0.isASCII && $0.isNumber }),
            let port = Int(portPart), port <= 65535
        else { throw invalid("port must be a number from 0 to 65535") }
        let host = String(hostPart)
        if text.hasPrefix("[") {
            guard Self.isNumeric(host, family: AF_INET6) else {
                throw invalid("'\(host)' is not a numeric IPv6 address")
            }
            family = .ipv6
        } else {
            guard Self.isNumeric(host, family: AF_INET) else {
                throw invalid("'\(host)' is not a numeric IPv4 address")
            }
            family = .ipv4
        }
        self.host = host
        self.port = UInt16(port)
    }

    /// The address a listening descriptor is bound to, for sockets handed over by a supervisor.
    ///
    /// - Throws: ``HTTPServerError/Code/socketFailed`` when `fd` is not a bound IPv4 or IPv6 socket.
    public init(boundTo fd: Int32) throws(HTTPServerError) {
        self = try ListenSocket.localAddress(fd)
    }

    /// Whether only this host can reach the address: `127.0.0.0/8`, `::1`, `::ffff:127.0.0.0/104`, or a
    /// Unix-domain socket (its file permissions say who).
    ///
    /// The wildcard addresses `0.0.0.0` and `::` are not loopback: they accept connections from anywhere.
    public var isLoopback: Bool {
        var bytes = [UInt8](repeating: 0, count: 16)
        switch family {
        case .ipv4:
            guard unsafe bytes.withUnsafeMutableBytes({ unsafe inet_pton(AF_INET, host, $0.baseAddress) }) == 1
            else { return false }
            return bytes[0] == 127
        case .ipv6:
            guard unsafe bytes.withUnsafeMutableBytes({ unsafe inet_pton(AF_INET6, host, $0.baseAddress) }) == 1
            else { return false }
            if bytes[..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
            return bytes[..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127
        case .unix:
            return true
        }
    }

    /// The text form: `127.0.0.1:8741`, `[::1]:8741` or `unix:/run/qcowscope/qcowscoped.sock`.
    public var description: String {
        switch family {
        case .ipv4: "\(host):\(port)"
        case .ipv6: "[\(host)]:\(port)"
        case .unix: "unix:\(host)"
        }
    }

    /// Whether `inet_pton` accepts `host` for the family.
    private static func isNumeric(_ host: String, family: Int32) -> Bool {
        var storage = sockaddr_in6()
        return unsafe withUnsafeMutableBytes(of: &storage) { unsafe inet_pton(family, host, $0.baseAddress) == 1 }
    }
}
