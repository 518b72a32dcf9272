import Foundation
import Glibc
import HTTPTestSupport
import ProcessTestSupport
import QCOW2TestSupport
import Testing

/// The background scrubber of a real daemon: every image gets a verdict without being asked, a changed
/// file is checked again, its reads are paced and at idle I/O priority, and `--scrub off` turns it off.
@Suite("Scrubber (live daemon)", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"), .serialized)
struct ScrubberTests {
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    static func listing(_ client: HTTPTestClient) throws -> [String: [String: Any]] {
        let r = try client.request("GET", "/v1/images")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        var out: [String: [String: Any]] = [:]
        for item in doc["images"] as? [[String: Any]] ?? [] {
            if let n = item["name"] as? String { out[n] = item }
        }
        return out
    }

    static func state(_ item: [String: Any]?) -> String? {
        (item?["check"] as? [String: Any])?["state"] as? String
    }

    /// Polls `condition` every 100 ms for up to `seconds`.
    static func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    @Test("every image gets a verdict unasked, a rewritten image is checked again, metrics follow")
    func verdictsWithoutAsking() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-scrub-")
        defer { f.removeDirectory() }
        try f.create("clean.qcow2", size: 1 << 20)
        try f.write("clean.qcow2", pattern: 1, offset: 0, length: 128 << 10)
        try f.create("lazy.qcow2", size: 1 << 20, options: ["lazy_refcounts=on"])
        try f.crash("lazy.qcow2", after: ["write -P 1 0 192k"])
        let daemon = try DaemonHarness(["--images", f.directory])
        defer { _ = try? daemon.terminate() }
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        defer { client.close() }
        #expect(try Self.eventually(20) {
            let l = try Self.listing(client)
            return Self.state(l["clean.qcow2"]) == "clean" && Self.state(l["lazy.qcow2"]) == "corrupt"
        })
        let l = try Self.listing(client)
        #expect(l["lazy.qcow2"]?["status"] as? String == "errors")
        #expect((l["lazy.qcow2"]?["check"] as? [String: Any])?["corruptions"] as? Int == 6)
        // The counters follow the verdicts a moment later.
        #expect(try Self.eventually(5) {
            (Self.sample(try client.request("GET", "/metrics").text, "qcowscope_scrub_checks_total") ?? 0) >= 2
        })
        let metrics = try client.request("GET", "/metrics").text
        #expect(Self.sample(metrics, #"qcowscope_image_check_corruptions{image="lazy.qcow2"}"#) == 6)
        #expect(Self.sample(metrics, #"qcowscope_image_check_corruptions{image="clean.qcow2"}"#) == 0)
        #expect(Self.sample(metrics, #"qcowscope_scrub_images{state="total"}"#) == 2)

        // Rewriting the image in place (qemu-img check -r all repairs it): the scrubber checks the new version.
        try f.qemuImg(["check", "-r", "all", f.path("lazy.qcow2")], allowFailure: true)
        #expect(try Self.eventually(20) { Self.state(try Self.listing(client)["lazy.qcow2"]) == "clean" })
        // The answer asked over HTTP is the scrubber's, without a new check.
        #expect(try Self.eventually(5) { Self.sample(try client.request("GET", "/metrics").text, "qcowscope_scrub_busy") == 0 })
        usleep(300_000)
        let checks = Self.sample(try client.request("GET", "/metrics").text, "qcowscope_scrub_checks_total") ?? 0
        let doc = try JSONSerialization.jsonObject(with: Data(try client.request("GET", "/v1/images/lazy.qcow2/check").body)) as? [String: Any]
        #expect(doc?["state"] as? String == "clean" && doc?["corruptions"] as? Int == 0)
        #expect(Self.sample(try client.request("GET", "/metrics").text, "qcowscope_scrub_checks_total") == checks)
    }

    @Test("the scrubber keeps to --scrub-rate and reads at idle I/O priority")
    func pacedAndIdle() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-scrub-")
        defer { f.removeDirectory() }
        // 64 GiB with metadata preallocation: 8 MiB of L2 tables and refcount blocks to read.
        try f.create("big.qcow2", size: 64 << 30, options: ["preallocation=metadata"])
        let rate = 1 << 20
        let daemon = try DaemonHarness(["--images", f.directory, "--scrub-rate", String(rate)])
        defer { _ = try? daemon.terminate() }
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        defer { client.close() }
        let start = Date()
        #expect(try Self.eventually(5) { Self.sample(try client.request("GET", "/metrics").text, "qcowscope_scrub_busy") == 1 })
        // A thread of the daemon has the idle I/O class while it checks (`ionice -p TID` says `idle`).
        var idle = false
        let ionice = try #require(ChildProcess.locate("ionice"))
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/task")) ?? []
        for t in tasks {
            let r = try ChildProcess.run(ionice, ["-p", t], timeout: 10)
            if r.stdout.hasPrefix("idle") { idle = true }
        }
        #expect(idle, "no thread of the daemon has the idle I/O class")
        sleep(3)
        // /healthz and other answers are not held up while it reads.
        let t0 = Date()
        #expect(try client.request("GET", "/healthz").status == 200)
        #expect(try client.request("GET", "/v1/images/big.qcow2/header").status == 200)
        #expect(Date().timeIntervalSince(t0) < 1)
        let read = Self.sample(try client.request("GET", "/metrics").text, "qcowscope_scrub_read_bytes_total") ?? 0
        let state = Self.state(try Self.listing(client)["big.qcow2"])
        let elapsed = Date().timeIntervalSince(start)
        // Still checking, having read no more than the rate allows (one table read of slack).
        #expect(state == "pending", "a 8 MiB check at 1 MiB/s finished after \(elapsed) s")
        #expect(read <= Double(rate) * elapsed + 65536 * 2)
    }

    @Test("--scrub off: nothing is checked until asked")
    func off() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-scrub-")
        defer { f.removeDirectory() }
        try f.create("a.qcow2", size: 1 << 20)
        let daemon = try DaemonHarness(["--images", f.directory, "--scrub", "off"])
        defer { _ = try? daemon.terminate() }
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        defer { client.close() }
        sleep(2)
        #expect(Self.state(try Self.listing(client)["a.qcow2"]) == "pending")
        #expect(!(try client.request("GET", "/metrics").text.contains("qcowscope_scrub_")))
        #expect(try client.request("GET", "/v1/images/a.qcow2/check").status == 200)
        #expect(Self.state(try Self.listing(client)["a.qcow2"]) == "clean")
    }
}
