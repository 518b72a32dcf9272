import Glibc

/// Listening sockets passed by systemd socket activation (sd_listen_fds(3) without libsystemd).
///
/// systemd sets `LISTEN_PID` to the service's process id and `LISTEN_FDS` to the number of sockets,
/// which are descriptors 3, 4, ... in the order of the `.socket` unit. The variables (and
/// `LISTEN_FDNAMES`) are removed from the environment once read, so no child process mistakes them for its own.
enum SocketActivation {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`).
    static let firstDescriptor: Int32 = 3
    /// More than this many passed sockets is taken as a broken environment.
    static let maxDescriptors = 64

    /// The passed descriptors, close-on-exec, or an empty array when the process was not socket-activated.
    ///
    /// Variables meant for another process (`LISTEN_PID` not this process) are ignored.
    /// - Throws: ``StartupError`` when `LISTEN_FDS` is not a number from 1 to 64.
    static func takeListenDescriptors() throws(StartupError) -> [Int32] {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pidText = environment("LISTEN_PID"), let countText = environment("LISTEN_FDS") else { return [] }
        guard let pid = Int32(pidText), pid == getpid() else { return [] }
        guard let count = Int(countText), (1...maxDescriptors).contains(count) else {
            throw StartupError("LISTEN_FDS='\(countText)' is not a number from 1 to \(maxDescriptors)")
        }
        let descriptors = (0..<Int32(count)).map { firstDescriptor + $0 }
        for fd in descriptors {
            let flags = fcntl(fd, F_GETFD)
            guard flags >= 0 else {
                throw StartupError("LISTEN_FDS=\(count) but descriptor \(fd) is not open")
            }
            _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
        }
        return descriptors
    }

    /// The value of an environment variable, or nil when unset.
    private static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
