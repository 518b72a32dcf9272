import Foundation
import Glibc
import HTTPTestSupport
import QCOW2TestSupport
import Testing

// A real Prometheus (Debian package `prometheus`, installed by `make deps` / .ci/run) scrapes the real
// daemon serving images made by qemu-img; the values read back through Prometheus's query API must equal
// what the images hold. Fails, never skips, when prometheus is not installed.

/// A `prometheus` server started for a test, killed with SIGKILL when released.
final class PrometheusServer {
    /// The process id, 0 once reaped.
    private(set) var pid: pid_t
    /// Holds prometheus.yml, the TSDB and the captured output.
    let directory: String
    /// The port of the web API on 127.0.0.1.
    let port: UInt16

    /// Writes a configuration scraping `127.0.0.1:targetPort/metrics` every second and starts prometheus.
    init(scrapingPort targetPort: UInt16) throws {
        guard let binary = OpsTool.path("prometheus") ?? (access("/usr/bin/prometheus", X_OK) == 0 ? "/usr/bin/prometheus" : nil)
        else {
            throw DaemonHarnessError(
                description: "prometheus is not installed: run `make deps` (or `apt-get install prometheus`)")
        }
        directory = try DaemonHarness.makeTemporaryDirectory()
        port = try Self.freePort()
        let config = """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: qcowscope
                metrics_path: /metrics
                static_configs:
                  - targets: ['127.0.0.1:\(targetPort)']

            """
        try config.write(toFile: directory + "/prometheus.yml", atomically: true, encoding: .utf8)
        let arguments = [
            binary, "--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
            "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
        ]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, directory + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, binary, &actions, nil, argv, envp)
        guard result == 0 else {
            try? FileManager.default.removeItem(atPath: directory)
            throw DaemonHarnessError(description: "posix_spawn \(binary): \(String(cString: strerror(result)))")
        }
        pid = child
    }

    deinit {
        if pid != 0 {
            kill(pid, SIGKILL)  // test threads may block SIGTERM; SIGKILL always ends it
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// What prometheus logged so far.
    var stderr: String { (try? String(contentsOfFile: directory + "/stderr", encoding: .utf8)) ?? "" }

    /// Whether the process still runs.
    var isRunning: Bool {
        guard pid != 0 else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            pid = 0
            return false
        }
        return true
    }

    /// A free loopback port (bound, read and released; prometheus binds it right after).
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else { throw DaemonHarnessError(description: "cannot find a free port") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Runs an instant query; returns each series' labels and value, or nil when the API is not up yet.
    func query(_ promql: String) -> [(labels: [String: String], value: Double)]? {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        guard let encoded = promql.addingPercentEncoding(withAllowedCharacters: allowed),
            let client = try? HTTPTestClient(host: "127.0.0.1", port: port)
        else { return nil }
        defer { client.close() }
        guard let response = try? client.request("GET", "/api/v1/query?query=" + encoded), response.status == 200,
            let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
            json["status"] as? String == "success", let data = json["data"] as? [String: Any],
            let result = data["result"] as? [[String: Any]]
        else { return nil }
        return result.compactMap { series in
            guard let labels = series["metric"] as? [String: String], let value = series["value"] as? [Any],
                value.count == 2, let text = value[1] as? String, let number = Double(text)
            else { return nil }
            return (labels, number)
        }
    }

    /// The single value of `promql`, or nil when it has no (or more than one) series.
    func value(_ promql: String) -> Double? {
        guard let result = query(promql), result.count == 1 else { return nil }
        return result[0].value
    }

    /// Polls `condition` every 100 ms for up to `timeout` seconds.
    func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            if !isRunning { return false }
            usleep(100_000)
        }
        return false
    }
}

@Suite("A real Prometheus scrapes qcowscoped")
struct PrometheusScrapeTests {
    /// Findings of `image` by severity, counted from the API's finding list (not its `counts`).
    private func findingsBySeverity(_ client: HTTPTestClient, _ image: String) throws -> [String: Int] {
        let response = try client.request("GET", "/v1/images/\(image)/findings")
        try #require(response.status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        let list = try #require(json["findings"] as? [[String: Any]])
        var counts = ["error": 0, "warning": 0, "info": 0]
        for finding in list { counts[finding["severity"] as? String ?? "?", default: 0] += 1 }
        return counts
    }

    /// Bitmaps and in-use bitmaps of `image` as `qemu-img info` reports them.
    private func qemuBitmaps(_ factory: QemuImageFactory, _ image: String) throws -> (count: Int, inUse: Int) {
        let info = try factory.infoJSON(image)
        let specific = (info["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let bitmaps = specific?["bitmaps"] as? [[String: Any]] ?? []
        return (bitmaps.count, bitmaps.filter { ($0["flags"] as? [String])?.contains("in-use") == true }.count)
    }

    @Test(.timeLimit(.minutes(1)))
    func prometheusScrapesTheDaemonAndQueriesReturnTheImageFacts() throws {
        // Real images: none, two and one (left in use by a crashed qemu-io) persistent bitmaps.
        let factory = try QemuImageFactory(prefix: "qcowscope-prom-")
        defer { factory.removeDirectory() }
        try factory.create("plain.qcow2", size: 4 << 20)
        try factory.create("two.qcow2", size: 4 << 20)
        try factory.bitmapAdd("two.qcow2", "b0")
        try factory.bitmapAdd("two.qcow2", "b1", granularity: 131_072)
        try factory.write("two.qcow2", offset: 0, length: 65536)
        try factory.create("crashed.qcow2", size: 4 << 20)
        try factory.bitmapAdd("crashed.qcow2", "live")
        try factory.crashWithInUseBitmap("crashed.qcow2")
        let images = ["plain.qcow2", "two.qcow2", "crashed.qcow2"]

        let daemon = try OpsDaemon(["--images", factory.directory, "--listen", "127.0.0.1:0"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        defer { client.close() }
        var expected: [String: (bitmaps: Int, inUse: Int, findings: [String: Int])] = [:]
        for image in images {
            let bitmaps = try qemuBitmaps(factory, image)
            expected[image] = (bitmaps.count, bitmaps.inUse, try findingsBySeverity(client, image))
        }
        #expect(expected["two.qcow2"]?.bitmaps == 2 && expected["crashed.qcow2"]?.inUse == 1)
        #expect(expected["plain.qcow2"]?.findings["error"] == 0 && expected["two.qcow2"]?.findings["error"] == 0)
        #expect(try client.request("GET", "/v1/images/two.qcow2").status == 200)
        #expect(try client.request("GET", "/v1/images/two.qcow2").status == 200)

        let prometheus = try PrometheusServer(scrapingPort: daemon.port)
        // Two scrapes at least: the second one reports the first in the request counter.
        let scraped = prometheus.waitUntil(timeout: 12) {
            (prometheus.value(#"sum(qcowscope_http_requests_total{endpoint="/metrics",status="200"})"#) ?? 0) > 0
        }
        try #require(
            scraped,
            Comment(rawValue: "prometheus did not scrape qcowscoped twice within 12 s; up=\(String(describing: prometheus.query("up"))); "
                + "prometheus stderr:\n\(prometheus.stderr)\nqcowscoped stderr:\n\(daemon.stderr)"))
        #expect(prometheus.value(#"up{job="qcowscope"}"#) == 1)

        for image in images {
            let facts = try #require(expected[image])
            #expect(prometheus.value(#"qcowscope_image_bitmaps{image="\#(image)"}"#) == Double(facts.bitmaps), "\(image)")
            #expect(
                prometheus.value(#"qcowscope_image_bitmaps_in_use{image="\#(image)"}"#) == Double(facts.inUse), "\(image)")
            for (severity, count) in facts.findings {
                #expect(
                    prometheus.value(#"qcowscope_image_findings{image="\#(image)",severity="\#(severity)"}"#)
                        == Double(count), "\(image) \(severity)")
            }
            let status = facts.findings["error", default: 0] + facts.findings["warning", default: 0] > 0 ? "findings" : "ok"
            #expect(prometheus.value(#"qcowscope_image_status{image="\#(image)",status="\#(status)"}"#) == 1, "\(image)")
        }
        #expect(prometheus.value(#"qcowscope_bitmap_in_use{image="crashed.qcow2",bitmap="live"}"#) == 1)
        #expect(prometheus.value(#"qcowscope_bitmap_granularity_bytes{image="two.qcow2",bitmap="b1"}"#) == 131_072)
        #expect(prometheus.value(#"qcowscope_bitmap_dirty_bytes{image="two.qcow2",bitmap="b0"}"#) == 65536)
        #expect(prometheus.value(#"sum(qcowscope_images)"#) == 3)
        #expect(
            prometheus.value(
                #"qcowscope_http_requests_total{endpoint="/v1/images/{image}",method="GET",status="200"}"#) == 2)
        #expect(
            prometheus.value(#"sum(qcowscope_http_requests_total{endpoint="/v1/images/{image}/findings"})"#)
                == Double(images.count))
        #expect((prometheus.value(#"sum(qcowscope_http_requests_total)"#) ?? 0) > 0)
        #expect(prometheus.value(#"count(qcowscope_build_info{tls="false"})"#) == 1)
        #expect((prometheus.value("qcowscope_http_requests_in_flight") ?? 0) >= 1)
        #expect((prometheus.value("qcowscope_cache_hits_total") ?? 0) > 0)
        #expect((prometheus.value("qcowscope_cache_misses_total") ?? 0) >= Double(images.count))
    }
}
