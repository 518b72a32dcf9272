import ArgumentParser
import Glibc
import Logging
import MicroHTTPD
import QCOW2
import QCOW2API

/// The `qcowscoped` command line, and the daemon's life from parsing to exit.
struct DaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qcowscoped",
        abstract: "Serve read-only QCOW2 image inspection over HTTP.",
        discussion: """
            Options override the JSON config file (--config), which overrides the defaults. \
            SIGTERM or SIGINT stop accepting connections, let requests in flight finish (up to 10 s) and exit 0. \
            SIGHUP re-reads the TLS certificate, key and token file.
            """,
        version: ProductVersion.string)

    @Option(name: .long, help: "Directory holding the images to inspect.")
    var images: String?

    @Option(
        name: .long,
        help: "Address to listen on, IPv4:PORT, [IPv6]:PORT or unix:/PATH; repeat for several (default 127.0.0.1:8741).")
    var listen: [String] = []

    @Option(
        name: .long,
        help: ArgumentHelp(
            "JSON config file (CLI options override it).",
            discussion: "Keys: images, listen, log_level, threads, connection_limit, per_ip_connection_limit, "
                + "connection_timeout, tls_cert, tls_key, token_file, open_health, open_metrics, insecure_no_auth, access_log, "
                + "metrics_max_images.")
    )
    var config: String?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Where the access log goes: off, stderr or a FILE (appended to, opened again on SIGHUP).",
            discussion: "Default: stderr when --log-level is info or lower, else off. Lines are written in batches by a "
                + "thread of their own; when it falls behind, lines are dropped and counted "
                + "(qcowscope_access_log_dropped_lines_total), requests never wait."))
    var accessLog: String?

    @Option(name: .long, help: "Threads per listening socket; 0 means one per processor (default 0).")
    var threads: Int?

    @Option(name: .long, help: "Connections served at once per listening socket (default 1024).")
    var connectionLimit: Int?

    @Option(name: .customLong("per-ip-limit"), help: "Connections per client address; 0 means no limit (default 0).")
    var perIPLimit: Int?

    @Option(name: .long, help: "Seconds before an idle connection is closed; 0 means never (default 30).")
    var timeout: Int?

    @Option(name: .long, help: "PEM certificate chain: serve HTTPS (needs --tls-key; both re-read on SIGHUP).")
    var tlsCert: String?

    @Option(name: .long, help: "Unencrypted PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(
        name: .long,
        help: "PEM file of the CAs whose client certificates every HTTPS request must carry (needs --tls-cert; re-read on SIGHUP).")
    var tlsClientCa: String?

    @Option(name: .long, help: "File holding the bearer token every request must carry (re-read on SIGHUP).")
    var tokenFile: String?

    @Flag(name: .long, help: "Serve /healthz without the token.")
    var openHealth = false

    @Flag(name: .long, help: "Serve /metrics without the token.")
    var openMetrics = false

    @Flag(name: .long, help: "Allow listening on a non-loopback address without --token-file.")
    var insecureNoAuth = false

    @Option(
        name: .customLong("metrics-max-images"),
        help: "Images with their own series in /metrics (by name order); the rest are only counted (default 1000).")
    var metricsMaxImages: Int?

    @Option(
        name: .customLong("io-timeout"),
        help: "Seconds an answer that reads an image may take; past it 504 io-timeout, and an image whose read is stalled answers 503 image-stalled (default 5).")
    var ioTimeout: Double?

    @Option(
        name: .customLong("io-threads"),
        help: "Worker threads for file reads and parsing; stalled ones are replaced, up to 8 times as many (default: twice the CPUs it may run on, at least 2).")
    var ioThreads: Int?

    @Option(
        name: .customLong("check-memory"),
        help: "MiB of counters one refcount check may use (2 bytes per host cluster; default 256: files of up to 128M clusters).")
    var checkMemory: Int?

    /// `--scrub on|off`.
    enum Switch: String, ExpressibleByArgument, Sendable {
        case on, off
    }

    @Option(
        name: .customLong("socket-mode"),
        help: "Permissions of a unix:/PATH socket, octal (default 0660: its owner and group may connect).")
    var socketMode: String?

    @Option(
        name: .customLong("socket-group"),
        help: "Group (name or number) of a unix:/PATH socket (default: the daemon's group).")
    var socketGroup: String?

    @Option(
        name: .customLong("allowed-host"),
        help: "Another name (or NAME:PORT) clients may give in Host; repeat for several. Besides it: the listen addresses, localhost, 127.0.0.1 and [::1]; other names get 421.")
    var allowedHost: [String] = []

    @Option(
        name: .customLong("cors-origin"),
        help: "An origin (https://host[:port]) whose web pages may read the answers (CORS); repeat for several (default none).")
    var corsOrigin: [String] = []

    @Option(name: .long, help: "Check every image in the background and keep its verdict current: on or off (default on).")
    var scrub: Switch?

    @Option(
        name: .customLong("scrub-rate"),
        help: "Bytes of metadata per second the scrubber reads at most; 0 means no limit (default 33554432: 32 MiB/s).")
    var scrubRate: Int?

    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    static let shutdownGracePeriod = Duration.seconds(10)

    /// Parses the command line and runs the daemon; never returns.
    ///
    /// Every error before listening is one line on stderr (`qcowscoped: error: …`) and exit status 1.
    /// `--help` prints the help and exits 0.
    static func start() -> Never {
        let command: DaemonCommand
        do {
            command = try parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            let message = message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
            fail("\(message) (see --help)", code: exitCode(for: error).rawValue)
        }
        do {
            try command.serve()
        } catch {
            fail(error.description, code: 1)
        }
        Glibc.exit(0)
    }

    /// Raises the soft limit of open descriptors to the hard one (at most 1,048,576), as servers do: the
    /// parsed-image cache keeps a descriptor per image, and is sized by that limit.
    private static func raiseDescriptorLimit(_ logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = min(limit.rlim_max, 1 << 20)
        guard limit.rlim_cur < wanted else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = wanted
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("raised the open-descriptor limit from \(before) to \(wanted)")
        }
    }

    /// Prints `qcowscoped: error: <message>` on stderr and exits.
    private static func fail(_ message: String, code: Int32) -> Never {
        let line = Array("qcowscoped: error: \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        Glibc.exit(code == 0 ? 1 : code)
    }

    /// Resolves the configuration, listens, serves until SIGTERM or SIGINT, then shuts down gracefully.
    func serve() throws(StartupError) {
        let configuration = try DaemonConfiguration.resolve(self)
        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "qcowscoped")
        Self.raiseDescriptorLimit(logger)
        MallocArenas.limit(to: 2)
        let catalog: ImageCatalog
        do {
            // Every image a scrape exports stays parsed (and its descriptor open): with fewer, each scrape
            // parses again the images evicted since the last one. The descriptor limit bounds it further.
            catalog = try ImageCatalog(
                path: configuration.imagesDirectory, cacheCapacity: max(256, min(configuration.metricsMaxImages, 100_000) + 64))
        } catch {
            throw StartupError("images directory '\(configuration.imagesDirectory)': \(error.message)")
        }
        let ui = Dictionary(
            UIAssets.files.map { ($0.name, API.Asset(contentType: $0.contentType, body: Array($0.text.utf8))) },
            uniquingKeysWith: { a, _ in a })
        let executor = IOExecutor(
            threads: configuration.ioThreads, maxThreads: configuration.ioThreads * 8, stuckAfter: configuration.ioTimeout)
        let io = IOPolicy(executor: executor, timeout: configuration.ioTimeout)
        // Checks asked for over HTTP run on a pool of their own (they can take long: never on the
        // threads that answer requests); the scrubber runs its checks on its own thread.
        let checkPool = IOExecutor(threads: 1, maxThreads: 4, stuckAfter: .seconds(60), maxQueued: 64)
        var checkOptions = CheckOptions()
        checkOptions.memoryLimit = configuration.checkMemory
        catalog.checks.configure(launch: { checkPool.submit($0) }, options: checkOptions)
        var scrubSettings = Scrubber.Settings()
        scrubSettings.rate = configuration.scrubRate
        scrubSettings.options = checkOptions
        let scrubber = configuration.scrub ? Scrubber(catalog: catalog, settings: scrubSettings) : nil
        let accessLog = try AccessLogWriter(configuration.accessLog)
        let metrics = DaemonMetrics(
            catalog: catalog, tls: configuration.tlsFiles != nil, maxImages: configuration.metricsMaxImages, io: io,
            scrubber: scrubber, accessLog: accessLog)
        let access = configuration.token.map { token in
            API.AccessPolicy(
                accepts: { token.accepts(authorization: $0) }, openHealth: configuration.openHealth,
                openMetrics: configuration.openMetrics)
        }
        let api = API(
            catalog: catalog, openAPI: Array(OpenAPIDocument.text.utf8), ui: ui, metrics: { metrics.exposition() },
            access: access, io: io, hosts: configuration.hosts, cors: configuration.cors)
        let requiresClientCertificate = configuration.tlsFiles?.clientCA != nil
        // Not with client certificates: their verdict is checked per request by the Service.
        let hot = requiresClientCertificate
            ? nil : HotAnswers(api: api, metrics: metrics, accessLog: accessLog, token: configuration.token)
        let service = Service(
            api: api, metrics: metrics, accessLog: accessLog, token: configuration.token,
            requiresClientCertificate: requiresClientCertificate, hot: hot)
        var hotPath: HotPath? = nil
        if let hot { hotPath = { (request: borrowing HotRequest) -> PreparedResponse? in hot.answer(request) } }
        let notifier = SystemdNotifier.fromEnvironment()
        let server: HTTPServer
        do {
            server = try HTTPServer(
                configuration: configuration.server, errorLog: AccessLog.libraryLogger(logger),
                overloaded: service.overloaded, hot: hotPath, respond: service.respond)
        } catch {
            throw StartupError(error.description)
        }
        scrubber?.start()
        let signal = DaemonRuntime(
            server: server, configuration: configuration, notifier: notifier, logger: logger, accessLog: accessLog,
            drainTimeout: Self.shutdownGracePeriod
        ).run()
        logger.notice("received \(signal): finishing requests in flight, then stopping")
        scrubber?.stop()
        if !server.shutdown(gracePeriod: Self.shutdownGracePeriod) {
            logger.warning("requests still in flight after \(Self.shutdownGracePeriod) were abandoned")
        }
        accessLog.stop()
        logger.info("qcowscoped stopped")
    }
}
