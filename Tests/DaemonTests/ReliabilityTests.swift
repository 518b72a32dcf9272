import HTTPTestSupport
import Foundation
import Glibc
import QCOW2TestSupport
import Synchronization
import Testing

/// The real `qcowscoped` against slow, hostile and stuck clients and against images rewritten while
/// they are served. Short `--timeout`s keep every test to a few seconds; `.serialized` keeps the
/// latency bounds meaningful on small machines.
///
/// Every test also checks that nothing is written: images keep their sha256, and every descriptor the
/// daemon holds on a file of the images directory is open `O_RDONLY` (`/proc/PID/fdinfo`).
@Suite("qcowscoped reliability", .serialized, .enabled(if: QemuImageFactory.toolsAvailable))
final class ReliabilityTests {
    /// The images directory (a fresh one per test).
    let factory: QemuImageFactory
    /// sha256 of the images that no test step rewrites, taken before the daemon starts.
    private var checksums: [String: String] = [:]

    init() throws {
        factory = try QemuImageFactory(prefix: "qcowscope-reliability-")
        let plain = try factory.create("plain.qcow2", size: 1 << 20, options: ["cluster_size=512"])
        try factory.bitmapAdd(plain, "b0", granularity: 65536)
        try factory.write(plain, offset: 0, length: 4096)
        // 8 GiB, 512 B clusters, 512 B granularity: a 4096-entry table, so `table?limit=4096` is ~600 KB of JSON.
        let big = try factory.create("big-table.qcow2", size: 8 << 30, options: ["cluster_size=512"])
        try factory.bitmapAdd(big, "b0", granularity: 512)
        for name in ["plain.qcow2", "big-table.qcow2"] { checksums[name] = try factory.sha256(name) }
    }

    deinit { factory.removeDirectory() }

    /// Starts the daemon on the images directory with `arguments` added.
    private func daemon(_ arguments: [String]) throws -> DaemonHarness {
        try DaemonHarness(["--images", factory.directory] + arguments)
    }

    /// Images unchanged, no new file beside them, daemon alive, every image descriptor read-only.
    private func checkNothingWritten(_ daemon: DaemonHarness, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for (name, sum) in checksums {
            #expect(try factory.sha256(name) == sum, "\(name) changed", sourceLocation: sourceLocation)
        }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: factory.directory)) ?? []
        let unknown = files.filter { checksums[$0] == nil && $0 != "live.qcow2" }
        #expect(unknown.isEmpty, "files appeared in the images directory: \(unknown)", sourceLocation: sourceLocation)
        #expect(daemon.isRunning, "daemon died: \(daemon.stderr)", sourceLocation: sourceLocation)
        let images = ProcFS.descriptors(of: daemon.pid).filter { $0.target.hasPrefix(factory.directory + "/") }
        for d in images {
            let flags = ProcFS.openFlags(of: daemon.pid, fd: d.fd)
            #expect(flags.map { $0 & Int(O_ACCMODE) == Int(O_RDONLY) } == true,
                "fd \(d.fd) on \(d.target) has flags \(flags.map { String($0, radix: 8) } ?? "?")", sourceLocation: sourceLocation)
        }
    }

    /// A new connection, one GET, and how long it took.
    private func timedGet(_ port: UInt16, _ path: String) throws -> (HTTPTestResponse, Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        let client = try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: 3)
        let response = try client.request("GET", path)
        return (response, clock.now - start)
    }

    @Test("200 slowloris connections sending a header byte a second do not delay a normal client")
    func slowloris() throws {
        let daemon = try daemon(["--timeout", "3"])
        var slow: [HTTPTestClient] = []
        for _ in 0..<200 {
            let c = try HTTPTestClient(host: "127.0.0.1", port: daemon.port, timeoutSeconds: 2)
            try c.send("GET /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(c)
        }
        let clock = ContinuousClock()
        let end = clock.now + .seconds(4)
        var tick = clock.now
        var worst = Duration.zero
        var answered = 0
        var held = 0
        while clock.now < end {
            if clock.now >= tick {
                for c in slow { try? c.send("a") }
                tick += .seconds(1)
                held = max(held, ProcFS.descriptors(of: daemon.pid).filter { $0.target.hasPrefix("socket:") }.count)
            }
            let (r, took) = try timedGet(daemon.port, answered % 2 == 0 ? "/v1/images/plain.qcow2/bitmaps" : "/healthz")
            #expect(r.status == 200)
            worst = max(worst, took)
            answered += 1
            usleep(50_000)
        }
        #expect(held > 200, "the daemon held \(held) sockets: the slow clients were not all connected")
        #expect(worst < .seconds(1), "slowest answer \(worst) during slowloris")
        #expect(answered >= 20)
        // The slow clients are still being read (no answer yet, connection open), not silently dropped.
        #expect(slow.filter { (try? $0.send("b")) != nil }.count == 200)
        try checkNothingWritten(daemon)
    }

    /// Load shedding (503 once requests in progress pass 3/4 of the connection limit) counts requests
    /// whose headers are still arriving, so slowloris connections below the connection limit make the
    /// daemon refuse everybody else. Known issue until shedding counts only requests being answered.
    @Test("slowloris connections below the connection limit do not make the daemon shed normal requests")
    func slowlorisDoesNotTriggerShedding() throws {
        let daemon = try daemon(["--timeout", "3", "--connection-limit", "256"])
        var slow: [HTTPTestClient] = []
        for _ in 0..<200 {  // above 3/4 of 256, below 256
            let c = try HTTPTestClient(host: "127.0.0.1", port: daemon.port, timeoutSeconds: 2)
            try c.send("GET /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(c)
        }
        usleep(300_000)
        var statuses: [Int] = []
        for i in 0..<3 {
            for c in slow { try? c.send("a") }
            let (r, took) = try timedGet(daemon.port, "/v1/images/plain.qcow2")
            statuses.append(r.status)
            #expect(took < .seconds(1))
            if i < 2 { usleep(500_000) }
        }
        // Load shedding counts requests whose headers are complete, so slow clients do not trigger it.
        #expect(statuses.allSatisfy { $0 == 200 }, "normal client got \(statuses) with 200 slow clients at --connection-limit 256")
        try checkNothingWritten(daemon)
    }

    @Test("an oversized request line or header block gets 414/431 or a close, quickly")
    func oversizedHeads() throws {
        let daemon = try daemon(["--timeout", "3"])
        let filler = String(repeating: "a", count: 64 * 1024)
        let heads = [
            "GET /v1/images/\(filler) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "GET /healthz?q=\(filler) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(filler)\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (0..<2000).map { "X-H\($0): 0123456789abcdef\r\n" }.joined() + "\r\n",
        ]
        let clock = ContinuousClock()
        var outcomes: [String] = []
        for (i, head) in heads.enumerated() {
            let start = clock.now
            let c = try HTTPTestClient(host: "127.0.0.1", port: daemon.port, timeoutSeconds: 2)
            try? c.send(head)  // the server may close before everything is sent (EPIPE / ECONNRESET)
            var outcome = "closed"
            do {
                let r = try c.readResponse()
                outcome = "\(r.status)"
                #expect([414, 431].contains(r.status), "head \(i): status \(r.status)")
            } catch {
                #expect(!error.description.hasPrefix("timed out"), "head \(i): neither answered nor closed within 2 s")
            }
            let took = clock.now - start
            #expect(took < .seconds(1), "head \(i) (\(outcome)) took \(took)")
            outcomes.append(outcome)
        }
        print("oversized heads answered: \(outcomes.joined(separator: ", "))")
        let (r, _) = try timedGet(daemon.port, "/healthz")
        #expect(r.status == 200)
        try checkNothingWritten(daemon)
    }

    @Test("clients that stop reading large responses are dropped after --timeout and pin nothing")
    func stuckReaders() throws {
        let daemon = try daemon(["--timeout", "2", "--threads", "2"])
        func sockets() -> Int { ProcFS.descriptors(of: daemon.pid).filter { $0.target.hasPrefix("socket:") }.count }
        let baseline = sockets()  // the listening socket (MHD's workers share it)
        let path = "/v1/images/big-table.qcow2/bitmaps/b0/table?limit=4096"
        let (first, _) = try timedGet(daemon.port, path)
        #expect(first.status == 200 && first.body.count > 300_000, "table page of \(first.body.count) bytes")
        #expect(eventually(within: 3) { sockets() == baseline }, "closed connection still open in the daemon")
        // Four clients (two per thread) each pipeline 30 requests (~18 MB) and never read. The kernel
        // takes ~3 MB per connection first (send buffer autotuning), then the daemon stalls on each.
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let stuck = try (0..<4).map { _ in try RawSocket(port: daemon.port, receiveBuffer: 4096) }
        for s in stuck { #expect(s.send(Array([[UInt8]](repeating: request, count: 30).joined()))) }
        let stuckSince = ContinuousClock.now
        usleep(300_000)
        #expect(sockets() == baseline + 4)
        // Others are served at once while the six are stuck.
        for i in 0..<5 {
            let (r, took) = try timedGet(daemon.port, i % 2 == 0 ? path : "/v1/images/plain.qcow2")
            #expect(r.status == 200)
            #expect(took < .seconds(1), "answer \(i) took \(took) with stuck readers")
        }
        // 2 s after the last progress the daemon closes them (the kernel keeps the orphaned data).
        #expect(eventually(within: 15) { sockets() == baseline }, "stuck connections still open: \(sockets() - baseline)")
        print("stuck readers closed by the daemon \(ContinuousClock.now - stuckSince) after they stopped reading")
        let (r, took) = try timedGet(daemon.port, path)
        #expect(r.status == 200 && took < .seconds(1))
        try checkNothingWritten(daemon)
        withExtendedLifetime(stuck) {}
    }

    @Test("at the connection limit a new client waits or is refused, and is served once the limit frees")
    func connectionLimit() throws {
        let daemon = try daemon(["--timeout", "2", "--threads", "1", "--connection-limit", "16"])
        let clock = ContinuousClock()
        for round in 0..<2 {
            let opened = clock.now
            let idle = try (0..<16).map { _ in try RawSocket(port: daemon.port, receiveBuffer: nil) }
            usleep(200_000)
            // The 17th: the request is sent; the daemon may leave it in the backlog or refuse it.
            var waiting: HTTPTestClient? = try? HTTPTestClient(host: "127.0.0.1", port: daemon.port, timeoutSeconds: 1)
            if let w = waiting, (try? w.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == nil { waiting = nil }
            var start = clock.now
            if round == 0 {
                // While the limit holds the request is not answered (it waits in the backlog, or is refused).
                if let w = waiting {
                    do {
                        let early = try w.readResponse()
                        Issue.record("answered \(early.status) while at the connection limit")
                    } catch {
                        if !error.description.hasPrefix("timed out") { waiting = nil }  // refused
                    }
                }
                // Free the limit by closing the idle ones: the waiting client is answered within a second.
                idle.forEach { $0.close() }
                start = clock.now
            }  // round 1: the idle ones are dropped by --timeout 2
            var served = false
            if let w = waiting {
                w.setTimeout(seconds: round == 0 ? 1 : 4)
                if let r = try? w.readResponse() {
                    #expect(r.status == 200)
                    served = true
                }
            }
            if !served {
                // Refused (closed) while at the limit: a retry once the limit freed must be served.
                #expect(eventually(within: round == 0 ? 1 : 4) { (try? self.timedGet(daemon.port, "/healthz").0.status) == 200 })
            }
            let took = clock.now - start
            #expect(took < (round == 0 ? .seconds(1) : .seconds(4)), "round \(round): served after \(took)")
            print("connection limit round \(round): the 17th client \(served ? "waited, then was served" : "was refused, a retry served") "
                + "\(took) after \(round == 0 ? "the idle clients closed" : "its request (idle clients dropped by --timeout 2 at \(clock.now - opened))")")
            let (r, fast) = try timedGet(daemon.port, "/v1/images/plain.qcow2/findings")
            #expect(r.status == 200 && fast < .seconds(1))
            idle.forEach { $0.close() }
            usleep(100_000)
        }
        try checkNothingWritten(daemon)
    }

    @Test("an image rewritten, truncated, replaced and deleted while polled: only valid JSON, never 5xx")
    func imageChangesUnderPolling() throws {
        let live = try factory.create("live.qcow2", size: 1 << 20, options: ["cluster_size=512"])
        try factory.bitmapAdd(live, "b0")
        let daemon = try daemon(["--timeout", "5"])
        let paths = [
            "/v1/images/live.qcow2", "/v1/images/live.qcow2/header", "/v1/images/live.qcow2/extensions",
            "/v1/images/live.qcow2/bitmaps", "/v1/images/live.qcow2/bitmaps/b0", "/v1/images/live.qcow2/bitmaps/b0/table",
            "/v1/images/live.qcow2/bitmaps/b0/extents", "/v1/images/live.qcow2/snapshots",
            "/v1/images/live.qcow2/findings", "/v1/images",
        ]
        let tally = Mutex<(count: Int, statuses: [Int: Int], bad: [String])>((0, [:], []))
        let stop = Atomic<Bool>(false)
        // Threads, not GCD: blocked pollers on the global queue would starve QemuImageFactory's pipe readers.
        let pollers = DispatchGroup()
        let port = daemon.port
        for p in 0..<2 {
            pollers.enter()
            Thread {
                defer { pollers.leave() }
                var client: HTTPTestClient?
                var etags: [String: String] = [:]
                var i = p
                while !stop.load(ordering: .relaxed) {
                    let path = paths[i % paths.count]
                    i += 1
                    do {
                        if client == nil { client = try HTTPTestClient(host: "127.0.0.1", port: port, timeoutSeconds: 5) }
                        let headers = i % 3 == 0 ? etags[path].map { [("If-None-Match", $0)] } ?? [] : []
                        let r = try client!.request("GET", path, headers: headers)
                        if let e = r.header("ETag") { etags[path] = e }
                        var problem: String?
                        if ![200, 304, 404, 409, 422].contains(r.status) {
                            problem = "\(path): status \(r.status): \(r.text.prefix(300))"
                        } else if r.status != 304, (try? JSONSerialization.jsonObject(with: Data(r.body))) == nil {
                            problem = "\(path): \(r.status) with a body that is not JSON: \(r.text.prefix(300))"
                        }
                        tally.withLock {
                            $0.count += 1
                            $0.statuses[r.status, default: 0] += 1
                            if let problem, $0.bad.count < 20 { $0.bad.append(problem) }
                        }
                    } catch {
                        client = nil
                        tally.withLock { if $0.bad.count < 20 { $0.bad.append("\(path): \(error)") } }
                    }
                }
            }.start()
        }
        // The rewrites, each a separate process or syscall, as fast as they go, for about 4 s.
        let clock = ContinuousClock()
        let end = clock.now + .seconds(4)
        var cycles = 0
        func writeFile(_ bytes: [UInt8], to path: String) {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        var rng = SystemRandomNumberGenerator()
        while clock.now < end {
            try factory.bitmapAdd(live, "b1", granularity: 4096)
            try factory.write(live, offset: UInt64(cycles % 8) * 65536, length: 4096)
            try factory.bitmapRemove(live, "b1")
            try factory.qemuImg(["resize", "-q", "-f", "qcow2", live, String((2 + cycles % 3) << 20)])
            truncate(live, 7)
            writeFile((0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }, to: live)
            let garbage = factory.path("garbage.tmp")
            writeFile(Array("QFI\u{fb}".utf8) + (0..<600).map { _ in UInt8.random(in: 0...255, using: &rng) }, to: garbage)
            rename(garbage, live)
            unlink(live)
            usleep(20_000)
            try factory.create("live.qcow2", size: 1 << 20, options: ["cluster_size=512"])
            try factory.bitmapAdd(live, "b0")
            cycles += 1
        }
        // The final state: 3 MiB, bitmaps b0 (dirty 0-64 KiB) and final.
        try factory.bitmapAdd(live, "final", granularity: 65536)
        try factory.write(live, offset: 0, length: 65536)
        try factory.qemuImg(["resize", "-q", "-f", "qcow2", live, String(3 << 20)])
        usleep(200_000)
        stop.store(true, ordering: .relaxed)
        pollers.wait()
        let result = tally.withLock { $0 }
        print("image changes: \(cycles) rewrite cycles, \(result.count) answers, statuses \(result.statuses.sorted { $0.key < $1.key })")
        #expect(result.bad.isEmpty, "\(result.bad.count) bad answers, e.g.:\n\(result.bad.joined(separator: "\n"))")
        #expect(result.count > 200, "only \(result.count) answers while rewriting (\(cycles) cycles)")
        #expect(result.statuses.keys.allSatisfy { $0 < 500 }, "statuses: \(result.statuses)")
        #expect(cycles >= 2)
        // After the changes stop, the answer is the final file's.
        let (summary, _) = try timedGet(daemon.port, "/v1/images/live.qcow2")
        #expect(summary.status == 200)
        let doc = try JSONSerialization.jsonObject(with: Data(summary.body)) as? [String: Any]
        #expect(doc?["virtual_size"] as? Int == 3 << 20, "summary: \(summary.text)")
        let bitmaps = (doc?["bitmaps"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(bitmaps == ["b0", "final"], "bitmaps: \(bitmaps ?? [])")
        let dirty = (doc?["bitmaps"] as? [[String: Any]])?.last?["dirty_bytes"] as? Int
        #expect(dirty == 65536, "final dirty_bytes \(dirty.map(String.init) ?? "nil")")
        let (extents, _) = try timedGet(daemon.port, "/v1/images/live.qcow2/bitmaps/final/extents")
        #expect(extents.status == 200 && extents.text.contains(#"{"start":0,"length":65536,"dirty":true}"#), "\(extents.text)")
        try checkNothingWritten(daemon)
    }
}

/// Why a ``RawSocket`` could not connect.
private struct RawSocketError: Error, CustomStringConvertible {
    var description: String
}

/// A client socket with an optional small receive buffer, for clients that never read.
private final class RawSocket {
    private var fd: Int32

    /// Connects to 127.0.0.1:`port`; `receiveBuffer` is set before connecting (so the window stays small).
    init(port: UInt16, receiveBuffer: Int32?) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if var size = receiveBuffer {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else {
            let e = errno
            Glibc.close(fd)
            throw RawSocketError(description: "connect: \(String(cString: strerror(e)))")
        }
    }

    deinit { close() }

    /// Sends everything; false on error or timeout.
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Closes the socket (idempotent).
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// `/proc/PID` readers with plain syscalls (Foundation's file APIs leak under ASan in Swift 6.3).
private enum ProcFS {
    /// Every open descriptor of `pid` and what it points at (`socket:[N]`, a path, `anon_inode:...`).
    static func descriptors(of pid: pid_t) -> [(fd: String, target: String)] {
        guard pid > 0, let dir = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(dir) }
        var out: [(String, String)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/\(pid)/fd/\(name)", &buffer, buffer.count - 1)
            guard n > 0 else { continue }
            out.append((name, String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        return out
    }

    /// The `flags:` of `/proc/PID/fdinfo/FD` (octal), nil when it cannot be read.
    static func openFlags(of pid: pid_t, fd: String) -> Int? {
        let fdinfo = open("/proc/\(pid)/fdinfo/\(fd)", O_RDONLY | O_CLOEXEC)
        guard fdinfo >= 0 else { return nil }
        defer { close(fdinfo) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fdinfo, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        for line in String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n") where line.hasPrefix("flags:") {
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8)
        }
        return nil
    }
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
private func eventually(within seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
