import Glibc
import Logging
import MicroHTTPD
import QCOW2
import QCOW2API

/// The daemon's settings after merging command line, config file and defaults, all checked.
///
/// Precedence: a command-line option wins over the config file, which wins over the default.
/// `--listen` given at least once replaces the file's whole `listen` list.
struct DaemonConfiguration {
    /// The directory of images to serve (checked: exists, is a directory, can be listed).
    var imagesDirectory: String
    /// The log level of every handler.
    var logLevel: Logger.Level
    /// Where the access log goes.
    var accessLog: AccessLogWriter.Destination
    /// Addresses, limits and timeouts for the HTTP server (and the TLS credentials, when HTTPS is on).
    var server: HTTPServerConfiguration
    /// Where the TLS certificate and key come from (read again on SIGHUP); nil serves plain HTTP.
    var tlsFiles: TLSFiles?
    /// The bearer token clients must send; nil turns authentication off.
    var token: BearerToken?
    /// Whether `/healthz` is served without the token.
    var openHealth: Bool
    /// Whether `/metrics` is served without the token.
    var openMetrics: Bool
    /// Whether listening on a non-loopback address without a token was allowed explicitly.
    var insecureNoAuth: Bool
    /// Images with their own series in `/metrics`; the rest are only counted in `qcowscope_images`.
    var metricsMaxImages: Int
    /// The deadline of every answer that reads an image.
    var ioTimeout: Duration
    /// Worker threads for file reads and parsing.
    var ioThreads: Int
    /// Bytes of counters one refcount check may use.
    var checkMemory: UInt64
    /// Whether the background scrubber runs.
    var scrub: Bool
    /// Bytes of metadata per second the scrubber reads at most (0: no limit).
    var scrubRate: UInt64
    /// The `Host` names answered (421 for others).
    var hosts: HostPolicy
    /// The other origins whose pages may read the answers; nil: none.
    var cors: CORSPolicy?
    /// Whether the sockets came from systemd (`LISTEN_FDS`), in which case `listen` was ignored.
    var socketActivated: Bool { !server.listenDescriptors.isEmpty }

    /// The defaults shown in `deploy/qcowscoped.json`.
    enum Defaults {
        static let listen = ["127.0.0.1:8741"]
        static let logLevel = "info"
        /// 0 means one thread per online processor.
        static let threads = 0
        static let connectionLimit = 1024
        /// 0 means no per-IP limit.
        static let perIPConnectionLimit = 0
        static let connectionTimeout = 30
        static let openHealth = false
        static let openMetrics = false
        static let insecureNoAuth = false
        static let metricsMaxImages = 1000
        static let ioTimeout = 5.0
        static var ioThreads: Int { IOExecutor.defaultThreads }
        static let checkMemory = Int(CheckOptions.defaultMemoryLimit >> 20)
        static let scrub = true
        static let scrubRate = Int(Scrubber.Settings.defaultRate)
    }

    /// Merges the command line over the config file over the defaults, and checks every value.
    ///
    /// - Throws: ``StartupError`` naming the first bad value.
    static func resolve(_ command: DaemonCommand) throws(StartupError) -> DaemonConfiguration {
        let file =
            try command.config.map { path throws(StartupError) in try ConfigFile.load(path: path) } ?? ConfigFile()

        guard let images = command.images ?? file.images else {
            throw StartupError("no images directory given: use --images DIR or the config key 'images'")
        }
        try checkImagesDirectory(images)

        let levelText = command.logLevel ?? file.logLevel ?? Defaults.logLevel
        guard let level = Logger.Level(rawValue: levelText) else {
            throw StartupError(
                "invalid log level '\(levelText)' (expected trace, debug, info, notice, warning, error or critical)")
        }

        let accessText = command.accessLog ?? file.accessLog
        guard let accessLog = accessText.map({ AccessLogWriter.Destination($0) }) ?? (level <= .info ? .stderr : .off) else {
            throw StartupError("invalid access log '' (expected off, stderr or a file path)")
        }

        var tlsFiles: TLSFiles?
        switch (command.tlsCert ?? file.tlsCert, command.tlsKey ?? file.tlsKey) {
        case (nil, nil): tlsFiles = nil
        case (let certificate?, let key?):
            tlsFiles = TLSFiles(certificate: certificate, key: key, clientCA: command.tlsClientCa ?? file.tlsClientCA)
        case (_?, nil): throw StartupError("--tls-cert needs --tls-key (config key 'tls_key')")
        case (nil, _?): throw StartupError("--tls-key needs --tls-cert (config key 'tls_cert')")
        }
        if tlsFiles == nil, command.tlsClientCa ?? file.tlsClientCA != nil {
            throw StartupError("--tls-client-ca needs --tls-cert and --tls-key (client certificates are a TLS feature)")
        }
        let tls = try tlsFiles?.load()
        let token = try (command.tokenFile ?? file.tokenFile).map { path throws(StartupError) in
            try BearerToken(path: path)
        }
        let insecureNoAuth = command.insecureNoAuth || (file.insecureNoAuth ?? Defaults.insecureNoAuth)

        // Sockets passed by systemd replace the listen setting (which would bind the same addresses again).
        let descriptors = try SocketActivation.takeListenDescriptors()
        let listenTexts =
            descriptors.isEmpty ? (command.listen.isEmpty ? (file.listen ?? Defaults.listen) : command.listen) : []
        guard !listenTexts.isEmpty || !descriptors.isEmpty else { throw StartupError("no listen address given") }
        var addresses: [ListenAddress] = []
        for text in listenTexts {
            do {
                addresses.append(try ListenAddress(parsing: text))
            } catch {
                throw StartupError(error.description)
            }
        }

        let threads = try checked(command.threads ?? file.threads ?? Defaults.threads, "threads", 0...1024)
        let limit = try checked(
            command.connectionLimit ?? file.connectionLimit ?? Defaults.connectionLimit, "connection limit",
            1...1_000_000)
        let perIP = try checked(
            command.perIPLimit ?? file.perIPConnectionLimit ?? Defaults.perIPConnectionLimit,
            "per-IP connection limit", 0...1_000_000)
        let timeout = try checked(
            command.timeout ?? file.connectionTimeout ?? Defaults.connectionTimeout, "connection timeout", 0...86_400)

        let metricsMaxImages = try checked(
            command.metricsMaxImages ?? file.metricsMaxImages ?? Defaults.metricsMaxImages, "metrics max images",
            0...1_000_000)

        let ioSeconds = command.ioTimeout ?? file.ioTimeout ?? Defaults.ioTimeout
        guard ioSeconds.isFinite, ioSeconds >= 0.1, ioSeconds <= 3600 else {
            throw StartupError("invalid io timeout \(ioSeconds) (expected 0.1 to 3600 seconds)")
        }
        let ioThreads = try checked(command.ioThreads ?? file.ioThreads ?? Defaults.ioThreads, "io threads", 1...256)
        let checkMemory = try checked(command.checkMemory ?? file.checkMemory ?? Defaults.checkMemory, "check memory (MiB)", 1...1_048_576)
        let scrubRate = try checked(command.scrubRate ?? file.scrubRate ?? Defaults.scrubRate, "scrub rate (bytes per second)", 0...Int.max)
        let scrub = command.scrub.map { $0 == .on } ?? file.scrub ?? Defaults.scrub

        // --allowed-host given at least once replaces the file's list, as --listen does.
        let extraHosts = command.allowedHost.isEmpty ? (file.allowedHosts ?? []) : command.allowedHost
        for name in extraHosts where !HostPolicy.isValidName(name) {
            throw StartupError(
                "invalid allowed host '\(name.prefix(100))' (expected a DNS name, an IPv4 address or [IPv6], optionally :PORT)")
        }
        let modeText = command.socketMode ?? file.socketMode ?? "0660"
        guard (3...4).contains(modeText.count), modeText.allSatisfy({ ("0"..."7").contains($0) }),
            let socketMode = UInt32(modeText, radix: 8), socketMode <= 0o777
        else { throw StartupError("invalid socket mode '\(modeText.prefix(20))' (expected octal permissions such as 0660)") }
        var socketGroup: UInt32? = nil
        if let g = command.socketGroup ?? file.socketGroup {
            if let number = UInt32(g), g.allSatisfy(\.isASCII) {
                socketGroup = number
            } else if let entry = getgrnam(g) {
                socketGroup = entry.pointee.gr_gid
            } else {
                throw StartupError("unknown socket group '\(g.prefix(64))'")
            }
        }
        // A Unix-domain socket is reached through ssh -L on a local port of the client's choosing: there,
        // localhost and the loopback literals are accepted with any port (the names are still checked).
        func listener(_ a: ListenAddress) -> HostPolicy.Listener {
            a.family == .unix ? HostPolicy.Listener(host: "localhost", port: 0)
                : HostPolicy.Listener(host: a.family == .ipv6 ? "[\(a.host)]" : a.host, port: a.port)
        }
        var listeners = addresses.map(listener)
        for fd in descriptors {
            if let a = try? ListenAddress(boundTo: fd) { listeners.append(listener(a)) }
        }
        let origins = command.corsOrigin.isEmpty ? (file.corsOrigins ?? []) : command.corsOrigin
        for origin in origins where !CORSPolicy.isValidOrigin(origin) {
            throw StartupError("invalid CORS origin '\(origin.prefix(100))' (expected http(s)://host[:port], no path)")
        }

        var exposed = addresses.filter { !$0.isLoopback }.map(\.description)
        for fd in descriptors {
            if let address = try? ListenAddress(boundTo: fd), !address.isLoopback {
                exposed.append(address.description)
            }
        }
        if !exposed.isEmpty && token == nil && !insecureNoAuth {
            throw StartupError(
                "refusing to listen on \(exposed.joined(separator: ", ")) without authentication: give "
                    + "--token-file FILE (config key 'token_file'), or --insecure-no-auth to let anyone who can "
                    + "connect read the images")
        }

        // Each connection is a descriptor: keep the limit within half of RLIMIT_NOFILE so that image
        // files, the directory and the listing always have descriptors left (past the limit new
        // connections wait in the kernel's backlog; they are never dropped).
        var fdLimit = rlimit()
        var connections = limit
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &fdLimit) == 0, fdLimit.rlim_cur < rlim_t(Int32.max) {
            connections = min(limit, max(4, Int(clamping: fdLimit.rlim_cur) / 2))
        }
        var server = HTTPServerConfiguration(
            listenAddresses: addresses,
            listenDescriptors: descriptors,
            threadPoolSize: threads == 0 ? HTTPServerConfiguration.processorCount : threads,
            connectionLimit: connections,
            perIPConnectionLimit: perIP,
            connectionTimeoutSeconds: timeout,
            tls: tls)
        server.unixSocketMode = socketMode
        server.unixSocketGroup = socketGroup
        // Shed load before the connection limit: past 3/4 of it in progress at once, answer 503 + Retry-After.
        server.overloadThreshold = max(1, connections * 3 / 4)
        return DaemonConfiguration(
            imagesDirectory: images, logLevel: level, accessLog: accessLog, server: server, tlsFiles: tlsFiles, token: token,
            openHealth: command.openHealth || (file.openHealth ?? Defaults.openHealth),
            openMetrics: command.openMetrics || (file.openMetrics ?? Defaults.openMetrics),
            insecureNoAuth: insecureNoAuth, metricsMaxImages: metricsMaxImages,
            ioTimeout: .milliseconds(Int((ioSeconds * 1000).rounded())), ioThreads: ioThreads,
            checkMemory: UInt64(checkMemory) << 20, scrub: scrub, scrubRate: UInt64(scrubRate),
            hosts: HostPolicy(listeners: listeners, extra: extraHosts), cors: origins.isEmpty ? nil : CORSPolicy(origins: origins))
    }

    /// Returns `value` if it lies in `range`, else throws naming the setting.
    private static func checked(_ value: Int, _ name: String, _ range: ClosedRange<Int>) throws(StartupError) -> Int {
        guard range.contains(value) else {
            throw StartupError("invalid \(name) \(value) (expected \(range.lowerBound) to \(range.upperBound))")
        }
        return value
    }

    /// Checks that `path` is a directory this process can list.
    private static func checkImagesDirectory(_ path: String) throws(StartupError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw StartupError("images directory '\(path)': \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw StartupError("images directory '\(path)' is not a directory")
        }
        guard let directory = opendir(path) else {
            throw StartupError("images directory '\(path)' cannot be read: \(String(cString: strerror(errno)))")
        }
        closedir(directory)
    }
}
