import Glibc

/// Where and how an ``HTTPServer`` listens, and the limits it enforces.
///
/// The server runs its own libmicrohttpd daemons for each listening socket (one per thread, each with
/// its ``EventLoop``), so ``threadPoolSize``, ``connectionLimit`` and ``perIPConnectionLimit`` apply to
/// each socket separately.
public struct HTTPServerConfiguration: Sendable {
    /// Addresses to bind and listen on; port 0 picks a free port.
    public var listenAddresses: [ListenAddress]
    /// Descriptors of sockets that already listen (systemd socket activation).
    ///
    /// The server takes them over: it makes them non-blocking and closes them when it stops.
    public var listenDescriptors: [Int32]
    /// Threads serving each socket, each running one daemon's event loop; 1 means a single thread.
    public var threadPoolSize: Int
    /// Connections served at once per socket (`MHD_OPTION_CONNECTION_LIMIT`, shared out among the
    /// socket's event loops, one per thread, as libmicrohttpd's own pool does).
    ///
    /// At the limit libmicrohttpd stops accepting: new clients wait in the kernel's listen backlog
    /// until a connection closes (or they time out).
    public var connectionLimit: Int
    /// Connections per client IP address per socket; 0 means no limit. Counted over the socket's event
    /// loops together (``AddressLimit``): two connections from one address accepted at the same instant
    /// by two loops may both pass, one over the limit per other loop at most.
    public var perIPConnectionLimit: Int
    /// Seconds an idle connection stays open (`MHD_OPTION_CONNECTION_TIMEOUT`); 0 means forever.
    public var connectionTimeoutSeconds: Int
    /// Bytes of memory per connection for request line, headers and read buffer (`MHD_OPTION_CONNECTION_MEMORY_LIMIT`).
    ///
    /// Requests whose head does not fit are answered by libmicrohttpd itself (414 or 431).
    public var connectionMemoryLimit: Int
    /// Bytes of request body read and thrown away before answering early and closing the connection.
    ///
    /// Bodies are never buffered. Up to this many bytes are consumed so the connection stays usable;
    /// past it the handler is asked for its response at once and the connection closes after it.
    public var uploadDiscardLimit: Int
    /// The `listen` backlog of sockets the server binds itself.
    public var listenBacklog: Int
    /// Certificate and key for HTTPS on every socket (`MHD_USE_TLS`); nil serves plain HTTP.
    public var tls: TLSCredentials?
    /// Requests in progress (request line read, response not yet sent, over all sockets) above which new
    /// requests are answered `503 Service Unavailable` with `Retry-After` instead of queueing; 0 turns
    /// shedding off. Clients then back off instead of piling into a slow server.
    public var overloadThreshold: Int = 0

    /// The permission bits of the Unix-domain sockets the server creates (`unix:` addresses): who may
    /// connect is who may write the file. Default `0660`: the owner and the group.
    public var unixSocketMode: UInt32 = 0o660
    /// The group of those sockets; nil keeps the process's group.
    public var unixSocketGroup: UInt32? = nil

    /// The number of online processors, the default ``threadPoolSize``.
    public static var processorCount: Int {
        max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Creates a configuration; every limit has a default.
    public init(
        listenAddresses: [ListenAddress] = [],
        listenDescriptors: [Int32] = [],
        threadPoolSize: Int = HTTPServerConfiguration.processorCount,
        connectionLimit: Int = 1024,
        perIPConnectionLimit: Int = 0,
        connectionTimeoutSeconds: Int = 30,
        connectionMemoryLimit: Int = 32 * 1024,
        uploadDiscardLimit: Int = 64 * 1024,
        listenBacklog: Int = 128,
        tls: TLSCredentials? = nil
    ) {
        self.listenAddresses = listenAddresses
        self.listenDescriptors = listenDescriptors
        self.threadPoolSize = threadPoolSize
        self.connectionLimit = connectionLimit
        self.perIPConnectionLimit = perIPConnectionLimit
        self.connectionTimeoutSeconds = connectionTimeoutSeconds
        self.connectionMemoryLimit = connectionMemoryLimit
        self.uploadDiscardLimit = uploadDiscardLimit
        self.listenBacklog = listenBacklog
        self.tls = tls
    }

    /// Checks every value is in range and at least one socket is given.
    func validate() throws(HTTPServerError) {
        func invalid(_ message: String) -> HTTPServerError {
            HTTPServerError(code: .invalidConfiguration, message: message)
        }
        if listenAddresses.isEmpty && listenDescriptors.isEmpty {
            throw invalid("no listen address given")
        }
        if !(1...1024).contains(threadPoolSize) {
            throw invalid("thread pool size \(threadPoolSize) is not in 1...1024")
        }
        if !(1...1_000_000).contains(connectionLimit) {
            throw invalid("connection limit \(connectionLimit) is not in 1...1000000")
        }
        if !(0...1_000_000).contains(perIPConnectionLimit) {
            throw invalid("per-IP connection limit \(perIPConnectionLimit) is not in 0...1000000")
        }
        if !(0...86_400).contains(connectionTimeoutSeconds) {
            throw invalid("connection timeout \(connectionTimeoutSeconds) s is not in 0...86400")
        }
        if !(4096...(64 << 20)).contains(connectionMemoryLimit) {
            throw invalid("connection memory limit \(connectionMemoryLimit) is not in 4096...67108864 bytes")
        }
        if uploadDiscardLimit < 0 { throw invalid("upload discard limit \(uploadDiscardLimit) is negative") }
        if !(1...65535).contains(listenBacklog) { throw invalid("listen backlog \(listenBacklog) is not in 1...65535") }
        try tls?.validate()
    }
}
