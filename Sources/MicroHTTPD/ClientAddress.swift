import CMicroHTTPD
import Glibc

/// A client's IPv4 or IPv6 address without its port: a small value to count, compare and cache by,
/// whose ``text`` is made only when asked for.
public struct ClientAddress: Hashable, Sendable {
    /// `AF_INET` or `AF_INET6`.
    let family: UInt16
    /// The address bytes, big-endian: IPv6's first and last eight; IPv4's four in `low`.
    let high: UInt64
    let low: UInt64

    /// The address of an IPv4 or IPv6 socket address of `length` bytes; nil for other families (a
    /// Unix-domain client) and short addresses.
    init?(_ address: UnsafePointer<sockaddr>?, length: Int) {
        guard let address = unsafe address else { return nil }
        switch Int32(unsafe address.pointee.sa_family) {
        case AF_INET where length >= MemoryLayout<sockaddr_in>.size:
            let a = unsafe UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self)
            family = UInt16(AF_INET)
            high = 0
            low = UInt64(UInt32(bigEndian: a.sin_addr.s_addr))
        case AF_INET6 where length >= MemoryLayout<sockaddr_in6>.size:
            let a = unsafe UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self)
            var h: UInt64 = 0
            var l: UInt64 = 0
            unsafe withUnsafeBytes(of: a.sin6_addr) { bytes in
                for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
                for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
            }
            family = UInt16(AF_INET6)
            high = h
            low = l
        default:
            return nil
        }
    }

    /// The numeric text, as `inet_ntop` writes it: `127.0.0.1`, `::1`.
    public var text: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let written: Bool
        if family == UInt16(AF_INET) {
            var a = in_addr(s_addr: UInt32(truncatingIfNeeded: low).bigEndian)
            written = unsafe inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count)) != nil
        } else {
            var a = in6_addr()
            unsafe withUnsafeMutableBytes(of: &a) { bytes in
                for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i))) }
                for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i))) }
            }
            written = unsafe inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count)) != nil
        }
        guard written else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
