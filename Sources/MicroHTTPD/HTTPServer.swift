import CMicroHTTPD
import Glibc
public import HTTPTypes
import Synchronization

/// An HTTP/1.1 server on libmicrohttpd that calls one synchronous handler for every request.
///
/// `init` binds every address first, then listens on all of them, then starts the daemons of each
/// socket: one MHD daemon (`MHD_USE_EPOLL`, plus `MHD_USE_TLS` when ``HTTPServerConfiguration/tls`` is
/// set) per thread of ``HTTPServerConfiguration/threadPoolSize``, each run by its own ``EventLoop``
/// rather than by libmicrohttpd's internal threads (whose epoll loop can hang, see there). A bind failure is thrown before any socket listens; on any
/// failure what was already opened or started is closed and stopped again. The handler runs on MHD's
/// threads, several at once; it must not block waiting for a Swift `Task`.
///
/// ``reloadTLS(_:drainTimeout:)`` swaps the certificate without closing any socket: it starts a second
/// daemon on each listening socket with the new certificate, then quiesces the old daemon, which finishes
/// its open connections and is stopped by ``stopDrainedDaemons()``.
///
/// Descriptors: the server keeps every listening socket open until ``stop()``, and hands each MHD daemon
/// its own duplicate (libmicrohttpd closes the descriptor it was given when a start fails, for example on
/// a rejected TLS key, which must not close a socket another daemon still serves).
///
/// Shut down with ``shutdown(gracePeriod:)``, or step by step with ``quiesce()``,
/// ``waitForInFlightRequests(timeout:)`` and ``stop()``. Dropping the last reference stops the server.
@safe public final class HTTPServer: Sendable {
    /// The addresses actually bound, in configuration order (listen addresses, then descriptors); real ports, never 0.
    public let boundAddresses: [ListenAddress]

    /// One MHD daemon and its event loop, with its own duplicate of the listening socket (closed after
    /// the daemon is stopped).
    @safe private struct Worker: @unchecked Sendable {
        let loop: EventLoop
        let fd: Int32
        var handle: OpaquePointer { loop.handle }
    }

    /// The daemons serving one socket (one per thread), their retained context and their TLS strings.
    @safe private struct Daemon: @unchecked Sendable {
        let workers: [Worker]
        /// Open connections over the workers.
        var connections: Int { workers.reduce(0) { unsafe $0 + Int(cmhd_current_connections($1.handle)) } }
        /// Retained once for MHD; released after every worker's `MHD_stop_daemon` returned.
        let context: Unmanaged<ServerContext>
        /// The PEM strings MHD was given; kept until the daemon is stopped.
        let tls: TLSMemory?
    }

    /// A quiesced daemon that still serves its open connections, and when it is stopped regardless.
    private struct Retiring: Sendable {
        let daemon: Daemon
        let deadline: ContinuousClock.Instant
    }

    /// The running daemons and lifecycle flags.
    @safe private struct State: ~Copyable {
        /// One daemon per socket, in ``boundAddresses`` order, accepting new connections.
        var daemons: [Daemon]
        /// Daemons replaced by a TLS reload, finishing their connections.
        var retiring: [Retiring] = []
        var quiesced = false
        var stopped = false
    }

    /// Daemon handles and lifecycle flags; ``stop()`` takes the handles out under the lock and stops them outside it.
    private let state: Mutex<State>
    /// The root context: the in-flight counter every daemon shares, and the log sink; released by ``stop()``.
    private let context: ServerContext
    /// The storage of the `cmhd_log_target` given to MHD_OPTION_EXTERNAL_LOGGER; freed by ``stop()``.
    private nonisolated(unsafe) let logTarget: UnsafeMutablePointer<cmhd_log_target>
    /// Limits and options every daemon is started with (also those started by a TLS reload).
    private let configuration: HTTPServerConfiguration
    /// The listening sockets, in ``boundAddresses`` order; closed by ``stop()``.
    private let sockets: [Int32]
    /// The Unix-domain socket files this server created, removed by ``stop()``.
    private let unixPaths: [String]

    /// Binds, listens and starts serving.
    ///
    /// - Parameters:
    ///   - configuration: addresses, limits and optional TLS credentials.
    ///   - errorLog: receives libmicrohttpd's error messages and wrapper warnings, one line each,
    ///     from any thread. The default drops them.
    ///   - overloaded: answers instead of `handler` while load is shed (requests in progress above
    ///     ``HTTPServerConfiguration/overloadThreshold``); the default is a bare 503 with `Retry-After`.
    ///   - handler: answers every request, on MHD's threads.
    /// - Throws: ``HTTPServerError`` for an invalid configuration, an address that cannot be bound
    ///   (``HTTPServerError/Code/addressInUse`` and friends), or a daemon that does not start
    ///   (``HTTPServerError/Code/startFailed``, for example a TLS key that does not match its certificate).
    public convenience init(
        configuration: HTTPServerConfiguration,
        errorLog: @escaping @Sendable (String) -> Void = { _ in },
        overloaded: @escaping HTTPHandler = HTTPServer.plainOverloaded,
        handler: @escaping HTTPHandler
    ) throws(HTTPServerError) {
        try self.init(configuration: configuration, errorLog: errorLog, overloaded: overloaded) { request, client, responder in
            let answer = handler(request, client)
            responder.respond(answer.head, body: answer.body)
        }
    }

    /// Binds, listens and starts serving with a handler that may answer later (see ``HTTPResponder``).
    ///
    /// The same as ``init(configuration:errorLog:overloaded:handler:)``, but `respond` gets each request's
    /// ``HTTPResponder`` and may keep it: the connection is suspended until it answers, holding no thread.
    /// `hot`, when given, is tried first for every `GET` and `HEAD` (see ``HotPath``).
    public init(
        configuration: HTTPServerConfiguration,
        errorLog: @escaping @Sendable (String) -> Void = { _ in },
        overloaded: @escaping HTTPHandler = HTTPServer.plainOverloaded,
        hot: HotPath? = nil,
        respond handler: @escaping DeferredHTTPHandler
    ) throws(HTTPServerError) {
        try configuration.validate()
        var sockets: [(fd: Int32, name: String)] = []
        func closeAll() { for socket in sockets { ListenSocket.close(socket.fd) } }
        var bound: [ListenAddress] = []
        var unixPaths: [String] = []
        do throws(HTTPServerError) {
            for address in configuration.listenAddresses {
                sockets.append(
                    (try ListenSocket.bind(address, unixMode: configuration.unixSocketMode, unixGroup: configuration.unixSocketGroup),
                        address.description))
                if address.family == .unix { unixPaths.append(address.host) }
            }
            for socket in sockets {
                try ListenSocket.listen(
                    socket.fd, backlog: Int32(configuration.listenBacklog), describedAs: socket.name)
            }
            for fd in configuration.listenDescriptors {
                sockets.append((fd, "descriptor \(fd)"))
                try ListenSocket.requireListeningStream(fd)
                try ListenSocket.makeNonBlocking(fd, describedAs: "descriptor \(fd)")
            }
            for socket in sockets { bound.append(try ListenSocket.localAddress(socket.fd)) }
        } catch {
            closeAll()
            for path in unixPaths { _ = unsafe unlink(path) }
            throw error
        }

        let context = ServerContext(
            handler: handler, overloaded: overloaded, scheme: configuration.tls == nil ? "http" : "https",
            errorLog: errorLog, uploadDiscardLimit: configuration.uploadDiscardLimit,
            overloadThreshold: configuration.overloadThreshold, asksClientCertificate: configuration.tls?.clientCAPEM != nil,
            perAddressLimit: configuration.perIPConnectionLimit, hotPath: hot)
        let rootPointer = unsafe Unmanaged.passRetained(context).toOpaque()
        let logTarget = UnsafeMutablePointer<cmhd_log_target>.allocate(capacity: 1)
        unsafe logTarget.initialize(to: cmhd_log_target(sink: mhdLogMessage, context: rootPointer))

        let tls = configuration.tls.map { TLSMemory($0) }
        var daemons: [Daemon] = []
        for (index, socket) in sockets.enumerated() {
            guard
                let daemon = unsafe Self.startDaemon(
                    socket: socket.fd, configuration: configuration, tls: tls, root: context, logTarget: logTarget)
            else {
                for daemon in daemons { Self.stopDaemon(daemon) }
                closeAll()
                for path in unixPaths { _ = unsafe unlink(path) }
                unsafe Unmanaged<ServerContext>.fromOpaque(rootPointer).release()
                unsafe logTarget.deinitialize(count: 1)
                unsafe logTarget.deallocate()
                let reason = tls == nil ? "" : " with TLS (certificate or key rejected; see libmicrohttpd's message)"
                throw HTTPServerError(
                    code: .startFailed, message: "libmicrohttpd could not start serving \(bound[index])\(reason)")
            }
            daemons.append(daemon)
        }
        self.boundAddresses = bound
        self.context = context
        unsafe self.logTarget = logTarget
        self.configuration = configuration
        self.sockets = sockets.map(\.fd)
        self.unixPaths = unixPaths
        self.state = Mutex(State(daemons: daemons))
    }

    deinit {
        stop()
    }

    /// The version of the libmicrohttpd library in use, for example `0.9.75`.
    /// The default overload answer: `503` with `Retry-After: 1` and no body.
    public static let plainOverloaded: HTTPHandler = { _, _ in
        (HTTPResponse(status: .serviceUnavailable, headerFields: [.retryAfter: "1", .cacheControl: "no-store"]), [])
    }

    public static var libraryVersion: String {
        unsafe MHD_get_version().map { unsafe String(cString: $0) } ?? "unknown"
    }

    /// Whether the server speaks HTTPS.
    public var usesTLS: Bool { configuration.tls != nil }

    /// Requests whose request line arrived and that are not completed (answered or abandoned) yet.
    public var inFlightRequests: Int { context.inFlightRequests }

    /// Requests whose connection is suspended, waiting for a deferred answer, over all daemons.
    public var waitingRequests: Int {
        state.withLock { state in
            let all = state.daemons + state.retiring.map(\.daemon)
            return all.reduce(0) { unsafe $0 + $1.context.takeUnretainedValue().suspended.count }
        }
    }

    /// Open client connections over all sockets, idle keep-alive ones included (`MHD_DAEMON_INFO_CURRENT_CONNECTIONS`).
    ///
    /// Connections still served by daemons that a TLS reload replaced are counted too.
    public var openConnections: Int {
        state.withLock { state in
            if state.stopped { return 0 }
            let current = state.daemons.reduce(0) { $0 + $1.connections }
            return state.retiring.reduce(current) { $0 + $1.daemon.connections }
        }
    }

    /// Daemons replaced by ``reloadTLS(_:drainTimeout:)`` that are not stopped yet.
    public var retiringDaemons: Int { state.withLock { $0.retiring.count } }

    /// Stops accepting new connections (`MHD_quiesce_daemon`); open connections are still served.
    ///
    /// New connection attempts are refused (the listening sockets are shut down). From now on every
    /// response carries `Connection: close`, so keep-alive clients go away after their current request.
    /// Calling it again, or after ``stop()``, does nothing.
    public func quiesce() {
        state.withLock { state in
            guard !state.quiesced, !state.stopped else { return }
            state.quiesced = true
            for daemon in state.daemons {
                unsafe daemon.context.takeUnretainedValue().startDraining()
                for worker in daemon.workers { _ = unsafe MHD_quiesce_daemon(worker.handle) }
            }
            // MHD no longer polls the sockets; on Linux shutting them down stops the kernel from
            // completing new handshakes, so clients are refused at once instead of hanging in the
            // backlog until `stop()`. The descriptors themselves are closed by `stop()`.
            for fd in sockets { ListenSocket.stopListening(fd) }
        }
    }

    /// Serves new connections with other TLS credentials, without closing any listening socket.
    ///
    /// For every socket a new daemon with `credentials` is started on the same descriptor; only when all
    /// started are the old daemons quiesced (they stop accepting, and their responses carry
    /// `Connection: close`). The old daemons keep serving the connections they have until these close,
    /// or until `drainTimeout` passed; call ``stopDrainedDaemons()`` now and then to stop them.
    /// If any new daemon fails to start, the ones already started are stopped and the old credentials
    /// stay in use.
    ///
    /// - Throws: ``HTTPServerError/Code/invalidConfiguration`` when the server does not use TLS or is
    ///   shutting down, ``HTTPServerError/Code/startFailed`` when libmicrohttpd rejects the credentials.
    public func reloadTLS(_ credentials: TLSCredentials, drainTimeout: Duration) throws(HTTPServerError) {
        try credentials.validate()
        guard usesTLS else {
            throw HTTPServerError(code: .invalidConfiguration, message: "the server was started without TLS")
        }
        guard (credentials.clientCAPEM != nil) == context.asksClientCertificate else {
            throw HTTPServerError(
                code: .invalidConfiguration, message: "adding or removing the client CA needs a restart, not a reload")
        }
        let shuttingDown = HTTPServerError(code: .invalidConfiguration, message: "the server is shutting down")
        guard state.withLock({ !$0.quiesced && !$0.stopped }) else { throw shuttingDown }
        let tls = TLSMemory(credentials)
        var started: [Daemon] = []
        for (index, fd) in sockets.enumerated() {
            guard
                let daemon = unsafe Self.startDaemon(
                    socket: fd, configuration: configuration, tls: tls, root: context, logTarget: logTarget)
            else {
                for daemon in started { Self.stopDaemon(daemon) }
                throw HTTPServerError(
                    code: .startFailed,
                    message: "libmicrohttpd rejected the new TLS certificate or key for \(boundAddresses[index]); "
                        + "still serving the previous one")
            }
            started.append(daemon)
        }
        let deadline = ContinuousClock.now.advanced(by: drainTimeout)
        let swapped = state.withLock { state -> Bool in
            guard !state.quiesced, !state.stopped else { return false }
            for old in state.daemons {
                unsafe old.context.takeUnretainedValue().startDraining()
                // The socket stays open and listening: the new daemon accepts on it from now on.
                for worker in old.workers { _ = unsafe MHD_quiesce_daemon(worker.handle) }
                state.retiring.append(Retiring(daemon: old, deadline: deadline))
            }
            state.daemons = started
            return true
        }
        if !swapped {
            for daemon in started { Self.stopDaemon(daemon) }
            throw shuttingDown
        }
    }

    /// Stops the daemons replaced by ``reloadTLS(_:drainTimeout:)`` that have no open connection left,
    /// or whose drain timeout passed (their remaining connections are closed).
    ///
    /// - Returns: how many replaced daemons are still running.
    @discardableResult
    public func stopDrainedDaemons() -> Int {
        let now = ContinuousClock.now
        let (due, remaining) = state.withLock { state -> ([Daemon], Int) in
            var due: [Daemon] = []
            var keep: [Retiring] = []
            for entry in state.retiring {
                if now >= entry.deadline || entry.daemon.connections == 0 {
                    due.append(entry.daemon)
                } else {
                    keep.append(entry)
                }
            }
            state.retiring = keep
            return (due, keep.count)
        }
        for daemon in due { Self.stopDaemon(daemon) }
        return remaining
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
    /// Then closes the listening sockets and releases the callback contexts.
    ///
    /// Calling it again does nothing.
    public func stop() {
        // Take the daemons out under the lock but stop them outside it: MHD_stop_daemon joins MHD's
        // threads, and a handler still running there must be able to read `openConnections`.
        let taken = state.withLock { state -> Taken? in
            guard !state.stopped else { return nil }
            state.stopped = true
            defer {
                state.retiring = []
                state.daemons = []
            }
            return Taken(daemons: state.retiring.map(\.daemon) + state.daemons)
        }
        guard let taken else { return }
        for daemon in taken.daemons { Self.stopDaemon(daemon) }
        for fd in sockets { ListenSocket.close(fd) }
        // The socket files this server made go with it (those systemd passed stay systemd's).
        for path in unixPaths { _ = unsafe unlink(path) }
        unsafe Unmanaged.passUnretained(context).release()
        unsafe logTarget.deinitialize(count: 1)
        unsafe logTarget.deallocate()
    }

    /// What ``stop()`` takes out of the lock to tear down.
    private struct Taken: Sendable {
        let daemons: [Daemon]
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

    /// Stops one daemon, closes its duplicate of the socket and releases its context (and its TLS strings,
    /// with the last reference).
    ///
    /// The daemon is quiesced first (a no-op if it already was), so libmicrohttpd hands the descriptor
    /// back instead of closing it: the one place it is closed is here.
    private static func stopDaemon(_ daemon: Daemon) {
        for worker in daemon.workers { _ = unsafe MHD_quiesce_daemon(worker.handle) }
        // libmicrohttpd must not be stopped with suspended connections: answer (and resume) them first.
        let answered = unsafe daemon.context.takeUnretainedValue().suspended.closeAll(
            answering: HTTPResponse(status: .serviceUnavailable, headerFields: [.retryAfter: "1", .connection: "close"]))
        if answered > 0 {
            // Give the daemon's threads a moment to send those answers before the connections close.
            var pause = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            _ = unsafe nanosleep(&pause, nil)
        }
        for worker in daemon.workers { stopWorker(worker) }
        unsafe daemon.context.release()
    }

    /// Ends a worker's loop, then stops its daemon on this thread and closes its socket duplicate.
    private static func stopWorker(_ worker: Worker) {
        worker.loop.stop()
        unsafe MHD_stop_daemon(worker.handle)
        ListenSocket.close(worker.fd)
    }

    /// Starts the daemons of one socket, one per thread, each on its own duplicate of the socket and
    /// with its own event loop; they share one context (a sibling of `root`).
    ///
    /// The connection limit is shared out among them as libmicrohttpd's thread pool does. When any start
    /// fails, the ones started are stopped and nil is returned.
    private static func startDaemon(
        socket: Int32, configuration: HTTPServerConfiguration, tls: TLSMemory?, root: ServerContext,
        logTarget: UnsafeMutablePointer<cmhd_log_target>
    ) -> Daemon? {
        let context = Unmanaged.passRetained(root.sibling())
        let threads = max(1, configuration.threadPoolSize)
        var workers: [Worker] = []
        for index in 0..<threads {
            // Limits of at least one connection each, the remainder to the first workers.
            let share = max(1, configuration.connectionLimit / threads + (index < configuration.connectionLimit % threads ? 1 : 0))
            guard
                let worker = unsafe startWorker(
                    socket: socket, connectionLimit: share, configuration: configuration, tls: tls, context: context,
                    root: root, logTarget: logTarget)
            else {
                for worker in workers { stopWorker(worker) }
                unsafe context.release()
                return nil
            }
            workers.append(worker)
        }
        unsafe context.takeUnretainedValue().suspended.setLoops(workers.map(\.loop))
        return unsafe Daemon(workers: workers, context: context, tls: tls)
    }

    /// Starts one MHD daemon in external-loop mode on a duplicate of a listening socket, and its ``EventLoop``.
    ///
    /// When the start fails libmicrohttpd has closed (or owns) the duplicate; it is never touched again.
    private static func startWorker(
        socket: Int32, connectionLimit: Int, configuration: HTTPServerConfiguration, tls: TLSMemory?,
        context: Unmanaged<ServerContext>, root: ServerContext, logTarget: UnsafeMutablePointer<cmhd_log_target>
    ) -> Worker? {
        let fd = fcntl(socket, F_DUPFD_CLOEXEC, 3)
        guard fd >= 0 else {
            root.errorLog("cannot duplicate listening socket \(socket): \(unsafe String(cString: strerror(errno)))")
            return nil
        }
        let contextPointer = unsafe context.toOpaque()
        // The logger must come first, or MHD warns that earlier options may log elsewhere.
        var options: [MHD_OptionItem] = unsafe [
            cmhd_option_logger(logTarget),
            cmhd_option_int(.LISTEN_SOCKET, Int(fd)),
            cmhd_option_int(.CONNECTION_LIMIT, connectionLimit),
            cmhd_option_int(.CONNECTION_TIMEOUT, configuration.connectionTimeoutSeconds),
            cmhd_option_int(.CONNECTION_MEMORY_LIMIT, configuration.connectionMemoryLimit),
            unsafe cmhd_option_uri_log(mhdRequestStarted, contextPointer),
            unsafe cmhd_option_notify_completed(mhdRequestCompleted, contextPointer),
            cmhd_option_identity_unescape(),
        ]
        if configuration.perIPConnectionLimit > 0 {
            unsafe options.append(cmhd_option_notify_connection(mhdConnectionNotified, contextPointer))
        }
        var flags = MHD_USE_EPOLL.rawValue | MHD_USE_ITC.rawValue | MHD_USE_ERROR_LOG.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue
        if let tls {
            flags |= MHD_USE_TLS.rawValue
            unsafe options.append(cmhd_option_pointer(.HTTPS_MEM_KEY, tls.key))
            unsafe options.append(cmhd_option_pointer(.HTTPS_MEM_CERT, tls.certificate))
            unsafe options.append(cmhd_option_pointer(.HTTPS_PRIORITIES, tls.priorities))
            if let trust = unsafe tls.trust { unsafe options.append(cmhd_option_pointer(.HTTPS_MEM_TRUST, trust)) }
        }
        unsafe options.append(cmhd_option_end())
        let accept: MHD_AcceptPolicyCallback? = configuration.perIPConnectionLimit > 0 ? mhdAcceptPolicy : nil
        let handle = unsafe options.withUnsafeBufferPointer { items in
            unsafe cmhd_start_daemon(
                UInt32(flags), 0, accept, contextPointer, mhdAccessHandler, contextPointer, items.baseAddress)
        }
        guard let handle = unsafe handle else { return nil }
        guard let loop = unsafe EventLoop(handle: handle) else {
            root.errorLog("cannot start an event loop thread: \(unsafe String(cString: strerror(errno)))")
            _ = unsafe MHD_quiesce_daemon(handle)
            unsafe MHD_stop_daemon(handle)
            ListenSocket.close(fd)
            return nil
        }
        return Worker(loop: loop, fd: fd)
    }
}

/// TLS credentials as the NUL-terminated C strings libmicrohttpd reads; the key is wiped when freed.
@safe final class TLSMemory: @unchecked Sendable {
    /// `MHD_OPTION_HTTPS_MEM_CERT`.
    let certificate: UnsafeMutablePointer<CChar>
    /// `MHD_OPTION_HTTPS_MEM_KEY`.
    let key: UnsafeMutablePointer<CChar>
    /// `MHD_OPTION_HTTPS_PRIORITIES`.
    let priorities: UnsafeMutablePointer<CChar>
    /// `MHD_OPTION_HTTPS_MEM_TRUST`: the client CAs, nil when no client certificate is asked for.
    let trust: UnsafeMutablePointer<CChar>?
    /// Bytes of `key` without its NUL, to wipe.
    private let keyLength: Int

    /// Copies validated credentials (no NUL bytes inside) into C memory.
    init(_ credentials: TLSCredentials) {
        func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<CChar> {
            let memory = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            for (index, byte) in bytes.enumerated() { unsafe memory[index] = CChar(bitPattern: byte) }
            unsafe memory[bytes.count] = 0
            return unsafe memory
        }
        unsafe certificate = copy(credentials.certificateChainPEM)
        unsafe key = copy(credentials.privateKeyPEM)
        unsafe priorities = copy(Array(credentials.priorities.utf8))
        unsafe trust = credentials.clientCAPEM.map { copy($0) }
        keyLength = credentials.privateKeyPEM.count
    }

    deinit {
        unsafe explicit_bzero(key, keyLength)
        unsafe certificate.deallocate()
        unsafe key.deallocate()
        unsafe priorities.deallocate()
        unsafe trust?.deallocate()
    }
}
