import Foundation
import Glibc
import HTTPTestSupport
import QCOW2TestSupport
import Testing

/// The repository's top folder (this file is Tests/DaemonTests/...).
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

/// The alerting and recording rules of `deploy/prometheus-rules.yml`, and the series they need.
@Suite("Prometheus rules: promtool checks and unit-tests them; the daemon exports what they query")
struct PrometheusRulesTests {
    @Test func promtoolChecksTheRulesAndTheirUnitTestsPass() throws {
        let check = try OpsTool.run("promtool", ["check", "rules", repositoryRoot + "/deploy/prometheus-rules.yml"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("SUCCESS: 12 rules found"), "\(check.stdout)")
        let test = try OpsTool.run("promtool", ["test", "rules", repositoryRoot + "/Tests/Prometheus/rules-test.yml"])
        #expect(test.status == 0 && test.stdout.contains("SUCCESS"), "\(test.stdout)\(test.stderr)")
    }

    @Test func everySeriesTheAlertsQueryIsOneTheDaemonExports() throws {
        let rules = try String(contentsOfFile: repositoryRoot + "/deploy/prometheus-rules.yml", encoding: .utf8)
        var names = Set<String>()
        var rest = Substring(rules)
        while let r = rest.range(of: "qcowscope_") {
            let name = rest[r.lowerBound...].prefix { $0 == "_" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }
            if !name.hasSuffix("_") && rest[..<r.lowerBound].last != ":" { names.insert(String(name)) }
            rest = rest[name.endIndex...]
        }
        #expect(names.count >= 10)
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try factory.create("held.qcow2", size: 64 << 20)
        try factory.bitmapAdd(image, "b0")
        let daemon = try OpsDaemon(["--images", factory.directory, "--listen", "127.0.0.1:0"])
        let client = try HTTPTestClient(host: "127.0.0.1", port: daemon.port)
        // The check's gauges appear once the scrubber has checked the image (its first pass starts at once).
        var text = ""
        for _ in 0..<200 {
            text = try client.request("GET", "/metrics").text
            if text.contains("# TYPE qcowscope_image_check_age_seconds ") { break }
            usleep(50_000)
        }
        for name in names {
            #expect(text.contains("# TYPE \(name) "), "the rules query \(name), which /metrics does not have")
        }
        // The writer gauge follows a real qemu-io holding the image.
        #expect(text.contains(#"qcowscope_image_writer_present{image="held.qcow2"} 0.0"#))
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-io")
        holder.arguments = ["-f", "qcow2", image]
        let input = Pipe()
        holder.standardInput = input
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        defer {
            try? input.fileHandleForWriting.close()
            holder.waitUntilExit()
        }
        var held = false
        for _ in 0..<100 where !held {
            held = try client.request("GET", "/metrics").text.contains(#"qcowscope_image_writer_present{image="held.qcow2"} 1.0"#)
            if !held { usleep(50_000) }
        }
        #expect(held)
        client.close()
        daemon.signal(SIGTERM)
        #expect(try daemon.waitForExit() == 0)
    }
}
