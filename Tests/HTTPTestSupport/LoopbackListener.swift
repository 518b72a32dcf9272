import Glibc

/// A socket listening on 127.0.0.1 at a kernel-chosen port: to make a port "in use", or to hand the
/// daemon a pre-opened socket as systemd would.
package enum LoopbackListener {
    /// Opens the socket; the caller closes `fd`.
    package static func open(backlog: Int32 = 16) throws(HTTPTestClientError) -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPTestClientError(description: "socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw HTTPTestClientError(description: "cannot make a listening loopback socket: errno \(errno)")
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }
}
