import Foundation
import Glibc
import HTTPTestSupport
import QCOW2TestSupport
import Testing

/// The hot path (issue 21): answers kept as prepared responses and given again without routing or
/// rendering. A kept answer must be the usual answer byte for byte, and must never outlive what it
/// shows: a file rewritten, truncated or replaced, a writer arriving or leaving, a request the API
/// would refuse. Every test runs the real daemon on real qemu-img images.
@Suite(.enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"), .serialized)
struct HotPathTests {
    /// A directory with `a.qcow2` (a persistent bitmap, data written) and `b.qcow2`, made by qemu-img.
    static func images() throws -> QemuImageFactory {
        let factory = try QemuImageFactory(prefix: "qcowscope-hot-")
        _ = try factory.create("a.qcow2", size: 64 << 20)
        try factory.bitmapAdd(factory.path("a.qcow2"), "b0")
        try factory.write(factory.path("a.qcow2"), pattern: 0x5a, offset: 1 << 20, length: 64 << 10)
        _ = try factory.create("b.qcow2", size: 16 << 20)
        return factory
    }

    static func daemon(_ factory: QemuImageFactory, _ extra: [String] = []) throws -> OpsDaemon {
        try OpsDaemon(["--images", factory.directory, "--listen", "127.0.0.1:0", "--threads", "1", "--scrub", "off"] + extra)
    }

    /// The answers' heads without `Date` (it is the sending time), and bodies.
    static func comparable(_ r: HTTPTestResponse) -> String {
        let fields = r.headers.filter { $0.name.lowercased() != "date" }.map { "\($0.name): \($0.value)" }
        return "\(r.status)\n" + fields.joined(separator: "\n") + "\n\n" + r.text
    }

    /// `qcowscope_http_prepared_answers_total` now.
    static func prepared(_ client: HTTPTestClient) throws -> Int {
        let text = try client.request("GET", "/metrics").text
        for line in text.split(separator: "\n") where line.hasPrefix("qcowscope_http_prepared_answers_total ") {
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        return -1
    }

    @Test("a kept answer is the usual one byte for byte (but Date), for every kind of route, GET and HEAD")
    func keptAnswersAreTheUsualOnes() throws {
        let factory = try Self.images()
        defer { factory.removeDirectory() }
        let daemon = try Self.daemon(factory)
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let targets = [
            "/healthz", "/v1/images/a.qcow2/header", "/v1/images/a.qcow2/extensions", "/v1/images/a.qcow2/bitmaps",
            "/v1/images/a.qcow2/bitmaps/b0", "/v1/images/a.qcow2/bitmaps/b0/table?limit=4",
            "/v1/images/a.qcow2/bitmaps/b0/extents", "/v1/images/a.qcow2/l1", "/v1/images?limit=1",
            "/v1/images?limit=100", "/v1/openapi.yaml", "/ui/", "/ui/app.js",
        ]
        let before = try Self.prepared(client)
        for target in targets {
            let first = try client.request("GET", target)
            #expect(first.status == 200, "\(target): \(first.status) \(first.text.prefix(200))")
            for _ in 0..<3 {
                let again = try client.request("GET", target)
                #expect(Self.comparable(again) == Self.comparable(first), "\(target): the kept answer differs")
            }
            let head = try client.request("HEAD", target)
            #expect(head.status == 200 && head.body.isEmpty)
            #expect(head.header("Content-Length") == first.header("Content-Length"), "\(target)")
        }
        // Every repeat (and HEAD) came from the hot path, but the spec's: over 64 KiB, it is not kept.
        #expect(try Self.prepared(client) - before >= (targets.count - 1) * 4)
        // They are counted and logged as any other answer.
        let metrics = try client.request("GET", "/metrics").text
        #expect(metrics.contains(#"qcowscope_http_requests_total{endpoint="/v1/images/{image}/header",method="GET",status="200"} 4"#))
        #expect(metrics.contains(#"qcowscope_http_requests_total{endpoint="/v1/images/{image}/header",method="HEAD",status="200"} 1"#))
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test("If-None-Match on a kept answer gives the same 304 as the usual path, and a stale tag the 200")
    func notModified() throws {
        let factory = try Self.images()
        defer { factory.removeDirectory() }
        let daemon = try Self.daemon(factory)
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let target = "/v1/images/a.qcow2/bitmaps"
        // The first request is answered the usual way: its 304 is the reference.
        let tag = try #require(try client.request("GET", target).header("ETag"))
        let slow = try client.request("GET", target, headers: [("If-None-Match", tag)])
        #expect(slow.status == 304)
        let hot = try client.request("GET", target, headers: [("If-None-Match", "\"other\", W/\(tag)")])
        #expect(Self.comparable(hot) == Self.comparable(slow))
        let stale = try client.request("GET", target, headers: [("If-None-Match", "\"other\"")])
        #expect(stale.status == 200 && stale.header("ETag") == tag)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test("the next request after a change sees it: a bitmap added, the image resized, replaced by rename, truncated")
    func changesAreSeenByTheNextRequest() throws {
        let factory = try Self.images()
        defer { factory.removeDirectory() }
        let daemon = try Self.daemon(factory)
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let image = factory.path("a.qcow2")
        for round in 1...8 {
            // Kept (asked twice), changed by qemu-img, asked again at once: never the old answer.
            _ = try client.request("GET", "/v1/images/a.qcow2/bitmaps")
            _ = try client.request("GET", "/v1/images?limit=100")
            #expect(try client.request("GET", "/v1/images/a.qcow2/bitmaps").text.contains("\"b0\""))
            try factory.bitmapAdd(image, "n\(round)")
            #expect(try client.request("GET", "/v1/images/a.qcow2/bitmaps").text.contains("\"n\(round)\""), "round \(round)")
            #expect(try client.request("GET", "/v1/images?limit=100").text.contains("\"bitmaps\":\(round + 1)"), "round \(round)")
        }
        _ = try client.request("GET", "/v1/images/a.qcow2/header")
        #expect(try client.request("GET", "/v1/images/a.qcow2/header").text.contains("\"size\":67108864"))
        try factory.qemuImg(["resize", "-q", image, "+1M"])
        #expect(try client.request("GET", "/v1/images/a.qcow2/header").text.contains("\"size\":68157440"))
        // Replaced by rename: b.qcow2's 16 MiB header under the name a.qcow2.
        #expect(rename(factory.path("b.qcow2"), image) == 0)
        #expect(try client.request("GET", "/v1/images/a.qcow2/header").text.contains("\"size\":16777216"))
        #expect(try client.request("GET", "/v1/images?limit=100").text.contains("\"virtual_size\":16777216"))
        // Truncated to nothing: no longer an image.
        #expect(truncate(image, 0) == 0)
        let gone = try client.request("GET", "/v1/images/a.qcow2/header")
        #expect(gone.status != 200, "\(gone.status) \(gone.text.prefix(120))")
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test("a writer arriving or leaving is seen by the next request of a kept bitmap page and listing")
    func lockStateIsProbedEveryTime() throws {
        let factory = try Self.images()
        defer { factory.removeDirectory() }
        let daemon = try Self.daemon(factory)
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        for _ in 0..<3 {
            #expect(try client.request("GET", "/v1/images/a.qcow2/bitmaps").text.contains("\"writer_present\":false"))
            #expect(try client.request("GET", "/v1/images?limit=100").text.contains("\"writer_present\":false"))
        }
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-io")
        holder.arguments = ["-f", "qcow2", factory.path("a.qcow2")]
        let input = Pipe()
        holder.standardInput = input
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        // The lock view is never kept: once it sees the writer, the kept answers must too, at once.
        var held = false
        for _ in 0..<200 where !held {
            held = try client.request("GET", "/v1/images/a.qcow2/locks").text.contains("\"writer_present\":true")
            if !held { usleep(20_000) }
        }
        #expect(held)
        #expect(try client.request("GET", "/v1/images/a.qcow2/bitmaps").text.contains("\"writer_present\":true"))
        #expect(try client.request("GET", "/v1/images?limit=100").text.contains("\"writer_present\":true"))
        try input.fileHandleForWriting.close()
        holder.waitUntilExit()
        // qemu-io has exited: its locks went with its descriptors.
        #expect(try client.request("GET", "/v1/images/a.qcow2/bitmaps").text.contains("\"writer_present\":false"))
        #expect(try client.request("GET", "/v1/images?limit=100").text.contains("\"writer_present\":false"))
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test("a kept answer is never given to a request the API refuses: no token, a wrong Host; CORS answers get their fields")
    func refusalsStayRefusals() throws {
        let factory = try Self.images()
        defer { factory.removeDirectory() }
        let tokenPath = factory.path("token")
        try "s3cret-token-for-the-hot-path\n".write(toFile: tokenPath, atomically: false, encoding: .utf8)
        chmod(tokenPath, 0o600)
        let daemon = try Self.daemon(factory, ["--token-file", tokenPath, "--cors-origin", "https://dash.example"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let auth = [("Authorization", "Bearer s3cret-token-for-the-hot-path")]
        let target = "/v1/images/a.qcow2/header"
        for _ in 0..<3 { #expect(try client.request("GET", target, headers: auth).status == 200) }
        #expect(try client.request("GET", target).status == 401)
        #expect(try client.request("GET", target, headers: [("Authorization", "Bearer wrong")]).status == 401)
        #expect(try client.request("GET", target, headers: auth + [("Host", "evil.example")]).status == 421)
        let cors = try client.request("GET", target, headers: auth + [("Origin", "https://dash.example")])
        #expect(cors.status == 200 && cors.header("Access-Control-Allow-Origin") == "https://dash.example")
        let plain = try client.request("GET", target, headers: auth)
        #expect(plain.status == 200 && plain.header("Access-Control-Allow-Origin") == nil)
        // /healthz needs the token too here (no --open-health).
        _ = try client.request("GET", "/healthz", headers: auth)
        #expect(try client.request("GET", "/healthz", headers: auth).status == 200)
        #expect(try client.request("GET", "/healthz").status == 401)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }

    @Test("256 and 384 keep-alive clients asking at once are all answered (libmicrohttpd's 128-event loop hang)")
    func manyClientsAtOnce() throws {
        let factory = try Self.images()
        defer { factory.removeDirectory() }
        let daemon = try Self.daemon(factory)
        for count in [256, 384] {
            let clients = try (0..<count).map { _ in try HTTPTestClient(host: "127.0.0.1", port: daemon.port, timeoutSeconds: 10) }
            let clock = ContinuousClock()
            let start = clock.now
            for round in 0..<3 {
                for c in clients { try c.send("GET /v1/images/a.qcow2/header HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") }
                for (i, c) in clients.enumerated() {
                    let r = try c.readResponse()
                    #expect(r.status == 200, "client \(i) of \(count), round \(round)")
                }
            }
            let took = clock.now - start
            #expect(took < .seconds(5), "\(count) clients x 3 rounds took \(took)")
            clients.forEach { $0.close() }
        }
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }
}
