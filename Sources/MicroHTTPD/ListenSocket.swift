import CMicroHTTPD
import Glibc

/// The socket calls that prepare listening sockets, each wrapped once with its errors made readable.
enum ListenSocket {
    /// Creates a TCP socket for `address` with `SO_REUSEADDR` (and `IPV6_V6ONLY` for IPv6) and binds it.
    ///
    /// The socket does not listen yet, so a failure on a later address leaves nothing reachable.
    /// - Returns: the bound descriptor, close-on-exec.
    /// - Throws: ``HTTPServerError`` with ``HTTPServerError/Code/addressInUse``,
    ///   ``HTTPServerError/Code/addressUnavailable``, ``HTTPServerError/Code/permissionDenied`` or
    ///   ``HTTPServerError/Code/socketFailed``.
    static func bind(_ address: ListenAddress, unixMode: UInt32 = 0o660, unixGroup: UInt32? = nil) throws(HTTPServerError) -> Int32 {
        if address.family == .unix { return try bindUnix(address, mode: unixMode, group: unixGroup) }
        let domain = address.family == .ipv6 ? AF_INET6 : AF_INET
        let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket", address, errno) }
        do throws(HTTPServerError) {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, address)
            if address.family == .ipv6 {
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, address)
            }
            let result = unsafe SocketAddress.withSockaddr(of: address) { unsafe Glibc.bind(fd, $0, $1) }
            guard result == 0 else { throw failure("bind", address, errno) }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// Creates a Unix-domain socket at `address.host` with permissions `mode` and group `group`.
    ///
    /// A socket file left by an earlier run (nothing answers on it) is replaced; a socket something
    /// answers on is `addressInUse`; a path that exists and is not a socket is refused. The mode and
    /// group are set before the socket listens, so nobody else can connect in between.
    static func bindUnix(_ address: ListenAddress, mode: UInt32, group: UInt32?) throws(HTTPServerError) -> Int32 {
        let path = address.host
        var st = stat()
        if unsafe lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw HTTPServerError(
                    code: .addressInUse, message: "cannot listen on \(address): the path exists and is not a socket")
            }
            guard unsafe cmhd_unix_socket_answers(path) == 0 else {
                throw HTTPServerError(code: .addressInUse, message: "cannot listen on \(address): another server answers on it")
            }
            _ = unsafe unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw failure("socket", address, errno) }
        guard unsafe cmhd_bind_unix(fd, path) == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw failure("bind", address, e)
        }
        if unsafe chmod(path, mode_t(mode & 0o777)) != 0 || (group.map { unsafe chown(path, uid_t.max, gid_t($0)) != 0 } ?? false) {
            let e = errno
            _ = Glibc.close(fd)
            _ = unsafe unlink(path)
            throw HTTPServerError(
                code: .permissionDenied, message: "cannot set the mode or group of \(address)", errno: e)
        }
        return fd
    }

    /// Starts listening on a bound descriptor and makes it non-blocking (MHD's pool threads share it).
    static func listen(_ fd: Int32, backlog: Int32, describedAs name: String) throws(HTTPServerError) {
        guard Glibc.listen(fd, backlog) == 0 else { throw failure("listen", name, errno) }
        try makeNonBlocking(fd, describedAs: name)
    }

    /// Sets `O_NONBLOCK` on a descriptor.
    static func makeNonBlocking(_ fd: Int32, describedAs name: String) throws(HTTPServerError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw failure("fcntl", name, errno) }
    }

    /// Checks that a descriptor handed over by a supervisor (socket activation) is a listening TCP socket.
    ///
    /// - Throws: ``HTTPServerError/Code/socketFailed`` naming the descriptor otherwise.
    static func requireListeningStream(_ fd: Int32) throws(HTTPServerError) {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return unsafe getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard let type = option(SO_TYPE) else {
            throw HTTPServerError(code: .socketFailed, message: "descriptor \(fd) is not a socket", errno: errno)
        }
        guard type == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1 else {
            throw HTTPServerError(code: .socketFailed, message: "descriptor \(fd) is not a listening TCP socket")
        }
    }

    /// The address a socket is bound to (`getsockname`); this is how port 0 becomes a real port.
    static func localAddress(_ fd: Int32) throws(HTTPServerError) -> ListenAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let decoded = unsafe withUnsafeMutablePointer(to: &storage) {
            unsafe $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                unsafe getsockname(fd, pointer, &length) == 0 ? unsafe SocketAddress.decode(pointer) : nil
            }
        }
        if decoded == nil, Int32(storage.ss_family) == AF_UNIX {
            var path = [CChar](repeating: 0, count: 110)
            if unsafe cmhd_unix_local_path(fd, &path, path.count) > 0 {
                let bytes = path.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
                return try ListenAddress(unixPath: String(decoding: bytes, as: UTF8.self))
            }
        }
        guard let decoded else {
            throw HTTPServerError(
                code: .socketFailed, message: "descriptor \(fd) is not a bound IPv4 or IPv6 socket", errno: errno)
        }
        return try ListenAddress(host: decoded.host, port: decoded.port)
    }

    /// Makes a listening socket refuse new connections without closing its descriptor (`shutdown(SHUT_RD)`).
    static func stopListening(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RD))
    }

    /// Closes a descriptor, ignoring errors (there is nothing useful to do about them).
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// `setsockopt` with an `Int32` value.
    private static func setOption(
        _ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ address: ListenAddress
    ) throws(HTTPServerError) {
        var value = value
        guard unsafe setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw failure("setsockopt", address, errno)
        }
    }

    /// An error for a failed call on `address`, classified by `code`.
    private static func failure(_ call: String, _ address: ListenAddress, _ code: Int32) -> HTTPServerError {
        failure(call, address.description, code)
    }

    /// An error for a failed call on the socket described by `name`, classified by `code`.
    private static func failure(_ call: String, _ name: String, _ code: Int32) -> HTTPServerError {
        let reason = unsafe String(cString: strerror(code)).lowercased()
        switch code {
        case EADDRINUSE:
            return HTTPServerError(
                code: .addressInUse, message: "cannot listen on \(name): address already in use", errno: code)
        case EADDRNOTAVAIL:
            return HTTPServerError(
                code: .addressUnavailable,
                message: "cannot listen on \(name): address not available on this host", errno: code)
        case EACCES:
            return HTTPServerError(
                code: .permissionDenied, message: "cannot listen on \(name): permission denied", errno: code)
        default:
            return HTTPServerError(
                code: .socketFailed, message: "cannot listen on \(name): \(call) failed: \(reason)", errno: code)
        }
    }
}
