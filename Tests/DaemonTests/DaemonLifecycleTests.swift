import HTTPTestSupport
import Foundation
import Glibc
import Testing

/// Start-up, configuration, serving and shutdown of the real `qcowscoped` binary.
@Suite("qcowscoped lifecycle")
final class DaemonLifecycleTests {
    /// Temporary directories made by this test, removed when it ends (Swift Testing makes one instance per test).
    private var directories: [String] = []

    deinit {
        for directory in directories { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// A fresh, empty images directory.
    private func imagesDirectory() throws -> String {
        let directory = try DaemonHarness.makeTemporaryDirectory()
        directories.append(directory)
        return directory
    }

    /// Writes `text` to a new file in a temporary directory and returns its path.
    private func writeConfig(_ text: String) throws -> String {
        let path = try imagesDirectory() + "/qcowscoped.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The non-empty lines of `text`.
    private func lines(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map(String.init)
    }

    @Test func healthzAnswersAndSigtermExitsZero() throws {
        let daemon = try DaemonHarness(["--images", try imagesDirectory()])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        let health = try client.request("GET", "/healthz")
        #expect(health.status == 200)
        #expect(health.header("Content-Type") == "application/json")
        #expect(health.text == "{\"status\":\"ok\"}\n")
        let head = try client.request("HEAD", "/healthz")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.header("Content-Length") == "16")
        let missing = try client.request("GET", "/no%2Fsuch?x=1")
        #expect(missing.status == 404)
        #expect(missing.header("Content-Type") == "application/problem+json")
        #expect(missing.text.contains(#""status":404"#) && missing.text.contains(#""instance":"/no%2Fsuch""#))
        let post = try client.request("POST", "/healthz", body: Array("ignored".utf8))
        #expect(post.status == 405)
        #expect(post.header("Allow") == "GET, HEAD")
        #expect(post.header("Content-Type") == "application/problem+json")
        client.close()
        #expect(try daemon.terminate() == 0)
        let log = daemon.stderr
        #expect(log.contains("GET /healthz 200 16B "))
        #expect(log.contains("GET /no%2Fsuch 404 "))
        #expect(log.contains("POST /healthz 405 "))
        #expect(log.contains("received SIGTERM"))
    }

    @Test func sigintAlsoExitsZero() throws {
        let daemon = try DaemonHarness(["--images", try imagesDirectory()])
        #expect(try daemon.terminate(signal: SIGINT) == 0)
    }

    @Test func logsOneLinePerBoundAddress() throws {
        let daemon = try DaemonHarness(["--images", try imagesDirectory(), "--listen", "[::1]:0"])
        let listening = lines(daemon.stderr).filter { $0.contains("qcowscoped listening on http://") }
        #expect(listening.count == 2)
        #expect(listening.contains { $0.contains("http://[::1]:") })
        #expect(try daemon.terminate() == 0)
    }

    /// Arguments that must stop the daemon before it listens, and a fragment of the expected message.
    static let startupFailures: [(name: String, arguments: [String], config: String?, message: String)] = [
        (
            "missing images directory", ["--images", "/nonexistent/qcowscope-images"], nil,
            "images directory '/nonexistent/qcowscope-images': No such file or directory"
        ),
        ("no images option", [], nil, "no images directory given"),
        (
            "bad listen address", ["--images", "/tmp", "--listen", "localhost:8741"], nil,
            "invalid listen address 'localhost:8741'"
        ),
        (
            "IPv6 without brackets", ["--images", "/tmp", "--listen", "::1:8741"], nil,
            "invalid listen address '::1:8741'"
        ),
        (
            "unknown config key", ["--images", "/tmp"], #"{"images": "/tmp", "listen_address": "x"}"#,
            "unknown key 'listen_address'"
        ),
        ("bad JSON", [], #"{"images": "/tmp","#, "is not valid JSON"),
        ("wrong type", [], #"{"images": "/tmp", "threads": "two"}"#, "key 'threads' must be an integer"),
        ("bad log level", ["--images", "/tmp", "--log-level", "loud"], nil, "invalid log level 'loud'"),
        ("negative limit", ["--images", "/tmp", "--connection-limit", "0"], nil, "invalid connection limit 0"),
        ("unknown option", ["--images", "/tmp", "--frobnicate"], nil, "Unknown option '--frobnicate'"),
        (
            "unreadable config", ["--config", "/nonexistent/qcowscoped.json"], nil,
            "cannot read config file '/nonexistent/qcowscoped.json'"
        ),
    ]

    @Test(arguments: startupFailures.indices)
    func startupErrorsExitNonZeroWithOneLine(index: Int) throws {
        let failure = Self.startupFailures[index]
        var arguments = failure.arguments
        if let config = failure.config { arguments += ["--config", try writeConfig(config)] }
        let (status, stderr) = try DaemonHarness.runToExit(arguments)
        #expect(status != 0, "\(failure.name)")
        let output = lines(stderr)
        #expect(output.count == 1, "\(failure.name): \(output)")
        #expect(output.first?.hasPrefix("qcowscoped: error: ") == true, "\(failure.name)")
        #expect(output.first?.contains(failure.message) == true, "\(failure.name): \(output)")
    }

    @Test func portInUseExitsNonZeroWithOneLine() throws {
        let occupied = try LoopbackListener.open(backlog: 1)
        defer { close(occupied.fd) }
        let (status, stderr) = try DaemonHarness.runToExit([
            "--images", try imagesDirectory(), "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:\(occupied.port)",
        ])
        #expect(status == 1)
        #expect(
            lines(stderr) == ["qcowscoped: error: cannot listen on 127.0.0.1:\(occupied.port): address already in use"])
    }

    @Test func commandLineOverridesConfigFile() throws {
        let occupied = try LoopbackListener.open(backlog: 1)
        defer { close(occupied.fd) }
        // Every value in the file would fail or hide the listening line; the command line wins each time.
        let config = try writeConfig(
            #"{"images": "/nonexistent/x", "listen": ["127.0.0.1:\#(occupied.port)"], "log_level": "error"}"#)
        let daemon = try DaemonHarness(
            ["--config", config, "--images", try imagesDirectory(), "--log-level", "info"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        #expect(try client.request("GET", "/healthz").status == 200)
        #expect(try daemon.terminate() == 0)
    }

    @Test func configFileAloneIsEnough() throws {
        let images = try imagesDirectory()
        let config = try writeConfig(
            #"{"images": "\#(images)", "listen": ["127.0.0.1:0"], "threads": 1, "connection_limit": 8, "per_ip_connection_limit": 4, "connection_timeout": 5, "log_level": "debug"}"#
        )
        let daemon = try DaemonHarness(["--config", config], addListen: false)
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        #expect(try client.request("GET", "/healthz").status == 200)
        #expect(try daemon.terminate() == 0)
    }

    @Test func sampleConfigInDeployIsValid() throws {
        let sample = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/qcowscoped.json").path
        // The sample's images directory need not exist here, and its port may be taken: override both.
        let daemon = try DaemonHarness(["--config", sample, "--images", try imagesDirectory()])
        #expect(try daemon.terminate() == 0)
    }

    @Test func sigtermDuringAnInFlightRequestLetsItComplete() throws {
        let daemon = try DaemonHarness(["--images", try imagesDirectory()])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        // Request line and one header now; the request stays in flight until the blank line arrives.
        try client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        usleep(300_000)
        kill(daemon.pid, SIGTERM)
        usleep(500_000)
        #expect(daemon.isRunning, "the daemon must wait for the request in flight")
        #expect(throws: HTTPTestClientError.self, "new connections are refused while draining") {
            _ = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        }
        try client.send("\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.text == "{\"status\":\"ok\"}\n")
        #expect(response.header("Connection")?.lowercased() == "close")
        #expect(try daemon.waitForExit(timeout: 5) == 0)
    }
}
