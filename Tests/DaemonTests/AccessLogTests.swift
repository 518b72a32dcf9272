import Foundation
import Glibc
import HTTPTestSupport
import QCOW2TestSupport
import Testing

/// The access log written off the HTTP threads: `--access-log off|stderr|FILE`, the line's fields, a
/// FILE opened again on SIGHUP (logrotate), the dropped-lines counter, and a bad destination refused.
@Suite(.serialized)
struct AccessLogTests {
    static func images() throws -> String {
        let directory = try DaemonHarness.makeTemporaryDirectory()
        try Data(CraftedImages.baseline(bitmapCount: 1).build()).write(to: URL(fileURLWithPath: directory + "/vm.qcow2"))
        return directory
    }

    /// The file's text, waiting up to 5 s until it contains `needle`.
    static func wait(for needle: String, in path: String) -> String {
        let deadline = Date().addingTimeInterval(5)
        var text = ""
        while Date() < deadline {
            text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if text.contains(needle) { return text }
            usleep(20_000)
        }
        return text
    }

    @Test func aFileGetsTheLinesAndIsOpenedAgainOnSIGHUP() throws {
        let images = try Self.images()
        defer { try? FileManager.default.removeItem(atPath: images) }
        let log = images + "/access.log"
        let daemon = try OpsDaemon(["--images", images, "--listen", "127.0.0.1:0", "--access-log", log])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        #expect(try client.request("GET", "/v1/images/vm.qcow2/header").status == 200)
        let first = Self.wait(for: "GET /v1/images/vm.qcow2/header 200", in: log)
        #expect(first.contains(" info qcowscoped: remote=127.0.0.1 [qcowscoped] GET /v1/images/vm.qcow2/header 200 "), "\(first)")
        #expect(first.hasSuffix("us\n"))
        // Not on stderr as well.
        #expect(!daemon.stderr.contains("GET /v1/images/vm.qcow2/header"))
        var st = stat()
        #expect(stat(log, &st) == 0 && st.st_mode & 0o777 == 0o640)

        // logrotate: move the file away, SIGHUP, and the next lines go to a new file.
        #expect(rename(log, log + ".1") == 0)
        daemon.signal(SIGHUP)
        #expect(daemon.waitForLog("received SIGHUP"))
        #expect(try client.request("GET", "/healthz").status == 200)
        let second = Self.wait(for: "GET /healthz 200", in: log)
        #expect(second.contains("GET /healthz 200") && !second.contains("/header"), "\(second)")
        #expect(!((try? String(contentsOfFile: log + ".1", encoding: .utf8)) ?? "").contains("/healthz"))

        // Nothing dropped, and the counter is there for an alert.
        let metrics = try client.request("GET", "/metrics").text
        #expect(metrics.contains("\nqcowscope_access_log_dropped_lines_total 0\n"))
        // A query string never reaches the log (it may carry names), control bytes are escaped.
        #expect(try client.request("GET", "/v1/images/vm.qcow2/header?x=secret").status == 200)
        #expect(try client.request("GET", "/v1/images/a%0Ab").status == 404)
        let third = Self.wait(for: "GET /v1/images/a%0Ab 404", in: log)
        #expect(!third.contains("secret") && third.contains("GET /v1/images/a%0Ab 404"), "\(third)")
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
        // Every line was written before the exit.
        #expect(Self.wait(for: "GET /metrics 200", in: log).contains("GET /metrics 200"))
    }

    @Test func offWritesNoLineAndTheCommandLineWinsOverTheConfig() throws {
        let images = try Self.images()
        defer { try? FileManager.default.removeItem(atPath: images) }
        let config = images + "/qcowscoped.json"
        try #"{"access_log": "off"}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let quiet = try OpsDaemon(["--images", images, "--listen", "127.0.0.1:0", "--config", config, "--log-level", "info"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: quiet.port)
        #expect(try client.request("GET", "/healthz").status == 200)
        usleep(300_000)
        #expect(!quiet.stderr.contains("GET /healthz"))
        client.close()
        quiet.signal(SIGTERM)
        #expect(try quiet.waitForExit() == 0)

        let loud = try OpsDaemon(["--images", images, "--listen", "127.0.0.1:0", "--config", config, "--access-log", "stderr"])
        let c2 = try HTTPTestClient(host: "127.0.0.1", port: loud.port)
        #expect(try c2.request("GET", "/healthz").status == 200)
        #expect(loud.waitForLog("[qcowscoped] GET /healthz 200"), "--access-log wins over the config key")
        c2.close()
        loud.signal(SIGTERM)
        #expect(try loud.waitForExit() == 0)

        let bad = try DaemonHarness.runToExit(["--images", images, "--access-log", images + "/no/such/dir/access.log"])
        #expect(bad.status == 1 && bad.stderr.contains("access log '\(images)/no/such/dir/access.log': No such file or directory"), "\(bad.stderr)")
    }
}
