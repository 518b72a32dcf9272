import Glibc

/// Sends service state to systemd (`Type=notify`) as one datagram per message to `$NOTIFY_SOCKET`.
///
/// The protocol of sd_notify(3) without libsystemd: newline-separated `KEY=VALUE` lines (`READY=1`,
/// `STOPPING=1`, `STATUS=...`) in one `AF_UNIX` datagram. A socket name starting with `@` is in the abstract
/// namespace (the `@` becomes a NUL byte and the address has no terminating NUL).
struct SystemdNotifier: Sendable {
    /// The socket address text as found in the environment.
    let socketName: String

    /// The notifier for `$NOTIFY_SOCKET`, or nil when the daemon was not started by systemd with `Type=notify`.
    ///
    /// The variable is removed from the environment so that no child process inherits it.
    static func fromEnvironment() -> SystemdNotifier? {
        guard let value = getenv("NOTIFY_SOCKET") else { return nil }
        let name = String(cString: value)
        unsetenv("NOTIFY_SOCKET")
        guard name.hasPrefix("/") || name.hasPrefix("@") else { return nil }
        return SystemdNotifier(socketName: name)
    }

    /// Sends `state` (for example `READY=1\nSTATUS=serving`) in one datagram.
    ///
    /// - Returns: an error text, or nil when the datagram was sent.
    @discardableResult
    func send(_ state: String) -> String? {
        var path = Array(socketName.utf8)
        let abstract = path.first == UInt8(ascii: "@")
        if abstract { path[0] = 0 }
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { return "NOTIFY_SOCKET path is too long" }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() { raw[index] = byte }
        }
        // Abstract names are exactly as long as given; file names carry their terminating NUL.
        let length = MemoryLayout<sa_family_t>.size + path.count + (abstract ? 0 : 1)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { bytes in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, socklen_t(length))
                }
            }
        }
        guard sent == message.count else { return "sendto \(socketName): \(String(cString: strerror(errno)))" }
        return nil
    }
}
