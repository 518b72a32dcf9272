import CMicroHTTPD
import Glibc
import Synchronization

/// An HTTP/1.1 server on libmicrohttpd that calls one synchronous handler for every request.
///
/// `init` binds every address first, then listens on all of them, then starts one MHD daemon per
/// socket (`MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL` with a thread pool). A bind failure is thrown
/// before any socket listens; on any failure what was already opened or started is closed and stopped
/// again. The handler runs on MHD's threads, several at once; it must not block waiting for a Swift `Task`.
///
/// Shut down with ``shutdown(gracePeriod:)``, or step by step with ``quiesce()``,
/// ``waitForInFlightRequests(timeout:)`` and ``stop()``. Dropping the last reference stops the server.
@safe public final class HTTPServer: Sendable {
    /// The addresses actually bound, in configuration order (listen addresses, then descriptors); real ports, never 0.
    public let boundAddresses: [ListenAddress]

    /// The running daemons and the sockets handed back by `MHD_quiesce_daemon`.
    @safe private struct State: ~Copyable {
        var daemons: [OpaquePointer]
        var quiescedSockets: [Int32] = []
        var quiesced = false
        var stopped = false
    }

    /// Daemon handles and lifecycle flags; ``stop()`` takes the handles out under the lock and stops them outside it.
    private let state: Mutex<State>
    /// The context every callback sees; retained once for MHD, released by ``stop()``.
    private let context: ServerContext
    /// The storage of the `cmhd_log_target` given to MHD_OPTION_EXTERNAL_LOGGER; freed by ``stop()``.
    private nonisolated(unsafe) let logTarget: UnsafeMutablePointer<cmhd_log_target>

    /// Binds, listens and starts serving.
    ///
    /// - Parameters:
    ///   - configuration: addresses and limits.
    ///   - errorLog: receives libmicrohttpd's error messages and wrapper warnings, one line each,
    ///     from any thread. The default drops them.
    ///   - handler: answers every request, on MHD's threads.
    /// - Throws: ``HTTPServerError`` for an invalid configuration, an address that cannot be bound
    ///   (``HTTPServerError/Code/addressInUse`` and friends), or a daemon that does not start.
    public init(
        configuration: HTTPServerConfiguration,
        errorLog: @escaping @Sendable (String) -> Void = { _ in },
        handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse
    ) throws(HTTPServerError) {
        try configuration.validate()
        var sockets: [(fd: Int32, name: String)] = []
        func closeAll() { for socket in sockets { ListenSocket.close(socket.fd) } }
        var bound: [ListenAddress] = []
        do throws(HTTPServerError) {
            for address in configuration.listenAddresses {
                sockets.append((try ListenSocket.bind(address), address.description))
            }
            for socket in sockets {
                try ListenSocket.listen(
                    socket.fd, backlog: Int32(configuration.listenBacklog), describedAs: socket.name)
            }
            for fd in configuration.listenDescriptors {
                sockets.append((fd, "descriptor \(fd)"))
                try ListenSocket.makeNonBlocking(fd, describedAs: "descriptor \(fd)")
            }
            for socket in sockets { bound.append(try ListenSocket.localAddress(socket.fd)) }
        } catch {
            closeAll()
            throw error
        }

        let context = ServerContext(
            handler: handler, errorLog: errorLog, uploadDiscardLimit: configuration.uploadDiscardLimit)
        let contextPointer = unsafe Unmanaged.passRetained(context).toOpaque()
        let logTarget = UnsafeMutablePointer<cmhd_log_target>.allocate(capacity: 1)
        unsafe logTarget.initialize(to: cmhd_log_target(sink: mhdLogMessage, context: contextPointer))

        var daemons: [OpaquePointer] = unsafe []
        for (index, socket) in sockets.enumerated() {
            let daemon = unsafe Self.startDaemon(
                fd: socket.fd, configuration: configuration, context: contextPointer, logTarget: logTarget)
            guard let daemon = unsafe daemon else {
                for index in unsafe daemons.indices { unsafe MHD_stop_daemon(daemons[index]) }
                for later in sockets[index...] { ListenSocket.close(later.fd) }
                unsafe Unmanaged<ServerContext>.fromOpaque(contextPointer).release()
                unsafe logTarget.deallocate()
                throw HTTPServerError(
                    code: .startFailed, message: "libmicrohttpd could not start serving \(bound[index])")
            }
            unsafe daemons.append(daemon)
        }
        self.boundAddresses = bound
        self.context = context
        unsafe self.logTarget = logTarget
        self.state = unsafe Mutex(State(daemons: daemons))
    }

    deinit {
        stop()
    }

    /// Requests whose request line arrived and that are not completed (answered or abandoned) yet.
    public var inFlightRequests: Int { context.inFlightRequests }

    /// Open client connections over all sockets, idle keep-alive ones included (`MHD_DAEMON_INFO_CURRENT_CONNECTIONS`).
    public var openConnections: Int {
        state.withLock { state in
            if state.stopped { return 0 }
            return unsafe state.daemons.reduce(0) { unsafe $0 + Int(cmhd_current_connections($1)) }
        }
    }

    /// Stops accepting new connections (`MHD_quiesce_daemon`); open connections are still served.
    ///
    /// New connection attempts are refused (the listening sockets are shut down). From now on every
    /// response carries `Connection: close`, so keep-alive clients go away after their current request.
    /// Calling it again, or after ``stop()``, does nothing.
    public func quiesce() {
        context.startDraining()
        state.withLock { state in
            guard !state.quiesced, !state.stopped else { return }
            state.quiesced = true
            for index in unsafe state.daemons.indices {
                let fd = unsafe MHD_quiesce_daemon(state.daemons[index])
                guard fd >= 0 else { continue }
                // MHD no longer polls the socket; on Linux shutting it down stops the kernel from
                // completing new handshakes, so clients are refused at once instead of hanging in the
                // backlog until `stop()`. The descriptor itself is closed after MHD_stop_daemon.
                ListenSocket.stopListening(fd)
                state.quiescedSockets.append(fd)
            }
        }
    }

    /// Waits until no request is in flight, polling every 10 ms.
    ///
    /// - Returns: true when nothing is in flight, false when `timeout` passed first.
    @discardableResult
    public func waitForInFlightRequests(timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while context.inFlightRequests > 0 {
            if clock.now >= deadline { return false }
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            _ = unsafe nanosleep(&pause, nil)
        }
        return true
    }

    /// Stops every daemon (`MHD_stop_daemon`), closing open connections and abandoning requests in flight.
    ///
    /// Then closes the quiesced sockets and releases the callback context.
    ///
    /// Calling it again does nothing.
    public func stop() {
        // Take the daemons out under the lock but stop them outside it: MHD_stop_daemon joins MHD's
        // threads, and a handler still running there must be able to read `openConnections`.
        let taken = state.withLock { state -> Taken? in
            guard !state.stopped else { return nil }
            state.stopped = true
            defer { state.quiescedSockets = [] }
            return unsafe Taken(daemons: state.daemons, sockets: state.quiescedSockets)
        }
        guard let taken else { return }
        for index in unsafe taken.daemons.indices { unsafe MHD_stop_daemon(taken.daemons[index]) }
        for fd in taken.sockets { ListenSocket.close(fd) }
        unsafe Unmanaged.passUnretained(context).release()
        unsafe logTarget.deinitialize(count: 1)
        unsafe logTarget.deallocate()
    }

    /// What ``stop()`` takes out of the lock to tear down.
    @safe private struct Taken: @unchecked Sendable {
        let daemons: [OpaquePointer]
        let sockets: [Int32]
    }

    /// Quiesces, waits up to `gracePeriod` for in-flight requests, then stops.
    ///
    /// - Returns: true when every in-flight request finished before the stop.
    @discardableResult
    public func shutdown(gracePeriod: Duration) -> Bool {
        quiesce()
        let drained = waitForInFlightRequests(timeout: gracePeriod)
        stop()
        return drained
    }

    /// Starts one MHD daemon on a listening socket.
    private static func startDaemon(
        fd: Int32, configuration: HTTPServerConfiguration, context: UnsafeMutableRawPointer,
        logTarget: UnsafeMutablePointer<cmhd_log_target>
    ) -> OpaquePointer? {
        // The logger must come first, or MHD warns that earlier options may log elsewhere.
        var options: [MHD_OptionItem] = unsafe [
            cmhd_option_logger(logTarget),
            cmhd_option_int(.LISTEN_SOCKET, Int(fd)),
            cmhd_option_int(.CONNECTION_LIMIT, configuration.connectionLimit),
            cmhd_option_int(.CONNECTION_TIMEOUT, configuration.connectionTimeoutSeconds),
            cmhd_option_int(.CONNECTION_MEMORY_LIMIT, configuration.connectionMemoryLimit),
            unsafe cmhd_option_uri_log(mhdRequestStarted, context),
            unsafe cmhd_option_notify_completed(mhdRequestCompleted, context),
            cmhd_option_identity_unescape(),
        ]
        if configuration.perIPConnectionLimit > 0 {
            unsafe options.append(cmhd_option_int(.PER_IP_CONNECTION_LIMIT, configuration.perIPConnectionLimit))
        }
        if configuration.threadPoolSize > 1 {
            unsafe options.append(cmhd_option_int(.THREAD_POOL_SIZE, configuration.threadPoolSize))
        }
        unsafe options.append(cmhd_option_end())
        let flags =
            MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_EPOLL.rawValue | MHD_USE_ITC.rawValue
            | MHD_USE_ERROR_LOG.rawValue
        return unsafe options.withUnsafeBufferPointer { items in
            unsafe cmhd_start_daemon(UInt32(flags), 0, mhdAccessHandler, context, items.baseAddress)
        }
    }
}
