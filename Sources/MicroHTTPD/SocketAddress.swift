import CMicroHTTPD
import Glibc

/// Conversions between ``ListenAddress`` and C `sockaddr` values.
enum SocketAddress {
    /// Calls `body` with a `sockaddr_in` or `sockaddr_in6` for `address` and its length.
    static func withSockaddr<R>(
        of address: ListenAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R {
        switch address.family {
        case .ipv4:
            var sin = sockaddr_in()
            return fill(&sin, AF_INET, \.sin_family, \.sin_port, \.sin_addr, address, body)
        case .ipv6, .unix:
            // A Unix-domain socket never gets here: ``ListenSocket/bind(_:unixMode:unixGroup:)`` binds it
            // through the C shim (sockaddr_un).
            var sin6 = sockaddr_in6()
            return fill(&sin6, AF_INET6, \.sin6_family, \.sin6_port, \.sin6_addr, address, body)
        }
    }

    /// Sets the family, port and host of `socket` (a `sockaddr_in` or `sockaddr_in6`) from `address`,
    /// then calls `body` with it seen as a `sockaddr`, and its size.
    private static func fill<Socket, Host, R>(
        _ socket: inout Socket, _ family: Int32, _ familyField: WritableKeyPath<Socket, sa_family_t>,
        _ portField: WritableKeyPath<Socket, in_port_t>, _ hostField: WritableKeyPath<Socket, Host>,
        _ address: ListenAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
    ) -> R {
        socket[keyPath: familyField] = sa_family_t(family)
        socket[keyPath: portField] = address.port.bigEndian
        _ = unsafe withUnsafeMutablePointer(to: &socket[keyPath: hostField]) { unsafe inet_pton(family, address.host, $0) }
        return unsafe withUnsafePointer(to: &socket) {
            unsafe $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                unsafe body($0, socklen_t(MemoryLayout<Socket>.size))
            }
        }
    }

    /// The numeric host and port of an `AF_INET` or `AF_INET6` socket address, or nil for other families.
    static func decode(_ address: UnsafePointer<sockaddr>) -> (
        host: String, port: UInt16, family: ListenAddress.Family
    )? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(unsafe address.pointee.sa_family) {
        case AF_INET:
            return unsafe address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var addr = unsafe sin.pointee.sin_addr
                guard unsafe inet_ntop(AF_INET, &addr, &text, socklen_t(text.count)) != nil else { return nil }
                return (Self.string(text), UInt16(bigEndian: unsafe sin.pointee.sin_port), .ipv4)
            }
        case AF_INET6:
            return unsafe address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var addr = unsafe sin6.pointee.sin6_addr
                guard unsafe inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count)) != nil else { return nil }
                return (Self.string(text), UInt16(bigEndian: unsafe sin6.pointee.sin6_port), .ipv6)
            }
        default:
            return nil
        }
    }

    /// The text before the first NUL of a C character buffer.
    private static func string(_ buffer: [CChar]) -> String {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
