import HTTPTestSupport
import Foundation
import Glibc
import QCOW2API
import QCOW2TestSupport
import Synchronization
import Testing

// Live tests of the real `qcowscoped` binary over real HTTP on 127.0.0.1, against a temporary
// directory of real qemu-img images, byte-crafted malformed ones, a non-qcow2 file, symlinks and a FIFO.
//
// One daemon serves the shared directory for the whole suite. Tests that change files (ETag, stale
// cursor) get their own directory and daemon. After the last test the suite's scope trait
// (``ReadOnlyAudit``) checks that no file in the shared directory changed (sha256), that nothing was
// added or removed, that every image descriptor the daemon holds is O_RDONLY, that the access log
// never shows a 5xx, and that SIGTERM stops the shared daemon with status 0.

// MARK: - Shared fixture

/// The shared images directory, its daemon, and the sha256 of every file taken before the daemon started.
fileprivate final class LiveFixture: @unchecked Sendable {
    /// Makes the images and starts the daemon (once, on first use).
    static func get() throws -> LiveFixture {
        try state.withLock { slot in
            if slot == nil { slot = Result { try LiveFixture() } }
            return try slot!.get()
        }
    }

    /// The fixture if a test created it (the audit runs only then).
    static var created: LiveFixture? {
        state.withLock { slot in (try? slot?.get()) ?? nil }
    }

    private static let state = Mutex<Result<LiveFixture, any Error>?>(nil)

    let factory: QemuImageFactory
    let daemon: DaemonHarness
    /// The directory as the kernel reports it in /proc (symlinks resolved).
    let realDirectory: String
    /// sha256 of every regular file, by name, taken before the daemon ever ran.
    let baseline: [String: String]
    /// Every directory entry name at the start.
    let entries: [String]
    /// The names `/v1/images` must list: regular files beginning with `QFI\xfb` that resolve inside the
    /// directory (the inside symlink included), in byte order. Computed from the file system, not the daemon.
    let expectedListing: [String]
    /// The crafted images written, by file name.
    let craftedNames: [String]
    var port: UInt16 { daemon.port }

    private init() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-live-")
        factory = f
        _ = try StandardImages.makeAll(
            in: f, scenarios: [.bitmaps, .bitmapInUse, .snapshots, .backingOverlay], concurrency: 2)
        // 256 MiB, 512 B clusters, bitmap g 512: a 128-entry bitmap table, some entries serialized.
        try f.create("big.qcow2", size: 256 << 20, options: ["cluster_size=512"])
        try f.bitmapAdd("big.qcow2", "pages", granularity: 512)
        try f.bitmapAdd("big.qcow2", "coarse", granularity: 65536, disabled: true)
        try f.qemuIO(
            "big.qcow2",
            ["write -P 0xab 0 64k", "write -P 0xab 1M 4k", "write -P 0xab 3M 512", "write -P 0xab 100M 512",
             "write -P 0xab 200M 64k"])
        var crafted: [String] = []
        for c in CraftedImages.all {
            let name = "crafted-\(c.name).qcow2"
            try f.writeFile(name, bytes: c.bytes)
            crafted.append(name)
        }
        craftedNames = crafted
        try f.writeFile("notes.txt", bytes: Array("just some notes, not an image\n".utf8))
        // 4 KiB of bytes that are not qcow2, under a qcow2 name.
        try f.writeFile("garbage.qcow2", bytes: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
        try FileManager.default.createSymbolicLink(atPath: f.path("passwd.qcow2"), withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: f.path("link.qcow2"), withDestinationPath: "bitmaps.qcow2")
        try FileManager.default.createDirectory(atPath: f.path("subdir.qcow2"), withIntermediateDirectories: false)
        guard mkfifo(f.path("fifo.qcow2"), 0o644) == 0 else {
            throw DaemonHarnessError(description: "mkfifo failed: \(String(cString: strerror(errno)))")
        }
        realDirectory = URL(fileURLWithPath: f.directory).resolvingSymlinksInPath().path
        entries = try FileManager.default.contentsOfDirectory(atPath: f.directory).sorted()
        baseline = try Self.hashes(f, names: entries)
        expectedListing = entries.filter { Self.isListable(f.path($0), directory: f.directory) }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        daemon = try DaemonHarness(["--images", f.directory])
        // The scrubber runs (it must never change a file: the hashes are compared at the end), but its first
        // pass ends before the tests start, so that answers compared with each other carry the same verdicts.
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        defer { client.close() }
        let end = Date().addingTimeInterval(120)
        while Date() < end {
            let m = try client.request("GET", "/metrics").text
            func v(_ s: String) -> String? {
                m.split(separator: "\n").first { $0.hasPrefix(s + " ") }.map { String($0.split(separator: " ").last ?? "") }
            }
            if let passes = v("qcowscope_scrub_passes_total").flatMap(Double.init), passes >= 2,
                v("qcowscope_scrub_busy") == "0"
            {
                break
            }
            usleep(100_000)
        }
    }

    /// sha256 (QemuImageFactory.sha256) of every regular file among `names` (symlinks and FIFOs skipped).
    static func hashes(_ f: QemuImageFactory, names: [String]) throws -> [String: String] {
        let regular = names.filter { name in
            var st = stat()
            return lstat(f.path(name), &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        }
        let out = Mutex<[String: Result<String, any Error>]>([:])
        DispatchQueue.concurrentPerform(iterations: regular.count) { i in
            let r = Result { try f.sha256(regular[i]) }
            out.withLock { $0[regular[i]] = r }
        }
        return try out.withLock { $0 }.mapValues { try $0.get() }
    }

    /// Whether `path` resolves to a regular file inside `directory` that begins with `QFI\xfb`.
    static func isListable(_ path: String, directory: String) -> Bool {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let realDir = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        guard real.hasPrefix(realDir + "/") else { return false }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        // Issue 15.1: a name ending in .qcow2 (any case) is an image even when damaged; else the magic decides.
        if path.lowercased().hasSuffix(".qcow2") { return true }
        return Array(readFile(path, max: 4)) == [0x51, 0x46, 0x49, 0xfb]
    }

    /// Checks run once after every test of the suite (see ``ReadOnlyAudit``).
    func audit() throws {
        // Every descriptor the daemon holds on an image is read-only.
        let open = openFiles(pid: daemon.pid)
        let images = open.filter { $0.path.hasPrefix(realDirectory + "/") }
        #expect(!images.isEmpty, "the daemon keeps parsed images open: at least one image descriptor expected")
        for file in open where file.path.hasPrefix(realDirectory) {
            #expect(file.flags & O_ACCMODE == O_RDONLY, "\(file.path) open with flags 0\(String(file.flags, radix: 8))")
        }
        // Not one byte changed, nothing was created or removed.
        #expect(try FileManager.default.contentsOfDirectory(atPath: factory.directory).sorted() == entries)
        let after = try Self.hashes(factory, names: entries)
        #expect(after.count == baseline.count && after.count > 40)
        for (name, digest) in baseline {
            #expect(after[name] == digest, "\(name) changed: sha256 \(digest) -> \(after[name] ?? "missing")")
        }
        // The access log never shows a server error, then SIGTERM stops the daemon cleanly.
        #expect(try daemon.terminate() == 0)
        let log = daemon.stderr
        let served = log.split(whereSeparator: \.isNewline).filter { $0.contains(" remote=") }
        #expect(!served.isEmpty, "the access log should show the suite's requests")
        let serverErrors = served.filter { line in
            line.split(separator: " ").contains { $0.count == 3 && $0.first == "5" && Int($0) != nil }
        }
        #expect(serverErrors.isEmpty, "5xx in the access log: \(serverErrors.prefix(5))")
        factory.removeDirectory()
        try? FileManager.default.removeItem(atPath: daemon.directory)
    }
}

/// Runs ``LiveFixture/audit()`` once, after every test of the suite it is attached to.
fileprivate struct ReadOnlyAudit: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await function()
        try LiveFixture.created?.audit()
    }
}

// MARK: - Helpers

/// Reads up to `max` bytes of a file with plain open/read (no Foundation, which leaks under ASan).
fileprivate func readFile(_ path: String, max: Int = 1 << 20) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while bytes.count < max {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, Swift.min($0.count, max - bytes.count)) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[..<n]
    }
    return bytes
}

/// One open descriptor of a process: its target and its `fdinfo` flags.
fileprivate struct OpenFile {
    var fd: String
    var path: String
    var flags: Int32
}

/// The open descriptors of `pid` from `/proc/<pid>/fd` and `/proc/<pid>/fdinfo` (racy: closed ones are skipped).
fileprivate func openFiles(pid: pid_t) -> [OpenFile] {
    guard pid > 0, let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return [] }
    var out: [OpenFile] = []
    for fd in fds {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)") else {
            continue
        }
        let info = String(decoding: readFile("/proc/\(pid)/fdinfo/\(fd)", max: 4096), as: UTF8.self)
        guard let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags:") }),
            let flags = Int32(line.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8)
        else { continue }
        out.append(OpenFile(fd: fd, path: target, flags: flags))
    }
    return out
}

/// Percent-encodes bytes for a path segment or query value (unreserved characters stay).
fileprivate func percentEncode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    var out = ""
    for b in bytes {
        switch b {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a, 0x2d, 0x2e, 0x5f, 0x7e: out.unicodeScalars.append(Unicode.Scalar(b))
        default: out += String(format: "%%%02X", b)
        }
    }
    return out
}

/// Bytes from lowercase or uppercase hex.
fileprivate func hexBytes(_ hex: String) -> [UInt8] {
    let digits = Array(hex.utf8)
    return stride(from: 0, to: digits.count - 1, by: 2).compactMap {
        UInt8(String(decoding: digits[$0...($0 + 1)], as: UTF8.self), radix: 16)
    }
}

fileprivate extension HTTPTestResponse {
    /// The body as a JSON object, or nil.
    var object: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }

    /// The target of `Link: <...>; rel="next"`, or nil.
    var nextLink: String? {
        guard let link = header("Link"), link.hasSuffix(#">; rel="next""#), link.hasPrefix("<") else { return nil }
        return String(link.dropFirst().dropLast(#">; rel="next""#.count))
    }
}

/// A new connection to the daemon on `port`.
fileprivate func dial(_ port: UInt16, timeout: Int = 10) throws -> HTTPTestClient {
    try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: timeout)
}

/// Checks that `r` is an RFC 9457 problem with `status` at `instance`; returns its members.
@discardableResult
fileprivate func expectProblem(
    _ r: HTTPTestResponse, status: Int, instance: String, slug: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [String: Any] {
    #expect(r.status == status, "\(instance): \(r.status) \(r.text.prefix(300))", sourceLocation: sourceLocation)
    #expect(r.header("Content-Type") == "application/problem+json", "\(instance)", sourceLocation: sourceLocation)
    guard let o = r.object else {
        Issue.record("\(instance): body is not a JSON object: \(r.text.prefix(300))", sourceLocation: sourceLocation)
        return [:]
    }
    let type = o["type"] as? String ?? ""
    #expect(!type.isEmpty && (slug == nil || type == "urn:qcowscope:problem:" + slug!), "\(instance): type \(type)",
        sourceLocation: sourceLocation)
    #expect((o["title"] as? String)?.isEmpty == false, "\(instance): title", sourceLocation: sourceLocation)
    #expect(o["status"] as? Int == status, "\(instance): status member", sourceLocation: sourceLocation)
    #expect((o["detail"] as? String)?.isEmpty == false, "\(instance): detail", sourceLocation: sourceLocation)
    #expect(o["instance"] as? String == instance, "\(instance): instance \(o["instance"] ?? "nil")",
        sourceLocation: sourceLocation)
    return o
}

/// Whether two JSON values (from JSONSerialization) are equal.
fileprivate func jsonEqual(_ a: Any?, _ b: Any?) -> Bool {
    guard let a, let b else { return a == nil && b == nil }
    func canonical(_ v: Any) -> Data? { try? JSONSerialization.data(withJSONObject: [v], options: [.sortedKeys]) }
    return canonical(a) != nil && canonical(a) == canonical(b)
}

/// The first line of /etc/passwd (e.g. `root:x:0:0:...`), which must never appear in any answer.
fileprivate let passwdMarker: String = {
    let text = String(decoding: readFile("/etc/passwd", max: 4096), as: UTF8.self)
    return text.split(separator: "\n").first.map(String.init) ?? "root:x:0:0"
}()

// MARK: - The suite

@Suite("qcowscoped API (live HTTP)", ReadOnlyAudit())
struct DaemonAPITests {
    /// Every documented route of `RouteTable.all`, as the tests below exercise them.
    static let routes = [
        "/healthz", "/v1/openapi.yaml", "/v1/rules", "/v1/images", "/v1/images/{image}", "/v1/images/{image}/header",
        "/v1/images/{image}/extensions", "/v1/images/{image}/bitmaps", "/v1/images/{image}/bitmaps/{bitmap}",
        "/v1/images/{image}/bitmaps/{bitmap}/table", "/v1/images/{image}/bitmaps/{bitmap}/extents",
        "/v1/images/{image}/snapshots", "/v1/images/{image}/findings", "/v1/images/{image}/locks",
        "/v1/images/{image}/l1", "/v1/images/{image}/l1/{index}/l2", "/v1/images/{image}/map",
        "/v1/images/{image}/chain", "/v1/images/{image}/allocation", "/v1/images/{image}/check",
        "/v1/images/{image}/checkpoints", "/v1/images/{image}/checkpoints/{checkpoint}",
        "/v1/images/{image}/checkpoints/{checkpoint}/extents",
    ]

    fileprivate var fx: LiveFixture { get throws { try LiveFixture.get() } }

    @Test("the routes tested here are exactly RouteTable's documented routes and the served spec's paths")
    func routesAreCovered() throws {
        #expect(RouteTable.all.filter(\.documented).map(\.pattern) == Self.routes)

        let spec = try dial(try fx.port).request("GET", "/v1/openapi.yaml")
        let paths = spec.text.split(separator: "\n").filter { $0.hasPrefix("  /") && $0.hasSuffix(":") }
            .map { String($0.dropFirst(2).dropLast()) }
        #expect(paths.sorted() == Self.routes.sorted())
    }

    @Test("every route: GET 200 with its content type; HEAD has the same headers and no body", arguments: routes)
    func everyRoute(_ route: String) throws {
        let target = route.replacingOccurrences(of: "{image}", with: "bitmaps.qcow2")
            .replacingOccurrences(of: "{bitmap}", with: "b-enabled").replacingOccurrences(of: "{index}", with: "0")
            .replacingOccurrences(of: "{checkpoint}", with: "b-enabled")
        let client = try dial(try fx.port)
        let get = try client.request("GET", target)
        #expect(get.status == 200, "\(target): \(get.text.prefix(300))")
        #expect(get.header("X-Content-Type-Options") == "nosniff")
        if route == "/v1/openapi.yaml" {
            #expect(get.header("Content-Type") == "application/yaml")
            #expect(get.text.hasPrefix("openapi: 3."))
        } else {
            #expect(get.header("Content-Type") == "application/json")
            #expect((try? JSONSerialization.jsonObject(with: Data(get.body))) != nil, "\(target): not JSON")
        }
        #expect(get.header("Content-Length") == String(get.body.count))
        if route.contains("{image}") {
            let etag = try #require(get.header("ETag"))
            #expect(etag.count == 18 && etag.hasPrefix("\"") && etag.hasSuffix("\"")
                && etag.dropFirst().dropLast().allSatisfy(\.isHexDigit), "\(etag)")
        }
        let head = try client.request("HEAD", target)
        #expect(head.status == 200)
        for name in ["Content-Type", "Content-Length", "ETag", "Cache-Control", "Link"] {
            #expect(head.header(name) == get.header(name), "\(target): HEAD \(name)")
        }
        // HEAD sent no body: the next answer on the same connection starts right after HEAD's headers.
        let next = try client.request("GET", "/healthz")
        #expect(next.status == 200 && next.text == "{\"status\":\"ok\"}\n")
    }

    @Test("the documents carry the images' facts (bitmaps, in-use, snapshots, backing file, findings)")
    func documents() throws {
        let client = try dial(try fx.port)
        func object(_ target: String) throws -> [String: Any] {
            let r = try client.request("GET", target)
            #expect(r.status == 200, "\(target): \(r.text.prefix(300))")
            return try #require(r.object, "\(target)")
        }
        let summary = try object("/v1/images/bitmaps.qcow2")
        #expect(summary["name"] as? String == "bitmaps.qcow2" && summary["virtual_size"] as? Int == 4 << 20)
        let bitmaps = try #require(try object("/v1/images/bitmaps.qcow2/bitmaps")["bitmaps"] as? [[String: Any]])
        #expect(bitmaps.map { $0["name"] as? String } == ["b-enabled", "b-disabled", "b-512", "b-2g", "b-frozen"])
        let enabled = try object("/v1/images/bitmaps.qcow2/bitmaps/b-enabled")
        #expect(enabled["auto"] as? Bool == true && enabled["in_use"] as? Bool == false)
        #expect(enabled["granularity"] as? Int == 65536 && enabled["consistent"] as? Bool == true)
        // Writes at 0-64 KiB, 1 MiB, 2 MiB and 3.5 MiB: four 64 KiB granules.
        #expect(enabled["dirty_bytes"] as? Int == 4 * 65536)
        let disabled = try object("/v1/images/bitmaps.qcow2/bitmaps/b-disabled")
        #expect(disabled["auto"] as? Bool == false && disabled["dirty_bytes"] as? Int == 0)
        let extents = try object("/v1/images/bitmaps.qcow2/bitmaps/b-enabled/extents")["extents"] as? [[String: Any]]
        #expect(extents?.first?["start"] as? Int == 0 && extents?.first?["length"] as? Int == 65536
            && extents?.first?["dirty"] as? Bool == true)
        let clean = try object("/v1/images/bitmaps.qcow2/bitmaps/b-disabled/extents")["extents"] as? [[String: Any]]
        #expect(clean?.count == 1 && clean?.first?["dirty"] as? Bool == false)
        #expect(clean?.first?["length"] as? Int == 4 << 20)

        let inUse = try object("/v1/images/bitmap-in-use.qcow2/bitmaps/b-inuse")
        #expect(inUse["in_use"] as? Bool == true && inUse["consistent"] as? Bool == false)
        #expect((inUse["inconsistent_reason"] as? String)?.isEmpty == false)
        #expect(try object("/v1/images/bitmap-in-use.qcow2/bitmaps/b-inuse/extents")["consistent"] as? Bool == false)

        let snaps = try object("/v1/images/snapshots.qcow2/snapshots")
        #expect((snaps["snapshots"] as? [[String: Any]])?.map { $0["name"] as? String } == ["snap-one", "snap-two"])
        let overlay = try object("/v1/images/backing-overlay.qcow2")
        #expect(overlay["backing_file"] as? String == "backing-base.qcow2")
        #expect(overlay["backing_file_format"] as? String == "qcow2")
        let overlayHeader = try object("/v1/images/backing-overlay.qcow2/header")
        #expect(overlayHeader["backing_file"] as? String == "backing-base.qcow2")
        let d5 = try object("/v1/images/crafted-D5-granularity-8.qcow2/findings")
        let codes = (d5["findings"] as? [[String: Any]])?.compactMap { $0["code"] as? String } ?? []
        #expect(codes.contains("D5"), "\(codes)")
        // The symlink inside the directory is served, with the target's document.
        let viaLink = try client.request("GET", "/v1/images/link.qcow2/header")
        let direct = try client.request("GET", "/v1/images/bitmaps.qcow2/header")
        #expect(viaLink.status == 200 && viaLink.body == direct.body)
    }

    /// Error cases: target, method, status, problem slug, and the parameter a 400 names.
    static let errorCases: [(target: String, method: String, status: Int, slug: String, parameter: String?)] = [
        ("/v1/images/nope.qcow2", "GET", 404, "image-not-found", nil),
        ("/v1/images/nope.qcow2/bitmaps/b-enabled/table", "GET", 404, "image-not-found", nil),
        ("/v1/images/bitmaps.qcow2/bitmaps/nope", "GET", 404, "bitmap-not-found", nil),
        ("/v1/images/bitmaps.qcow2/bitmaps/nope/table", "GET", 404, "bitmap-not-found", nil),
        ("/v1/images/bitmaps.qcow2/bitmaps/nope/extents", "GET", 404, "bitmap-not-found", nil),
        ("/v1/images/bitmaps.qcow2/nope", "GET", 404, "not-found", nil),
        ("/v2/images", "GET", 404, "not-found", nil),
        ("/v1/images?limit=abc", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images?limit=-1", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images?limit=0", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images?limit=1001", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images?limit=", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images?limit=1e3", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images?cursor=" + String(repeating: "c", count: 256), "GET", 400, "invalid-parameter", "cursor"),
        ("/v1/images/big.qcow2/bitmaps/pages/table?offset=128", "GET", 400, "invalid-parameter", "offset"),
        ("/v1/images/big.qcow2/bitmaps/pages/table?offset=-3", "GET", 400, "invalid-parameter", "offset"),
        ("/v1/images/big.qcow2/bitmaps/pages/table?offset=x", "GET", 400, "invalid-parameter", "offset"),
        ("/v1/images/big.qcow2/bitmaps/pages/table?limit=0", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/big.qcow2/bitmaps/pages/table?limit=4097", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/big.qcow2/bitmaps/pages/table?offset=99999999999999999999999", "GET", 400, "invalid-parameter",
         "offset"),
        ("/v1/images/bitmaps.qcow2/bitmaps?limit=0", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/bitmaps.qcow2/bitmaps?limit=10001", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/bitmaps.qcow2/bitmaps?cursor=6", "GET", 400, "invalid-parameter", "cursor"),
        ("/v1/images/snapshots.qcow2/snapshots?offset=3", "GET", 400, "invalid-parameter", "offset"),
        ("/v1/images/snapshots.qcow2/snapshots?limit=10001", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/snapshots.qcow2/snapshots?limit=two", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?start=268435456", "GET", 400, "invalid-parameter", "start"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?start=-1", "GET", 400, "invalid-parameter", "start"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?length=0", "GET", 400, "invalid-parameter", "length"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?limit=0", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?limit=10001", "GET", 400, "invalid-parameter", "limit"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?cursor=abc", "GET", 400, "invalid-parameter", "cursor"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?cursor=5-x", "GET", 400, "invalid-parameter", "cursor"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?cursor=5-zzzzzzzzzzzzzzzz", "GET", 400, "invalid-parameter",
         "cursor"),
        ("/v1/images/big.qcow2/bitmaps/pages/extents?cursor=-", "GET", 400, "invalid-parameter", "cursor"),
        // Well-formed, but from no version of this file: the cursor is stale, not malformed.
        ("/v1/images/big.qcow2/bitmaps/pages/extents?cursor=65536-0123456789abcdef", "GET", 410, "stale-cursor", nil),
        ("/v1/images?limit=%zz", "GET", 400, "invalid-query", nil),
        ("/v1/images/bitmaps.qcow2/bitmaps/%zz", "GET", 400, "invalid-path", nil),
        ("/v1/images/notes.txt", "GET", 422, "unreadable-image", nil),
        ("/v1/images/garbage.qcow2/header", "GET", 422, "unreadable-image", nil),
        ("/v1/images/crafted-version-4.qcow2/bitmaps", "GET", 422, "unreadable-image", nil),
        ("/v1/images/crafted-header-length-100.qcow2/findings", "GET", 422, "unreadable-image", nil),
        ("/v1/images/bitmaps.qcow2", "POST", 405, "method-not-allowed", nil),
        ("/v1/images/bitmaps.qcow2/bitmaps/b-enabled", "PUT", 405, "method-not-allowed", nil),
        ("/v1/images/bitmaps.qcow2/bitmaps/b-enabled/table", "DELETE", 405, "method-not-allowed", nil),
        ("/v1/images", "PATCH", 405, "method-not-allowed", nil),
        ("/healthz", "OPTIONS", 405, "method-not-allowed", nil),
        ("/v1/openapi.yaml", "TRACE", 405, "method-not-allowed", nil),
        ("/v1/images/nope.qcow2", "POST", 405, "method-not-allowed", nil),
    ]

    @Test("errors are problem+json with type/title/status/detail/instance", arguments: errorCases.indices)
    func errors(_ index: Int) throws {
        let c = Self.errorCases[index]
        let client = try dial(try fx.port)
        let r = try client.request(c.method, c.target, body: c.method == "GET" ? [] : Array("x=1".utf8))
        let path = String(c.target.prefix { $0 != "?" })
        let o = expectProblem(r, status: c.status, instance: path, slug: c.slug)
        if let parameter = c.parameter {
            #expect(o["parameter"] as? String == parameter, "\(c.target)")
            #expect((o["detail"] as? String)?.contains("'\(parameter)'") == true, "\(c.target): \(o["detail"] ?? "")")
        }
        if c.status == 405 {
            #expect(r.header("Allow") == "GET, HEAD")
        }
        if c.status == 422 {
            let error = try #require(o["error"] as? [String: Any], "\(c.target): no parser error")
            let message = try #require(error["message"] as? String)
            #expect(!message.isEmpty && (error["kind"] as? String)?.isEmpty == false)
            #expect((error["structure"] as? String)?.hasPrefix("header") == true, "\(error)")
            #expect((o["detail"] as? String)?.contains(message) == true)
        }
        // HEAD of an error: same status and headers, no body (the next answer parses).
        if c.method == "GET" {
            let head = try client.request("HEAD", c.target)
            #expect(head.status == c.status && head.header("Content-Length") == r.header("Content-Length"))
            #expect(try client.request("GET", "/healthz").text == "{\"status\":\"ok\"}\n")
        }
    }

    /// Traversal attempts; every one must be a 404 that shows nothing of /etc/passwd.
    static let traversals = [
        "/v1/images/..", "/v1/images/%2e%2e", "/v1/images/%2E%2E/header", "/v1/images/.%2e/header",
        "/v1/images/%2F", "/v1/images/..%2F..%2Fetc%2Fpasswd", "/v1/images/..%2F..%2F..%2F..%2Fetc%2Fpasswd/header",
        "/v1/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/v1/images/%2Fetc%2Fpasswd", "/v1/images/%2fetc%2fpasswd/header",
        "/v1/images/../../../../etc/passwd", "/v1/images/%2e%2e/%2e%2e/etc/passwd", "/v1/images/..%5C..%5Cetc%5Cpasswd",
        "/v1/images/%252e%252e%252fetc%252fpasswd", "/v1/images/passwd.qcow2", "/v1/images/passwd.qcow2/header",
        "/v1/images/passwd.qcow2/findings", "/v1/images/bitmaps.qcow2%00", "/v1/images/bitmaps.qcow2%00/header",
        "/v1/images/%00", "/v1/images/bitmaps.qcow2%2F..%2F..%2Fetc%2Fpasswd", "/v1/images/.", "/v1/images/%2e",
        "/v1/images/subdir.qcow2", "/v1/images/fifo.qcow2", "/v1/images/fifo.qcow2/header",
        "/v1/images//header", "/v1/images/bitmaps.qcow2/bitmaps/../../../etc/passwd",
    ]

    @Test("traversal over real HTTP: 404, never any content of /etc/passwd", arguments: traversals)
    func traversal(_ target: String) throws {
        let client = try dial(try fx.port, timeout: 5)
        let r = try client.request("GET", target)
        expectProblem(r, status: 404, instance: target)
        #expect(!r.text.contains(passwdMarker) && !r.text.contains("root:x:0") && !r.text.contains("/bin/"))
    }

    /// Requests no client library would send; none may get a 5xx or stop the daemon.
    static let garbage: [(name: String, bytes: [UInt8])] = {
        func request(_ head: String, _ headers: String = "") -> [UInt8] {
            Array("\(head) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)\r\n".utf8)
        }
        func get(_ target: String) -> [UInt8] { request("GET " + target) }
        func get(raw prefix: String, _ bytes: [UInt8]) -> [UInt8] {
            Array("GET \(prefix)".utf8) + bytes + Array(" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        }
        let table = "/v1/images/big.qcow2/bitmaps/pages/table"
        let extents = "/v1/images/big.qcow2/bitmaps/pages/extents"
        return [
            ("huge query", get("/v1/images?limit=2&x=" + String(repeating: "y", count: 20000))),
            ("8 KB path", get("/v1/images/" + String(repeating: "a", count: 8192))),
            ("8 KB bitmap name", get("/v1/images/bitmaps.qcow2/bitmaps/" + String(repeating: "%41", count: 2730))),
            ("lone percent", get("/v1/images/%")),
            ("half escape", get("/v1/images/%4")),
            ("bad hex escape", get("/v1/images/%G1%zz/header")),
            ("truncated UTF-8 escape", get("/v1/images/%e2%82")),
            ("raw invalid UTF-8", get(raw: "/v1/images/", [0xff, 0xfe, 0x80])),
            ("raw invalid UTF-8 bitmap", get(raw: "/v1/images/bitmaps.qcow2/bitmaps/", [0xc3, 0x28])),
            ("%00 in query name", get("/v1/images?%00=1&limit=%00")),
            ("%00 in bitmap", get("/v1/images/bitmaps.qcow2/bitmaps/%00/table")),
            ("repeated parameters", get(table + "?limit=1&limit=99999&offset=1&offset=-1")),
            ("u64 overflow", get(extents + "?start=18446744073709551615&length=18446744073709551615")),
            ("max length", get(extents + "?start=268435455&length=9223372036854775807")),
            ("ampersands only", get("/v1/images?&&&=&=")),
            ("absolute form", get("http://127.0.0.1/v1/images")),
            ("asterisk", get("*")),
            ("fragment", get("/v1/images/bitmaps.qcow2#header")),
            ("lowercase method", request("get /healthz")),
            ("long method", request(String(repeating: "X", count: 300) + " /healthz")),
            ("40 KB header", request("GET /healthz", "X-Big: \(String(repeating: "z", count: 40000))\r\n")),
            ("bad If-None-Match", request("GET /v1/images/bitmaps.qcow2", "If-None-Match: ,,W/,\"\r\n")),
            ("not HTTP", Array("GARBAGE\r\n\r\n".utf8)),
        ]
    }()

    @Test("garbage requests never get a 5xx and never stop the daemon", arguments: garbage.indices)
    func garbageRequests(_ index: Int) throws {
        let (name, bytes) = Self.garbage[index]
        let port = try fx.port
        let client = try dial(port, timeout: 5)
        try client.send(bytes)
        do {
            let r = try client.readResponse()
            #expect(r.status >= 200 && r.status < 500, "\(name): \(r.status) \(r.text.prefix(200))")
            if r.header("Content-Type") == "application/problem+json" {
                #expect(r.object?["status"] as? Int == r.status, "\(name)")
            }
        } catch {
            // Only a request that is not HTTP at all may be dropped without an answer.
            #expect(name == "not HTTP", "\(name): \(error)")
        }
        #expect(try dial(port).request("GET", "/healthz").status == 200, "\(name): daemon stopped answering")
    }

    @Test("no image and no view gives a 5xx: every file x every view x every bitmap")
    func everyImageEveryView() throws {
        let f = try fx
        let client = try dial(f.port)
        var statuses: [Int: Int] = [:]
        var problems: [String] = []
        func probe(_ target: String) throws -> HTTPTestResponse {
            let r = try client.request("GET", target)
            statuses[r.status, default: 0] += 1
            let type = r.header("Content-Type")
            let ok = [200, 404, 422].contains(r.status)
                && type == (r.status == 200 ? "application/json" : "application/problem+json")
                && (try? JSONSerialization.jsonObject(with: Data(r.body))) != nil
            if !ok { problems.append("\(target): \(r.status) \(type ?? "-") \(r.text.prefix(200))") }
            return r
        }
        for name in f.entries {
            let image = "/v1/images/" + percentEncode(name.utf8)
            for view in ["", "/header", "/extensions", "/snapshots", "/findings", "/checkpoints"] { _ = try probe(image + view) }
            let list = try probe(image + "/bitmaps")
            // Every bitmap by its address (D13's empty name is `@index:N`); checkpoints by name.
            for b in list.object?["bitmaps"] as? [[String: Any]] ?? [] {
                let bitmap = image + "/bitmaps/" + (b["address"] as? String ?? "")
                for view in ["", "/table", "/extents", "/table?limit=4096&offset=0", "/extents?limit=3"] {
                    let r = try probe(bitmap + view)
                    if r.status == 404 { problems.append("\(bitmap)\(view): a listed bitmap is not found") }
                }
                guard b["name_hex"] as? String != "" else { continue }
                let checkpoint = image + "/checkpoints/" + percentEncode(hexBytes(b["name_hex"] as? String ?? ""))
                for view in ["", "/extents?limit=3"] {
                    let r = try probe(checkpoint + view)
                    if r.status == 404 { problems.append("\(checkpoint)\(view): a listed bitmap is not a checkpoint") }
                }
            }
        }
        #expect(problems.isEmpty, "\(problems.count) bad answers: \(problems.prefix(8))")
        // The sweep saw every kind of answer it should (a silent 404 for everything would fail here).
        #expect((statuses[200] ?? 0) > 300 && (statuses[422] ?? 0) > 10 && (statuses[404] ?? 0) >= 18, "\(statuses)")
    }

    @Test("table pages followed through Link rel=next equal the whole table")
    func tablePagination() throws {
        let client = try dial(try fx.port)
        let whole = try client.request("GET", "/v1/images/big.qcow2/bitmaps/pages/table?limit=4096")
        let all = try #require(whole.object?["entries"] as? [[String: Any]])
        #expect(whole.object?["total"] as? Int == 128 && all.count == 128 && whole.nextLink == nil)
        #expect(all.filter { $0["type"] as? String == "serialized" }.count >= 4)
        var target: String? = "/v1/images/big.qcow2/bitmaps/pages/table?limit=7"
        var walked: [[String: Any]] = []
        var pages = 0
        while let t = target, pages < 100 {
            let r = try client.request("GET", t)
            #expect(r.status == 200, "\(t)")
            let o = try #require(r.object)
            walked += o["entries"] as? [[String: Any]] ?? []
            target = r.nextLink
            #expect((target == nil) == (o["next"] is NSNull), "Link and next disagree on \(t)")
            if let next = o["next"] as? Int { #expect(target?.contains("offset=\(next)&") == true) }
            pages += 1
        }
        #expect(pages == 19)
        #expect(walked.count == all.count && zip(walked, all).allSatisfy { jsonEqual($0, $1) })
    }

    @Test("image listing followed through Link rel=next lists every image exactly once, in byte order")
    func listingPagination() throws {
        let f = try fx
        let client = try dial(f.port)
        let whole = try client.request("GET", "/v1/images?limit=1000")
        let wholeNames = (whole.object?["images"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(wholeNames == f.expectedListing)
        #expect(f.expectedListing.contains("link.qcow2") && !f.expectedListing.contains("passwd.qcow2"))
        var target: String? = "/v1/images?limit=3"
        var walked: [String] = []
        var pages = 0
        while let t = target, pages < 100 {
            let r = try client.request("GET", t)
            #expect(r.status == 200, "\(t): \(r.text.prefix(200))")
            let items = r.object?["images"] as? [[String: Any]] ?? []
            #expect(items.count <= 3)
            walked += items.compactMap { $0["name"] as? String }
            target = r.nextLink
            pages += 1
        }
        #expect(walked == f.expectedListing)
        #expect(pages == (f.expectedListing.count + 2) / 3)
        let byName = Dictionary(
            (whole.object?["images"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0) },
            uniquingKeysWith: { a, _ in a })
        #expect(byName["bitmaps.qcow2"]?["status"] as? String == "ok")
        #expect(byName["crafted-version-4.qcow2"]?["status"] as? String == "unreadable")
        #expect(byName["crafted-D5-granularity-8.qcow2"]?["status"] as? String == "findings")
    }

    @Test("extents, bitmaps and snapshots pages followed through Link equal the single answer")
    func otherPagination() throws {
        let client = try dial(try fx.port)
        func walk(_ first: String, key: String) throws -> (items: [Any], pages: Int) {
            var target: String? = first
            var items: [Any] = []
            var pages = 0
            while let t = target, pages < 1000 {
                let r = try client.request("GET", t)
                #expect(r.status == 200, "\(t): \(r.text.prefix(200))")
                items += r.object?[key] as? [Any] ?? []
                target = r.nextLink
                pages += 1
            }
            return (items, pages)
        }
        let extents = "/v1/images/big.qcow2/bitmaps/pages/extents"
        let whole = try walk(extents + "?limit=10000", key: "extents")
        let paged = try walk(extents + "?limit=2", key: "extents")
        #expect(whole.pages == 1 && whole.items.count == 10, "\(whole.items)")
        #expect(paged.pages == 5 && jsonEqual(paged.items, whole.items))
        // The extents tile the disk.
        var at = 0
        for case let e as [String: Any] in whole.items {
            #expect(e["start"] as? Int == at)
            at += e["length"] as? Int ?? 0
        }
        #expect(at == 256 << 20)
        let bitmaps = try walk("/v1/images/bitmaps.qcow2/bitmaps?limit=2", key: "bitmaps")
        let allBitmaps = try walk("/v1/images/bitmaps.qcow2/bitmaps", key: "bitmaps")
        #expect(bitmaps.pages == 3 && allBitmaps.items.count == 5 && jsonEqual(bitmaps.items, allBitmaps.items))
        let snaps = try walk("/v1/images/snapshots.qcow2/snapshots?limit=1", key: "snapshots")
        let allSnaps = try walk("/v1/images/snapshots.qcow2/snapshots", key: "snapshots")
        #expect(snaps.pages == 2 && allSnaps.items.count == 2 && jsonEqual(snaps.items, allSnaps.items))
    }

    @Test("ETag: stable, per view and query; If-None-Match gives 304 with no body")
    func etags() throws {
        let port = try fx.port
        let target = "/v1/images/bitmaps.qcow2/bitmaps/b-enabled/table"
        let a = try dial(port).request("GET", target)
        let b = try dial(port).request("GET", target)
        let tag = try #require(a.header("ETag"))
        #expect(b.header("ETag") == tag && a.body == b.body)
        #expect(try dial(port).request("GET", target + "?limit=1").header("ETag") != tag)
        #expect(try dial(port).request("GET", "/v1/images/bitmaps.qcow2/header").header("ETag") != tag)
        #expect(try dial(port).request("GET", "/v1/images/link.qcow2/bitmaps/b-enabled/table").header("ETag") != tag)
        let client = try dial(port)
        for value in [tag, "W/" + tag, "\"0000000000000000\", " + tag, "*"] {
            let r = try client.request("GET", target, headers: [("If-None-Match", value)])
            #expect(r.status == 304 && r.header("ETag") == tag, "If-None-Match: \(value)")
            #expect(r.header("Content-Length") == nil || r.header("Content-Length") == "0")
            let head = try client.request("HEAD", target, headers: [("If-None-Match", value)])
            #expect(head.status == 304)
            // No body followed the 304s: the next answer on this connection parses.
            #expect(try client.request("GET", "/healthz").text == "{\"status\":\"ok\"}\n")
        }
        let miss = try client.request("GET", target, headers: [("If-None-Match", "\"0000000000000000\"")])
        #expect(miss.status == 200 && miss.body == a.body)
    }

    @Test("qemu-img bitmap --add between two requests changes the ETag and the answer")
    func etagFollowsTheFile() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-live-etag-")
        defer { f.removeDirectory() }
        try f.create("e.qcow2", size: 1 << 20, options: ["cluster_size=512"])
        try f.bitmapAdd("e.qcow2", "first")
        let daemon = try DaemonHarness(["--images", f.directory])
        let client = try dial(daemon.port)
        let target = "/v1/images/e.qcow2/bitmaps"
        let a = try client.request("GET", target)
        let tag = try #require(a.header("ETag"))
        let names = { (r: HTTPTestResponse) in
            (r.object?["bitmaps"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        }
        #expect(names(a) == ["first"])
        #expect(try client.request("GET", target, headers: [("If-None-Match", tag)]).status == 304)
        let summary = try client.request("GET", "/v1/images/e.qcow2")
        try f.bitmapAdd("e.qcow2", "second", disabled: true)
        let b = try client.request("GET", target, headers: [("If-None-Match", tag)])
        #expect(b.status == 200)
        let newTag = try #require(b.header("ETag"))
        #expect(newTag != tag && names(b) == ["first", "second"])
        #expect(try client.request("GET", target).header("ETag") == newTag)
        let head = try client.request("HEAD", target)
        #expect(head.header("ETag") == newTag && head.header("Content-Length") == String(b.body.count))
        #expect(try client.request("GET", target, headers: [("If-None-Match", newTag)]).status == 304)
        let summary2 = try client.request("GET", "/v1/images/e.qcow2")
        #expect(summary2.header("ETag") != summary.header("ETag") && summary2.body != summary.body)
        #expect(try daemon.terminate() == 0)
    }

    @Test("an extents cursor from before a file change gets 410 Gone")
    func staleCursor() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-live-cursor-")
        defer { f.removeDirectory() }
        try f.create("c.qcow2", size: 4 << 20, options: ["cluster_size=512"])
        try f.bitmapAdd("c.qcow2", "b", granularity: 4096)
        try f.qemuIO("c.qcow2", ["write 0 4k", "write 64k 4k", "write 1M 4k"])
        let daemon = try DaemonHarness(["--images", f.directory])
        let client = try dial(daemon.port)
        let first = try client.request("GET", "/v1/images/c.qcow2/bitmaps/b/extents?limit=1")
        let link = try #require(first.nextLink)
        #expect(link.contains("cursor="))
        let second = try client.request("GET", link)
        #expect(second.status == 200 && second.nextLink != nil, "\(second.text)")
        let third = try #require(second.nextLink)
        try f.qemuIO("c.qcow2", ["write 2M 4k"])
        let stale = try client.request("GET", third)
        let o = expectProblem(
            stale, status: 410, instance: "/v1/images/c.qcow2/bitmaps/b/extents", slug: "stale-cursor")
        #expect(o["parameter"] as? String == "cursor")
        let again = try client.request("GET", link)
        #expect(again.status == 410)
        // Starting over without a cursor works and shows the new write.
        let fresh = try client.request("GET", "/v1/images/c.qcow2/bitmaps/b/extents")
        let dirty = (fresh.object?["extents"] as? [[String: Any]])?.filter { $0["dirty"] as? Bool == true }
        #expect(fresh.status == 200 && dirty?.compactMap { $0["start"] as? Int } == [0, 65536, 1 << 20, 2 << 20])
        #expect(try daemon.terminate() == 0)
    }

    @Test("a map cursor from before a backing layer changed gets 410 Gone; the chain's ETag changes with it")
    func staleMapCursor() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-live-map-cursor-")
        defer { f.removeDirectory() }
        try f.create("base.qcow2", size: 4 << 20)
        try f.qemuIO("base.qcow2", ["write 0 64k", "write 1M 64k", "write 2M 64k"])
        try f.create("top.qcow2", size: 4 << 20, backing: "base.qcow2")
        try f.qemuIO("top.qcow2", ["write 512k 64k"])
        let daemon = try DaemonHarness(["--images", f.directory])
        let client = try dial(daemon.port)
        let first = try client.request("GET", "/v1/images/top.qcow2/map?limit=1")
        #expect(first.status == 200, "\(first.text)")
        let link = try #require(first.nextLink)
        #expect(link.contains("cursor="))
        let chain = try client.request("GET", "/v1/images/top.qcow2/chain")
        let etag = try #require(chain.header("ETag"))
        #expect(try client.request("GET", link).status == 200)
        // Only the backing file changes: the overlay's own bytes stay the same.
        try f.qemuIO("base.qcow2", ["write 3M 64k"])
        let stale = try client.request("GET", link)
        let o = expectProblem(stale, status: 410, instance: "/v1/images/top.qcow2/map", slug: "stale-cursor")
        #expect(o["parameter"] as? String == "cursor")
        let again = try client.request("GET", "/v1/images/top.qcow2/chain", headers: [("If-None-Match", etag)])
        #expect(again.status == 200 && again.header("ETag") != etag)
        let fresh = try client.request("GET", "/v1/images/top.qcow2/map")
        let data = (fresh.object?["extents"] as? [[String: Any]])?.filter { $0["data"] as? Bool == true }
        #expect(data?.compactMap { $0["start"] as? Int } == [0, 512 << 10, 1 << 20, 2 << 20, 3 << 20], "\(fresh.text)")
        #expect(try daemon.terminate() == 0)
    }

    @Test("64 concurrent keep-alive clients: all 200, bodies equal to serial answers, descriptors read-only")
    func concurrentClients() throws {
        let f = try fx
        let port = f.port
        let targets = [
            "/v1/images/big.qcow2/bitmaps/pages/table?limit=4096", "/v1/images/bitmaps.qcow2",
            "/v1/images/big.qcow2/bitmaps/pages/extents", "/v1/images/snapshots.qcow2/snapshots",
            "/v1/images/bitmap-in-use.qcow2/bitmaps", "/v1/images?limit=1000",
            "/v1/images/crafted-clean.qcow2/findings",
            "/v1/images/backing-overlay.qcow2/header", "/v1/images/bitmaps.qcow2/bitmaps/b-512/extents?limit=5",
        ]
        let serial = try dial(port)
        var expected: [String: [UInt8]] = [:]
        for t in targets {
            let r = try serial.request("GET", t)
            #expect(r.status == 200, "\(t)")
            expected[t] = r.body
        }
        let sampler = DescriptorSampler(pid: f.daemon.pid, directory: f.realDirectory)
        sampler.start()
        let failures = Mutex<[String]>([])
        let successes = Atomic<Int>(0)
        let ready = DispatchGroup()
        let done = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        let clients = 64
        let perClient = 4
        let expectedBodies = expected
        for i in 0..<clients {
            ready.enter()
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let client: HTTPTestClient
                do {
                    client = try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: 20)
                } catch {
                    ready.leave()
                    failures.withLock { $0.append("client \(i): \(error)") }
                    return
                }
                ready.leave()
                go.wait()
                for k in 0..<perClient {
                    let t = targets[(i + k) % targets.count]
                    do {
                        let r = try client.request("GET", t)
                        if r.status == 200 && r.body == expectedBodies[t] {
                            successes.add(1, ordering: .relaxed)
                        } else {
                            failures.withLock { $0.append("client \(i) \(t): \(r.status) \(r.body.count) bytes") }
                        }
                    } catch {
                        failures.withLock { $0.append("client \(i) request \(k) \(t): \(error)") }
                    }
                }
            }
            thread.start()
        }
        ready.wait()
        for _ in 0..<clients { go.signal() }
        let finished = done.wait(timeout: .now() + 30)
        let sample = sampler.stop()
        #expect(finished == .success, "clients did not finish in 30 s")
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(8) })")
        #expect(successes.load(ordering: .relaxed) == clients * perClient)
        #expect(sample.imageDescriptorsSeen > 0, "the sampler never saw an image descriptor")
        #expect(sample.violations.isEmpty, "image descriptors not O_RDONLY: \(sample.violations.prefix(5))")
    }

    @Test("while serving every image, every descriptor on an image is O_RDONLY and none points outside")
    func descriptorsAreReadOnly() throws {
        let f = try fx
        let sampler = DescriptorSampler(pid: f.daemon.pid, directory: f.realDirectory)
        sampler.start()
        let client = try dial(f.port)
        for name in f.entries + ["passwd.qcow2"] {
            for view in ["", "/bitmaps", "/findings"] {
                _ = try client.request("GET", "/v1/images/" + percentEncode(name.utf8) + view)
            }
        }
        _ = try client.request("GET", "/v1/images?limit=1000")
        let sample = sampler.stop()
        let open = openFiles(pid: f.daemon.pid)
        let images = open.filter { $0.path.hasPrefix(f.realDirectory + "/") }
        #expect(images.count >= 5, "parsed images keep their descriptor open: \(images.map(\.path))")
        for file in images {
            #expect(file.flags & O_ACCMODE == O_RDONLY, "\(file.path): flags 0\(String(file.flags, radix: 8))")
        }
        let passwd = URL(fileURLWithPath: "/etc/passwd").resolvingSymlinksInPath().path
        #expect(!open.contains { $0.path == passwd } && !sample.sawOutside(passwd), "the daemon opened /etc/passwd")
        #expect(sample.imageDescriptorsSeen > 0 && sample.violations.isEmpty, "\(sample.violations.prefix(5))")
    }

    @Test("SIGTERM with API requests in flight: they complete with their full answers, exit 0")
    func sigtermWithRequestsInFlight() throws {
        let f = try fx
        // A second daemon on the same (read-only) directory, so the shared one keeps serving.
        // Without the scrubber, whose verdicts would change the bodies between the two requests.
        let daemon = try DaemonHarness(["--images", f.factory.directory, "--scrub", "off"])
        let targets = [
            "/v1/images/big.qcow2/bitmaps/pages/table?limit=4096", "/v1/images/bitmaps.qcow2",
            "/v1/images/big.qcow2/bitmaps/pages/extents", "/v1/images/bitmap-in-use.qcow2/findings",
            "/v1/images?limit=1000", "/v1/images/snapshots.qcow2/snapshots",
        ]
        var clients: [HTTPTestClient] = []
        var expected: [[UInt8]] = []
        for t in targets {
            let client = try dial(daemon.port)
            let r = try client.request("GET", t)
            #expect(r.status == 200)
            expected.append(r.body)
            // The next request on the kept-alive connection: all but the final blank line.
            try client.send("GET \(t) HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            clients.append(client)
        }
        usleep(200_000)
        kill(daemon.pid, SIGTERM)
        usleep(400_000)
        #expect(daemon.isRunning, "the daemon must wait for the requests in flight")
        for (i, client) in clients.enumerated() {
            try client.send("\r\n")
            let r = try client.readResponse()
            #expect(r.status == 200 && r.body == expected[i], "\(targets[i]): \(r.status)")
            #expect(r.header("Connection")?.lowercased() == "close")
        }
        #expect(try daemon.waitForExit(timeout: 10) == 0)
        #expect(daemon.stderr.contains("received SIGTERM"))
    }
}

/// Polls `/proc/<pid>/fdinfo` on a thread and records any descriptor on the images directory that is not O_RDONLY.
fileprivate final class DescriptorSampler: Sendable {
    struct Sample {
        var imageDescriptorsSeen = 0
        var violations: [String] = []
        var paths: Set<String> = []

        func sawOutside(_ path: String) -> Bool { paths.contains(path) }
    }

    private let pid: pid_t
    private let directory: String
    private let running = Atomic<Bool>(false)
    private let result = Mutex(Sample())
    private let finished = DispatchSemaphore(value: 0)

    init(pid: pid_t, directory: String) {
        self.pid = pid
        self.directory = directory
    }

    /// Starts sampling on a new thread.
    func start() {
        running.store(true, ordering: .sequentiallyConsistent)
        Thread { [self] in
            while running.load(ordering: .sequentiallyConsistent) {
                let files = openFiles(pid: pid)
                result.withLock { s in
                    for file in files {
                        s.paths.insert(file.path)
                        guard file.path.hasPrefix(directory + "/") else { continue }
                        s.imageDescriptorsSeen += 1
                        if file.flags & O_ACCMODE != O_RDONLY {
                            s.violations.append("\(file.path) fd \(file.fd) flags 0\(String(file.flags, radix: 8))")
                        }
                    }
                }
                usleep(2_000)
            }
            finished.signal()
        }.start()
    }

    /// Stops sampling and returns what was seen.
    func stop() -> Sample {
        running.store(false, ordering: .sequentiallyConsistent)
        finished.wait()
        return result.withLock { $0 }
    }
}
