import HTTPTestSupport
import Foundation
import Glibc
import ProcessTestSupport
import QCOW2TestSupport
import Synchronization
import Testing

// Operations of the real qcowscoped binary: systemd notify and socket activation, TLS with reload,
// bearer tokens, Prometheus metrics, the deploy/ files.

/// The repository root (three levels above this file).
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

/// A `qcowscoped` started the way systemd would: chosen environment, optionally a listening socket at fd 3.
final class OpsDaemon {
    /// The process id, 0 once reaped.
    private(set) var pid: pid_t
    /// Scratch directory with the captured stdout and stderr.
    let directory: String
    /// `http` or `https`, from the first `listening on` line.
    private(set) var scheme = ""
    /// The port of the first `listening on` line.
    private(set) var port: UInt16 = 0
    /// The exit status once reaped (128 + signal when killed by one).
    private(set) var exitStatus: Int32?

    /// Spawns the daemon and waits for its first `listening on` line (unless `waitForListening` is false).
    ///
    /// - Parameters:
    ///   - environment: variables added to (or, with a nil value, removed from) the test's environment.
    ///   - listenSocket: a listening socket passed as descriptor 3 with `LISTEN_FDS=1`, and `LISTEN_PID` set
    ///     to the daemon's own pid by a `/bin/sh` that then `exec`s the daemon, as systemd does.
    init(
        _ arguments: [String], environment: [String: String?] = [:], listenSocket: Int32? = nil,
        waitForListening: Bool = true
    ) throws {
        let binary = try DaemonHarness.binaryPath()
        directory = try DaemonHarness.makeTemporaryDirectory()
        var variables = ProcessInfo.processInfo.environment
        for name in ["NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { variables[name] = nil }
        for (name, value) in environment { variables[name] = value }
        var argv = [binary] + arguments
        var inherited: Int32 = -1
        if let listenSocket {
            variables["LISTEN_FDS"] = "1"
            argv = ["/bin/sh", "-c", "export LISTEN_PID=$$; exec \"$0\" \"$@\""] + argv
            // A copy above 2 that is not fd 3, so dup2 onto 3 always clears close-on-exec.
            inherited = fcntl(listenSocket, F_DUPFD_CLOEXEC, 10)
            guard inherited >= 0 else { throw DaemonHarnessError(description: "cannot duplicate the listen socket") }
        }
        defer { if inherited >= 0 { close(inherited) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, directory + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if inherited >= 0 { posix_spawn_file_actions_adddup2(&actions, inherited, 3) }
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, argv[0], &actions, nil, cArguments, cEnvironment)
        guard result == 0 else {
            throw DaemonHarnessError(description: "posix_spawn \(argv[0]): \(String(cString: strerror(result)))")
        }
        pid = child
        guard waitForListening else { return }
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let (scheme, port) = Self.listening(in: stderr) {
                self.scheme = scheme
                self.port = port
                return
            }
            if reap(blocking: false) {
                throw DaemonHarnessError(
                    description: "qcowscoped exited with \(exitStatus ?? -1) before listening:\n\(stderr)")
            }
            usleep(10_000)
        }
        throw DaemonHarnessError(description: "qcowscoped did not log a listening address:\n\(stderr)")
    }

    deinit {
        if pid != 0 {
            kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Everything the daemon wrote to stderr so far.
    var stderr: String {
        (try? String(contentsOfFile: directory + "/stderr", encoding: .utf8)) ?? ""
    }

    /// Sends a signal.
    func signal(_ number: Int32) {
        if pid != 0 { kill(pid, number) }
    }

    /// Waits up to 15 s for the process to exit; returns its status.
    func waitForExit() throws -> Int32 {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if reap(blocking: false) { return exitStatus ?? -1 }
            usleep(10_000)
        }
        throw DaemonHarnessError(description: "qcowscoped did not exit:\n\(stderr)")
    }

    /// Waits up to 10 s until stderr contains `text`.
    func waitForLog(_ text: String) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if stderr.contains(text) { return true }
            usleep(10_000)
        }
        return false
    }

    /// Collects the exit status if the process ended.
    private func reap(blocking: Bool) -> Bool {
        guard pid != 0 else { return true }
        var status: Int32 = 0
        guard waitpid(pid, &status, blocking ? 0 : WNOHANG) == pid else { return false }
        exitStatus = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        pid = 0
        return true
    }

    /// Scheme and port of the first complete `listening on SCHEME://HOST:PORT` line.
    private static func listening(in log: String) -> (String, UInt16)? {
        guard let range = log.range(of: "listening on ") else { return nil }
        let rest = log[range.upperBound...]
        guard let end = rest.firstIndex(of: "\n"), let separator = rest.range(of: "://"), separator.lowerBound < end,
            let colon = rest[..<end].lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)..<end])
        else { return nil }
        return (String(rest[..<separator.lowerBound]), port)
    }
}

/// External tools (openssl, curl, systemd-analyze) for these tests.
enum OpsTool {
    /// The path of `tool` on `PATH`, or nil.
    static func path(_ tool: String) -> String? { ChildProcess.locate(tool) }

    /// Runs `tool` to completion; returns its status, stdout and stderr.
    static func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        guard let path = path(tool) else {
            throw DaemonHarnessError(description: "\(tool) not found (Tests/Scripts/install-deps.sh installs it)")
        }
        let result = try ChildProcess.run(path, arguments, timeout: 60)
        return (result.signaled ? 128 + result.status : result.status, result.stdout, result.stderr)
    }

    /// Runs `tool` and throws unless it exits 0.
    @discardableResult
    static func check(_ tool: String, _ arguments: [String]) throws -> String {
        let result = try run(tool, arguments)
        guard result.status == 0 else {
            throw DaemonHarnessError(description: "\(tool) \(arguments.joined(separator: " ")): \(result.stderr)")
        }
        return result.stdout
    }

    /// `curl -sS` with extra arguments: exit status, body, and the `Subject:` lines of the TLS chain.
    static func curl(_ arguments: [String]) throws -> (status: Int32, body: String, subjects: [String]) {
        let result = try run("curl", ["-sS", "--max-time", "10", "-w", "\n%{certs}"] + arguments)
        let subjects = result.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("Subject:") }
        let body = result.stdout.components(separatedBy: "\n").first ?? ""
        return (result.status, body, subjects)
    }
}

/// A throw-away CA and server certificates (EC P-256, two days) made with openssl.
final class OpsPKI {
    /// Where every file lives.
    let directory: String
    /// The CA certificate clients trust.
    var ca: String { directory + "/ca.pem" }

    init() throws {
        directory = try DaemonHarness.makeTemporaryDirectory()
        try OpsTool.check(
            "openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                directory + "/ca.key", "-out", ca, "-days", "2", "-subj", "/CN=qcowscope-ops-ca",
            ])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: directory + "/leaf.ext", atomically: true, encoding: .utf8)
        try "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
            .write(toFile: directory + "/client.ext", atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Issues a certificate with common name `name`; returns the certificate and key paths.
    @discardableResult
    func issue(_ name: String, client: Bool = false) throws -> (certificate: String, key: String) {
        let base = directory + "/" + name
        try OpsTool.check(
            "openssl",
            [
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                base + ".key", "-out", base + ".csr", "-subj", "/CN=" + name,
            ])
        try OpsTool.check(
            "openssl",
            [
                "x509", "-req", "-in", base + ".csr", "-CA", ca, "-CAkey", directory + "/ca.key", "-CAcreateserial",
                "-out", base + ".pem", "-days", "2", "-extfile", directory + (client ? "/client.ext" : "/leaf.ext"),
            ])
        return (base + ".pem", base + ".key")
    }
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
final class NotifyListener {
    /// The value for `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    let name: String
    private let fd: Int32

    /// Binds a datagram socket at `name`; a leading `@` means the abstract namespace.
    init(name: String) throws {
        self.name = name
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(name.utf8)
        let abstract = path.first == UInt8(ascii: "@")
        if abstract { path[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() { raw[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (abstract ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard fd >= 0, bound == 0 else {
            throw DaemonHarnessError(
                description: "cannot bind notify socket \(name): \(String(cString: strerror(errno)))")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The next datagram as text, or nil after 10 s.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// Datagrams until one contains `text` (10 s per datagram); returns whether it came.
    func waitFor(_ text: String) -> Bool {
        for _ in 0..<10 {
            guard let message = receive() else { return false }
            if message.split(separator: "\n").contains(Substring(text)) { return true }
        }
        return false
    }
}

@Suite("qcowscoped operations: systemd, TLS, tokens, metrics, deploy files")
final class OpsTests {
    private var directories: [String] = []

    deinit {
        for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// A new temporary directory removed after the test.
    private func temporaryDirectory() throws -> String {
        let directory = try DaemonHarness.makeTemporaryDirectory()
        directories.append(directory)
        return directory
    }

    /// Images with known facts: clean (2 bitmaps, b0 1 MiB dirty), dirty-bit header with an in-use
    /// bitmap, 70 bitmaps (over the cap), an unreadable version 4 header, and a text file.
    private func imagesDirectory() throws -> String {
        let directory = try temporaryDirectory()
        func write(_ name: String, _ bytes: [UInt8]) throws {
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name))
        }
        try write("clean.qcow2", CraftedImages.baseline(bitmapCount: 2).build())
        var inUse = CraftedImages.baseline()
        inUse.bitmaps[0].flags |= ImageBuilder.Bitmap.inUse
        inUse.incompatibleFeatures = 1
        try write("inuse.qcow2", inUse.build())
        try write("many.qcow2", CraftedImages.baseline(bitmapCount: 70).build())
        try write("broken.qcow2", CraftedImages.version4.bytes)
        try write("notes.txt", Array("not an image\n".utf8))
        return directory
    }

    /// Writes a token file (mode 0600) and returns its path.
    private func tokenFile(_ token: String) throws -> String {
        let path = try temporaryDirectory() + "/token"
        try (token + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        return path
    }

    /// The value of the sample whose line starts with `series` (name and labels exactly), or nil.
    private func sample(_ exposition: String, _ series: String) -> Double? {
        for line in exposition.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    // MARK: Metrics

    /// Every `qcowscope_…` metric name in `text`.
    private func metricNames(in text: String) -> [String] {
        var names: [String] = []
        var rest = Substring(text)
        while let range = rest.range(of: "qcowscope_") {
            let name = rest[range.lowerBound...].prefix { $0 == "_" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }
            names.append(String(name))
            rest = rest[name.endIndex...]
        }
        return names.filter { $0 != "qcowscope_" && !$0.hasSuffix("_") }
    }

    @Test func metricsDescribeTheImagesAndTheRequests() throws {
        let token = "metrics-test-token-0123456789"
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--token-file", try tokenFile(token),
            "--open-metrics",
        ])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let auth = [("Authorization", "Bearer \(token)")]
        #expect(try client.request("GET", "/v1/images/clean.qcow2", headers: auth).status == 200)
        #expect(try client.request("GET", "/v1/images/clean.qcow2", headers: auth).status == 200)
        #expect(try client.request("GET", "/v1/images/absent.qcow2", headers: auth).status == 404)
        #expect(try client.request("GET", "/v1/images/clean.qcow2/bitmaps/b0/extents", headers: auth).status == 200)
        #expect(try client.request("GET", "/made/up/path-1234", headers: auth).status == 404)
        #expect(try client.request("GET", "/v1/images").status == 401)

        // Open metrics: no token needed, the text format 0.0.4.
        let scrape = try client.request("GET", "/metrics")
        #expect(scrape.status == 200)
        #expect(scrape.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let text = scrape.text
        #expect(text.contains("# TYPE qcowscope_images gauge"))
        #expect(text.contains("# HELP qcowscope_http_requests_total "))
        #expect(sample(text, #"qcowscope_images{status="ok"}"#) == 2)
        #expect(sample(text, #"qcowscope_images{status="findings"}"#) == 1)
        #expect(sample(text, #"qcowscope_images{status="unreadable"}"#) == 1)
        #expect(sample(text, #"qcowscope_image_status{image="inuse.qcow2",status="findings"}"#) == 1)
        #expect(sample(text, #"qcowscope_image_bitmaps{image="clean.qcow2"}"#) == 2)
        #expect(sample(text, #"qcowscope_bitmap_dirty_bytes{image="clean.qcow2",bitmap="b0"}"#) == 1_048_576)
        #expect(sample(text, #"qcowscope_bitmap_dirty_bytes{image="clean.qcow2",bitmap="b1"}"#) == 0)
        #expect(sample(text, #"qcowscope_bitmap_granularity_bytes{image="clean.qcow2",bitmap="b0"}"#) == 65536)
        #expect(sample(text, #"qcowscope_image_bitmaps_in_use{image="inuse.qcow2"}"#) == 1)
        #expect(sample(text, #"qcowscope_bitmap_in_use{image="inuse.qcow2",bitmap="b0"}"#) == 1)
        #expect(sample(text, #"qcowscope_image_header_dirty{image="inuse.qcow2"}"#) == 1)
        #expect(sample(text, #"qcowscope_image_header_dirty{image="clean.qcow2"}"#) == 0)
        #expect(sample(text, #"qcowscope_image_header_corrupt{image="inuse.qcow2"}"#) == 0)
        #expect((sample(text, #"qcowscope_image_findings{image="inuse.qcow2",severity="warning"}"#) ?? 0) >= 1)
        #expect(sample(text, #"qcowscope_image_findings{image="clean.qcow2",severity="error"}"#) == 0)
        #expect(sample(text, #"qcowscope_image_virtual_size_bytes{image="clean.qcow2"}"#) == 1_048_576)
        // The map's totals, as /allocation answers them; the three add up to the disk.
        let allocation = try client.request("GET", "/v1/images/clean.qcow2/allocation", headers: auth)
        let totals = try JSONSerialization.jsonObject(with: Data(allocation.text.utf8)) as? [String: Any]
        func figure(_ key: String) -> Double? { (totals?[key] as? NSNumber)?.doubleValue }
        let allocated = sample(text, #"qcowscope_image_allocated_bytes{image="clean.qcow2"}"#)
        let zero = sample(text, #"qcowscope_image_zero_bytes{image="clean.qcow2"}"#)
        let unallocated = sample(text, #"qcowscope_image_unallocated_bytes{image="clean.qcow2"}"#)
        #expect(allocated != nil && allocated == figure("allocated_bytes") && zero == figure("zero_bytes"))
        #expect(unallocated == figure("unallocated_bytes") && (allocated ?? 0) + (zero ?? 0) + (unallocated ?? 0) == 1_048_576)
        #expect(
            text.split(separator: "\n").contains {
                $0.hasPrefix(#"qcowscope_image_parse_error{image="broken.qcow2",kind=""#) && $0.hasSuffix(" 1.0")
            })
        // The bitmap cap: 70 bitmaps, 64 with their own series.
        #expect(sample(text, #"qcowscope_image_bitmaps{image="many.qcow2"}"#) == 70)
        #expect(sample(text, #"qcowscope_image_bitmaps_not_exported{image="many.qcow2"}"#) == 6)
        #expect(
            text.split(separator: "\n").filter { $0.hasPrefix(#"qcowscope_bitmap_in_use{image="many.qcow2","#) }.count
                == 64)
        #expect(!text.contains("notes.txt"))
        #expect(text.contains(#"qcowscope_build_info{version=""#) && text.contains(#"tls="false"} 1.0"#))

        // Requests by route pattern, never by raw path.
        #expect(
            sample(text, #"qcowscope_http_requests_total{endpoint="/v1/images/{image}",method="GET",status="200"}"#)
                == 2)
        #expect(
            sample(text, #"qcowscope_http_requests_total{endpoint="/v1/images/{image}",method="GET",status="404"}"#)
                == 1)
        #expect(
            sample(
                text,
                #"qcowscope_http_requests_total{endpoint="/v1/images/{image}/bitmaps/{bitmap}/extents",method="GET",status="200"}"#
            ) == 1)
        #expect(sample(text, #"qcowscope_http_requests_total{endpoint="other",method="GET",status="404"}"#) == 1)
        #expect(sample(text, #"qcowscope_http_requests_total{endpoint="/v1/images",method="GET",status="401"}"#) == 1)
        #expect(
            sample(text, #"qcowscope_http_request_duration_seconds_count{endpoint="/v1/images/{image}",status="200"}"#)
                == 2)
        #expect(
            sample(
                text,
                #"qcowscope_http_request_duration_seconds_bucket{endpoint="/v1/images/{image}",status="200",le="+Inf"}"#
            ) == 2)
        #expect(!text.contains("made/up") && !text.contains("absent.qcow2"))

        // The scrape itself is counted by the next one; HEAD works, other methods do not.
        let second = try client.request("GET", "/metrics").text
        #expect(sample(second, #"qcowscope_http_requests_total{endpoint="/metrics",method="GET",status="200"}"#) == 1)
        #expect(try client.request("HEAD", "/metrics").status == 200)
        #expect(try client.request("POST", "/metrics").status == 405)
        // The scrape is the one request in flight; every image lookup is a cache hit or a miss.
        #expect(sample(second, "qcowscope_http_requests_in_flight") == 1)
        #expect(second.contains("# TYPE qcowscope_cache_hits_total counter"))
        #expect((sample(second, "qcowscope_cache_misses_total") ?? 0) >= 4)
        #expect((sample(second, "qcowscope_cache_hits_total") ?? 0) >= 3)

        // Every series the dashboard queries is one the daemon exports.
        let dashboard = try String(contentsOfFile: repositoryRoot + "/deploy/grafana-dashboard.json", encoding: .utf8)
        let queried = Set(metricNames(in: dashboard))
        // The check's gauges (the check-age panel) appear once the scrubber has checked the images.
        var checked = second
        for _ in 0..<200 where !checked.contains("# TYPE qcowscope_image_check_age_seconds ") {
            usleep(50_000)
            checked = try client.request("GET", "/metrics").text
        }
        #expect(queried.count >= 10)
        for name in queried {
            let family = name.hasSuffix("_bucket") ? String(name.dropLast("_bucket".count)) : name
            #expect(checked.contains("# TYPE \(family) "), "dashboard queries \(name), which /metrics does not have")
        }

        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    /// The number of `not_ready` names `/checkpoints` gives for `image` (one page holds them all).
    private func notReadyNames(_ client: HTTPTestClient, _ image: String) throws -> Double? {
        let page = try client.request("GET", "/v1/images/\(image)/checkpoints?limit=1000")
        let doc = try JSONSerialization.jsonObject(with: Data(page.text.utf8)) as? [String: Any]
        return (doc?["not_ready"] as? NSNumber)?.doubleValue
    }

    @Test func metricsJudgeTheCheckpointsOfSmallChainsOnly() throws {
        // A scrape judges a chain of at most 64 bitmaps; 70 would keep it and the I/O threads busy:
        // that series is absent, never a guess, and /checkpoints still gives the verdicts.
        let daemon = try OpsDaemon(["--images", try imagesDirectory(), "--listen", "127.0.0.1:0"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let text = try client.request("GET", "/metrics").text
        let clean = sample(text, #"qcowscope_image_checkpoints_not_ready{image="clean.qcow2"}"#)
        let cleanNames = try notReadyNames(client, "clean.qcow2")
        #expect(clean != nil && clean == cleanNames)
        #expect(sample(text, #"qcowscope_image_bitmaps{image="many.qcow2"}"#) == 70)
        #expect(!text.contains(#"qcowscope_image_checkpoints_not_ready{image="many.qcow2"}"#))
        #expect(try notReadyNames(client, "many.qcow2") != nil)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test func seriesKeptBetweenScrapesFollowTheImages() throws {
        // Series follow the images from one scrape to the next: a removed image, a changed status and a bitmap
        // gone must leave no series behind, and a new image gets its own.
        let directory = try imagesDirectory()
        let daemon = try OpsDaemon(["--images", directory, "--listen", "127.0.0.1:0", "--scrub", "off"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let first = try client.request("GET", "/metrics").text
        #expect(sample(first, #"qcowscope_image_status{image="clean.qcow2",status="ok"}"#) == 1)
        #expect(sample(first, #"qcowscope_bitmap_in_use{image="clean.qcow2",bitmap="b1"}"#) != nil)
        #expect(first.contains(#"image="many.qcow2""#))
        // clean.qcow2 becomes the in-use image (findings, one bitmap), many.qcow2 goes, fresh.qcow2 comes.
        var inUse = CraftedImages.baseline()
        inUse.bitmaps[0].flags |= ImageBuilder.Bitmap.inUse
        inUse.incompatibleFeatures = 1
        try Data(inUse.build()).write(to: URL(fileURLWithPath: directory + "/clean.qcow2.new"))
        #expect(rename(directory + "/clean.qcow2.new", directory + "/clean.qcow2") == 0)
        #expect(unlink(directory + "/many.qcow2") == 0)
        try Data(CraftedImages.baseline().build()).write(to: URL(fileURLWithPath: directory + "/fresh.qcow2"))
        var second = ""
        let deadline = Date().addingTimeInterval(5)
        repeat {
            second = try client.request("GET", "/metrics").text
        } while !second.contains(#"image="fresh.qcow2""#) && Date() < deadline
        #expect(sample(second, #"qcowscope_image_status{image="clean.qcow2",status="findings"}"#) == 1)
        #expect(sample(second, #"qcowscope_image_status{image="clean.qcow2",status="ok"}"#) == nil)
        #expect(sample(second, #"qcowscope_bitmap_in_use{image="clean.qcow2",bitmap="b1"}"#) == nil)
        #expect(!second.contains(#"image="many.qcow2""#))
        #expect(sample(second, #"qcowscope_image_status{image="fresh.qcow2",status="ok"}"#) == 1)
        #expect(sample(second, #"qcowscope_images{status="findings"}"#) == 2)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test func metricsMaxImagesCapsThePerImageSeries() throws {
        // Sorted names: broken, clean, inuse, many; a cap of 2 exports broken and clean only.
        let daemon = try OpsDaemon(["--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--metrics-max-images", "2"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let text = try client.request("GET", "/metrics").text
        #expect(sample(text, "qcowscope_images_not_exported") == 2)
        #expect(sample(text, #"qcowscope_images{status="ok"}"#) == 2)
        #expect(sample(text, #"qcowscope_images{status="findings"}"#) == 1)
        #expect(sample(text, #"qcowscope_images{status="unreadable"}"#) == 1)
        #expect(sample(text, #"qcowscope_image_bitmaps{image="clean.qcow2"}"#) == 2)
        #expect(text.contains(#"qcowscope_image_parse_error{image="broken.qcow2""#))
        #expect(!text.contains("inuse.qcow2") && !text.contains("many.qcow2"))
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)

        // The default exports everything; a value out of range (flag or config key) stops start-up.
        let all = try OpsDaemon(["--images", try imagesDirectory(), "--listen", "127.0.0.1:0"])
        let allClient = try HTTPTestClient(host: "127.0.0.1", port: all.port)
        #expect(sample(try allClient.request("GET", "/metrics").text, "qcowscope_images_not_exported") == 0)
        allClient.close()
        let bad = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--metrics-max-images=-1"])
        #expect(bad.status != 0 && bad.stderr.contains("metrics max images"), "\(bad.stderr)")
        let config = try temporaryDirectory() + "/config.json"
        try #"{"metrics_max_images": 2000000}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let badFile = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--config", config])
        #expect(badFile.status != 0 && badFile.stderr.contains("metrics max images"), "\(badFile.stderr)")
    }

    // MARK: Tokens

    @Test func bearerTokenGuardsTheAPIAndReloadsOnSIGHUP() throws {
        let token = "first-token-abcdefghijklmnop"
        let path = try tokenFile(token)
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--token-file", path, "--open-health",
        ])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let missing = try client.request("GET", "/v1/images")
        #expect(missing.status == 401)
        #expect(missing.header("WWW-Authenticate") == #"Bearer realm="qcowscope""#)
        #expect(missing.header("Content-Type") == "application/problem+json")
        #expect(missing.text.contains(#""status":401"#) && missing.text.contains(#""instance":"/v1/images""#))
        let wrong = try client.request("GET", "/v1/images", headers: [("Authorization", "Bearer \(token)x")])
        #expect(wrong.status == 401)
        #expect(wrong.header("WWW-Authenticate") == #"Bearer realm="qcowscope", error="invalid_token""#)
        #expect(try client.request("GET", "/v1/images", headers: [("Authorization", "Basic \(token)")]).status == 401)
        #expect(try client.request("GET", "/v1/images", headers: [("Authorization", "Bearer \(token)")]).status == 200)
        #expect(try client.request("GET", "/v1/images", headers: [("Authorization", "bearer \(token)")]).status == 200)
        #expect(try client.request("GET", "/v1/images/clean.qcow2/findings").status == 401)
        #expect(try client.request("GET", "/v1/openapi.yaml").status == 401)
        #expect(try client.request("POST", "/v1/images").status == 401)
        // Opened explicitly: /healthz; not opened: /metrics.
        #expect(try client.request("GET", "/healthz").status == 200)
        #expect(try client.request("GET", "/metrics").status == 401)
        #expect(try client.request("GET", "/metrics", headers: [("Authorization", "Bearer \(token)")]).status == 200)

        // Rotation: SIGHUP re-reads the file.
        let rotated = "second-token-qrstuvwxyz012345"
        try (rotated + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("reloaded the bearer token"))
        #expect(try client.request("GET", "/v1/images", headers: [("Authorization", "Bearer \(token)")]).status == 401)
        #expect(
            try client.request("GET", "/v1/images", headers: [("Authorization", "Bearer \(rotated)")]).status == 200)
        // A broken file on reload keeps the current token.
        try "short\n".write(toFile: path, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("token reload failed"))
        #expect(
            try client.request("GET", "/v1/images", headers: [("Authorization", "Bearer \(rotated)")]).status == 200)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test func namedTokensNameTheClientInTheLogAndMetricsAndAreRemovedAtOnce() throws {
        let backup = "backup-token-abcdefghijklmnop"
        let dashboard = "dash-token-0123456789abcdefgh"
        let path = try tokenFile("# one token per client\nbackup:\(backup)\n\n  dashboard:\(dashboard)  ")
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--token-file", path,
        ])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        func status(_ token: String, _ target: String = "/v1/images/clean.qcow2") throws -> Int {
            try client.request("GET", target, headers: [("Authorization", "Bearer \(token)")]).status
        }
        #expect(try status(backup) == 200)
        #expect(try status(backup, "/v1/images/clean.qcow2/header") == 200)
        #expect(try status(dashboard) == 200)
        #expect(try status("backup:\(backup)") == 401)
        #expect(try status("backup") == 401)
        // The access log names the token; the token itself appears nowhere in the log.
        #expect(daemon.waitForLog("token=backup"))
        #expect(daemon.waitForLog("token=dashboard"))
        #expect(!daemon.stderr.contains(backup) && !daemon.stderr.contains(dashboard))
        let metrics = try client.request("GET", "/metrics", headers: [("Authorization", "Bearer \(dashboard)")]).text
        #expect(sample(metrics, #"qcowscope_http_requests_by_token_total{token="backup"}"#) == 2)
        #expect(sample(metrics, #"qcowscope_http_requests_by_token_total{token="dashboard"}"#) == 1)
        #expect(!metrics.contains(backup) && !metrics.contains(dashboard))

        // Rotation: the backup client's token is removed; after SIGHUP it stops working at once,
        // on a connection that was already open.
        try "dashboard:\(dashboard)\n".write(toFile: path, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("reloaded the bearer tokens from '\(path)' (dashboard)"))
        #expect(try status(backup) == 401)
        #expect(try status(dashboard) == 200)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)

        // Malformed files stop start-up with the line at fault.
        for (text, message) in [
            ("a:\(backup)\nb\(dashboard)\n", "line 2: expected name:token"),
            ("a:\(backup)\na:\(dashboard)\n", "line 2: the name 'a' is used twice"),
            ("bad name:\(backup)\n", "line 1: a name is 1 to 64"),
            ("a:short\n", "line 1: the token has 5 characters"),
        ] {
            let bad = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--token-file", try tokenFile(text)])
            #expect(bad.status != 0 && bad.stderr.contains(message), "\(bad.stderr)")
        }
    }

    @Test func tokenInTheQueryStringIsRefused() throws {
        let token = "query-token-abcdefghijklmnop"
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--token-file", try tokenFile(token),
        ])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        // RFC 6750 §2.3 URI query parameter: never accepted (it ends up in logs and Referer headers).
        for target in [
            "/v1/images?access_token=\(token)", "/v1/images/clean.qcow2?access_token=\(token)",
            "/metrics?access_token=\(token)", "/v1/images?token=\(token)",
        ] {
            let response = try client.request("GET", target)
            #expect(response.status == 401, "\(target)")
            #expect(response.header("WWW-Authenticate") == #"Bearer realm="qcowscope""#, "\(target)")
        }
        // The same token in the header is accepted, with or without a stray query parameter.
        let auth = [("Authorization", "Bearer \(token)")]
        #expect(try client.request("GET", "/v1/images", headers: auth).status == 200)
        #expect(try client.request("GET", "/v1/images?access_token=wrong", headers: auth).status != 401)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test func nonLoopbackListeningNeedsATokenOrAnExplicitOptOut() throws {
        let images = try imagesDirectory()
        for address in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8741"] {
            let refused = try DaemonHarness.runToExit(["--images", images, "--listen", address])
            #expect(refused.status == 1)
            let lines = refused.stderr.split(separator: "\n")
            #expect(lines.count == 1)
            #expect(lines.first?.hasPrefix("qcowscoped: error: refusing to listen on ") == true)
            #expect(
                lines.first?.contains("--token-file") == true && lines.first?.contains("--insecure-no-auth") == true)
        }
        // 192.0.2.1 (TEST-NET-1) is not on this host: once the check passes, the bind fails instead,
        // so these prove the check passed without exposing anything.
        let config = try temporaryDirectory() + "/c.json"
        try #"{"insecure_no_auth": true}"#.write(toFile: config, atomically: true, encoding: .utf8)
        for extra in [
            ["--insecure-no-auth"], ["--token-file", try tokenFile("a-token-of-twenty-chars")], ["--config", config],
        ] {
            let passed = try DaemonHarness.runToExit(["--images", images, "--listen", "192.0.2.1:8741"] + extra)
            #expect(passed.status == 1)
            #expect(passed.stderr.contains("address not available") && !passed.stderr.contains("refusing"))
        }
        // Token and TLS file errors are one line too.
        let short = try DaemonHarness.runToExit(["--images", images, "--token-file", try tokenFile("short")])
        #expect(short.status == 1 && short.stderr.contains("expected 16 to 4096"))
        let halfTLS = try DaemonHarness.runToExit(["--images", images, "--tls-cert", "/nonexistent.pem"])
        #expect(halfTLS.status == 1 && halfTLS.stderr.contains("--tls-cert needs --tls-key"))
    }

    // MARK: systemd

    @Test func socketActivationServesThePassedSocketAndNotifiesSystemd() throws {
        let (fd, port) = try LoopbackListener.open(backlog: 16)
        defer { close(fd) }
        let notify = try NotifyListener(name: "@qcowscope-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        // The listen address would fail to bind (not on this host) if it were not ignored.
        let daemon = try OpsDaemon(
            ["--images", try imagesDirectory(), "--listen", "192.0.2.1:8741"],
            environment: ["NOTIFY_SOCKET": notify.name], listenSocket: fd)
        #expect(daemon.port == port)
        #expect(daemon.stderr.contains("1 socket(s) passed by systemd"))
        #expect(notify.waitFor("READY=1"))
        let client = try HTTPTestClient(host: "127.0.0.1", port: port)
        let health = try client.request("GET", "/healthz")
        #expect(health.status == 200)
        #expect(health.text == "{\"status\":\"ok\"}\n")
        client.close()
        daemon.signal(SIGTERM)
        #expect(notify.waitFor("STOPPING=1"))
        #expect(try daemon.waitForExit() == 0)
    }

    @Test func socketActivationVariablesForAnotherProcessAreIgnored() throws {
        let (fd, port) = try LoopbackListener.open(backlog: 16)
        defer { close(fd) }
        let notify = try NotifyListener(name: try temporaryDirectory() + "/notify")
        // LISTEN_PID names another process: the daemon binds --listen itself.
        let daemon = try OpsDaemon(
            ["--images", try imagesDirectory(), "--listen", "127.0.0.1:0"],
            environment: ["LISTEN_PID": "1", "LISTEN_FDS": "1", "NOTIFY_SOCKET": notify.name])
        #expect(daemon.port != port && daemon.port != 0)
        #expect(!daemon.stderr.contains("passed by systemd"))
        #expect(notify.waitFor("READY=1"))
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test(.enabled(if: OpsTool.path("systemd-analyze") != nil, "systemd-analyze is not installed"))
    func unitsPassSystemdAnalyzeVerifyAndSecurity() throws {
        let directory = try temporaryDirectory()
        let binary = try DaemonHarness.binaryPath()
        let service = try String(contentsOfFile: repositoryRoot + "/deploy/qcowscoped.service", encoding: .utf8)
        try service.replacingOccurrences(of: "/usr/local/bin/qcowscoped", with: binary)
            .write(toFile: directory + "/qcowscoped.service", atomically: true, encoding: .utf8)
        for unit in ["qcowscoped.socket", "qcowscoped-unix.socket"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/deploy/" + unit, toPath: directory + "/" + unit)
        }
        let verify = try OpsTool.run(
            "systemd-analyze",
            ["verify", directory + "/qcowscoped.service", directory + "/qcowscoped.socket", directory + "/qcowscoped-unix.socket"])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(!verify.stderr.contains("qcowscoped"), "\(verify.stderr)")
        let security = try OpsTool.run(
            "systemd-analyze", ["security", "--offline=yes", directory + "/qcowscoped.service"])
        let marker = "Overall exposure level for qcowscoped.service: "
        let line = security.stdout.split(separator: "\n").first { $0.contains(marker) }
        let score = line.flatMap { Double($0.components(separatedBy: marker)[1].split(separator: " ")[0]) }
        print("systemd-analyze security --offline=yes qcowscoped.service: exposure \(score.map { "\($0)" } ?? "?")")
        #expect(score != nil, "\(security.stdout)\(security.stderr)")
        #expect((score ?? 10) <= 2.0)
    }

    @Test func unitFilesCarryTheRequiredSettings() throws {
        func settings(_ file: String) throws -> [String: [String]] {
            var result: [String: [String]] = [:]
            for line in try String(contentsOfFile: repositoryRoot + "/deploy/" + file, encoding: .utf8)
                .split(separator: "\n") where !line.hasPrefix("#") && line.contains("=")
            {
                let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                result[String(parts[0]), default: []].append(String(parts[1]))
            }
            return result
        }
        let service = try settings("qcowscoped.service")
        let required: [String: String] = [
            "Type": "notify", "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
            "PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "Restart": "on-failure",
            "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
            "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "RestrictNamespaces": "yes",
        ]
        for (key, value) in required {
            #expect(service[key]?.contains(value) == true, "\(key)=\(value)")
        }
        #expect(service["SystemCallFilter"]?.contains("@system-service") == true)
        #expect(service["MemoryMax"]?.first?.isEmpty == false)
        #expect(service["ReadOnlyPaths"]?.first == "/var/lib/qcowscope/images")
        #expect(service["ExecReload"]?.first?.contains("-HUP") == true)
        let socket = try settings("qcowscoped.socket")
        #expect(socket["ListenStream"]?.isEmpty == false)
        #expect(socket["Service"] == ["qcowscoped.service"])
    }

    // MARK: TLS

    @Test func tlsServesHTTPSAndSIGHUPSwapsTheCertificate() throws {
        let pki = try OpsPKI()
        let first = try pki.issue("qcowscope-one")
        let second = try pki.issue("qcowscope-two")
        let directory = try temporaryDirectory()
        let certificate = directory + "/cert.pem"
        let key = directory + "/key.pem"
        try FileManager.default.copyItem(atPath: first.certificate, toPath: certificate)
        try FileManager.default.copyItem(atPath: first.key, toPath: key)
        let notify = try NotifyListener(name: directory + "/notify")
        let daemon = try OpsDaemon(
            [
                "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--tls-cert", certificate, "--tls-key",
                key,
                "--open-metrics",
            ],
            environment: ["NOTIFY_SOCKET": notify.name])
        #expect(daemon.scheme == "https")
        #expect(notify.waitFor("READY=1"))
        let url = "https://127.0.0.1:\(daemon.port)"
        let health = try OpsTool.curl(["--cacert", pki.ca, url + "/healthz"])
        #expect(health.status == 0)
        #expect(health.body == "{\"status\":\"ok\"}")
        #expect(health.subjects.first?.contains("CN = qcowscope-one") == true)
        #expect(try OpsTool.curl(["http://127.0.0.1:\(daemon.port)/healthz"]).status != 0)
        #expect(try OpsTool.curl(["https://127.0.0.1:\(daemon.port)/healthz"]).status != 0)  // untrusted without the CA

        // New files, SIGHUP: new connections see the new certificate.
        for (from, to) in [(second.certificate, certificate), (second.key, key)] {
            try FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        daemon.signal(SIGHUP)
        #expect(notify.waitFor("RELOADING=1"))
        #expect(notify.waitFor("READY=1"))
        #expect(daemon.waitForLog("serving new connections with the certificate"))
        let after = try OpsTool.curl(["--cacert", pki.ca, url + "/healthz"])
        #expect(after.status == 0)
        #expect(after.subjects.first?.contains("CN = qcowscope-two") == true)

        // A broken certificate file on reload keeps the current one.
        try "not a certificate\n".write(toFile: certificate, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("TLS reload failed"))
        #expect(
            try OpsTool.curl(["--cacert", pki.ca, url + "/healthz"]).subjects.first?.contains("CN = qcowscope-two")
                == true)

        let metrics = try OpsTool.run("curl", ["-sS", "--cacert", pki.ca, url + "/metrics"])
        #expect(metrics.stdout.contains(#"tls="true"} 1.0"#))
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    // MARK: Host check and CORS

    /// Status line and header fields of a curl request (`-D -`), lowercased names.
    private func curlHead(_ arguments: [String]) throws -> (status: Int, fields: [String: String], body: String) {
        let r = try OpsTool.run("curl", ["-sS", "--max-time", "10", "-D", "-"] + arguments)
        let parts = r.stdout.components(separatedBy: "\r\n\r\n")
        let lines = (parts.first ?? "").components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, fields, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    @Test func foreignHostNamesGet421AndOnlyConfiguredOriginsGetCORS() throws {
        let token = "host-check-token-0123456789"
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--allowed-host", "vmhost1.example.com",
            "--cors-origin", "https://dash.example.com", "--token-file", try tokenFile(token),
        ])
        let url = "http://127.0.0.1:\(daemon.port)"
        let auth = ["-H", "Authorization: Bearer \(token)"]
        // DNS rebinding: the page's own name arrives in Host. Refused before the token is looked at.
        let rebound = try curlHead(["-H", "Host: evil.example.com:\(daemon.port)", url + "/v1/images"] + auth)
        #expect(rebound.status == 421)
        #expect(rebound.fields["content-type"] == "application/problem+json")
        #expect(rebound.body.contains("misdirected-request") && !rebound.body.contains("clean.qcow2"))
        #expect(try curlHead(["-H", "Host: evil.example.com", url + "/healthz"]).status == 421)
        #expect(try curlHead(["-H", "Host: evil.example.com", url + "/v1/images"]).status == 421)
        // The listen address, localhost and the allowed name are answered.
        #expect(try curlHead([url + "/v1/images"] + auth).status == 200)
        #expect(try curlHead(["-H", "Host: localhost:\(daemon.port)", url + "/v1/images/clean.qcow2"] + auth).status == 200)
        #expect(try curlHead(["-H", "Host: vmhost1.example.com:\(daemon.port)", url + "/v1/images"] + auth).status == 200)
        // (Other ports of these names are refused once the port is known: --listen :0 accepts any, see HostPolicyTests.)

        // CORS: a preflight needs no token; the allowed origin is named on the answer, others are not.
        let preflight = try curlHead([
            "-X", "OPTIONS", "-H", "Origin: https://dash.example.com", "-H", "Access-Control-Request-Method: GET",
            "-H", "Access-Control-Request-Headers: authorization", url + "/v1/images",
        ])
        #expect(preflight.status == 204)
        #expect(preflight.fields["access-control-allow-origin"] == "https://dash.example.com")
        #expect(preflight.fields["access-control-allow-headers"]?.lowercased().contains("authorization") == true)
        let read = try curlHead(["-H", "Origin: https://dash.example.com", url + "/v1/images/clean.qcow2"] + auth)
        #expect(read.status == 200 && read.fields["access-control-allow-origin"] == "https://dash.example.com")
        #expect(read.fields["access-control-expose-headers"]?.contains("ETag") == true && read.fields["vary"] == "Origin")
        let foreign = try curlHead(["-H", "Origin: https://evil.example.com", url + "/v1/images/clean.qcow2"] + auth)
        #expect(foreign.status == 200 && foreign.fields["access-control-allow-origin"] == nil)
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)

        // Without --cors-origin no answer carries CORS fields; bad values stop start-up with one line.
        let plain = try OpsDaemon(["--images", try imagesDirectory(), "--listen", "127.0.0.1:0"])
        let none = try curlHead(["-H", "Origin: https://dash.example.com", "http://127.0.0.1:\(plain.port)/v1/images"])
        #expect(none.status == 200 && none.fields["access-control-allow-origin"] == nil && none.fields["vary"] == nil)
        plain.signal(SIGTERM)
        #expect(try plain.waitForExit() == 0)
        let badHost = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--allowed-host", "bad host"])
        #expect(badHost.status != 0 && badHost.stderr.contains("invalid allowed host 'bad host'"), "\(badHost.stderr)")
        let config = try temporaryDirectory() + "/cors.json"
        try #"{"cors_origins": ["https://dash.example.com/path"]}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let badOrigin = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--config", config])
        #expect(badOrigin.status != 0 && badOrigin.stderr.contains("invalid CORS origin"), "\(badOrigin.stderr)")
    }

    // MARK: Client certificates

    @Test func httpsNeedsAClientCertificateTheConfiguredCASigned() throws {
        let pki = try OpsPKI()
        let server = try pki.issue("qcowscope-server")
        let client = try pki.issue("backup-client", client: true)
        let stranger = try OpsPKI()
        let foreign = try stranger.issue("stranger", client: true)
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--tls-cert", server.certificate, "--tls-key",
            server.key, "--tls-client-ca", pki.ca,
        ])
        let url = "https://127.0.0.1:\(daemon.port)/v1/images"
        func ask(_ extra: [String]) throws -> (status: Int32, code: String, body: String) {
            let r = try OpsTool.run(
                "curl", ["-sS", "--max-time", "10", "--cacert", pki.ca, "-w", "\n%{http_code}"] + extra + [url])
            let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (r.status, String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
        }
        let signed = try ask(["--cert", client.certificate, "--key", client.key])
        #expect(signed.status == 0 && signed.code == "200" && signed.body.contains("clean.qcow2"), "\(signed)")
        #expect(daemon.waitForLog("cert=CN=backup-client"))
        let none = try ask([])
        #expect(none.code == "403" && none.body.contains("client-certificate-required") && !none.body.contains("clean.qcow2"))
        // A certificate from another CA is refused: 403, or the handshake itself fails; never the images.
        let wrong = try ask(["--cert", foreign.certificate, "--key", foreign.key])
        #expect((wrong.code == "403" || wrong.status != 0) && !wrong.body.contains("clean.qcow2"), "\(wrong)")
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)

        let plain = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--tls-client-ca", pki.ca])
        #expect(plain.status != 0 && plain.stderr.contains("--tls-client-ca needs --tls-cert"), "\(plain.stderr)")
    }

    // MARK: Unix-domain socket

    @Test func aUnixSocketListensWithItsModeAndNamesThePeerUID() throws {
        let directory = try temporaryDirectory()
        let socket = directory + "/qcowscoped.sock"
        // A file left by an earlier run (nothing answers on it) is replaced.
        let stale = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in socket.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        Glibc.close(stale)
        let daemon = try OpsDaemon([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--listen", "unix:\(socket)", "--socket-mode", "0600",
        ])
        #expect(daemon.waitForLog("listening on unix:\(socket)"))
        var st = stat()
        #expect(stat(socket, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK && (st.st_mode & 0o777) == 0o600)
        // curl --unix-socket sends Host: localhost, which the Host check allows; no token is configured.
        let listing = try OpsTool.run("curl", ["-sS", "--max-time", "10", "--unix-socket", socket, "http://localhost/v1/images"])
        #expect(listing.status == 0 && listing.stdout.contains("clean.qcow2"), "\(listing.stderr)")
        let rebound = try OpsTool.run(
            "curl", ["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "-H", "Host: evil.example.com", "http://localhost/healthz"])
        #expect(rebound.stdout == "421")
        // Through ssh -L LOCALPORT:SOCKET the browser names 127.0.0.1 with a port of its own.
        let tunnel = try OpsTool.run(
            "curl", ["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "-H", "Host: 127.0.0.1:18741", "http://localhost/healthz"])
        #expect(tunnel.stdout == "200")
        #expect(daemon.waitForLog("uid=\(getuid())"))
        // Another daemon cannot take a socket something answers on.
        let second = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--listen", "unix:\(socket)"])
        #expect(second.status != 0 && second.stderr.contains("another server answers on it"), "\(second.stderr)")
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
        #expect(access(socket, F_OK) != 0)  // removed at exit

        let relative = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--listen", "unix:relative.sock"])
        #expect(relative.status != 0 && relative.stderr.contains("must be absolute"), "\(relative.stderr)")
        let mode = try DaemonHarness.runToExit(["--images", try imagesDirectory(), "--listen", "unix:\(socket)", "--socket-mode", "999"])
        #expect(mode.status != 0 && mode.stderr.contains("invalid socket mode"), "\(mode.stderr)")
    }

    // MARK: Sample configuration

    @Test func sampleConfigHasEveryKeyWithItsDefaultAndStarts() throws {
        let path = repositoryRoot + "/deploy/qcowscoped.json"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        let sample = try #require(object as? [String: Any])
        let expected: [String: String] = [
            "images": "\"/var/lib/qcowscope/images\"", "listen": "[\"127.0.0.1:8741\"]", "log_level": "\"info\"", "access_log": "\"stderr\"",
            "threads": "0", "connection_limit": "1024", "per_ip_connection_limit": "0", "connection_timeout": "30",
            "tls_cert": "null", "tls_key": "null", "token_file": "null", "open_health": "false",
            "open_metrics": "false", "insecure_no_auth": "false", "metrics_max_images": "1000", "io_timeout": "5",
            "io_threads": "null", "check_memory": "256", "scrub": "true", "scrub_rate": "33554432",
            "allowed_hosts": "[]", "cors_origins": "[]", "socket_mode": "\"0660\"", "socket_group": "null", "tls_client_ca": "null",
        ]
        #expect(Set(sample.keys) == Set(expected.keys))
        for (key, value) in expected {
            #expect(text.contains("\"\(key)\": \(value)"), "\(key) should be \(value)")
        }
        // The daemon accepts the file (the options override images and listen).
        let daemon = try OpsDaemon(["--config", path, "--images", try imagesDirectory(), "--listen", "127.0.0.1:0"])
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }
}
