import Foundation
import QCOW2TestSupport
import Testing

/// A backing file is followed only when it is a regular file inside the directory: a FIFO, a
/// directory, a device, or a symlink out end the chain with an error finding, at once, and nothing
/// outside is opened (a FIFO outside would block an open without O_NONBLOCK; a device would be read).
@Suite(
    "Backing chains stay inside the directory",
    .enabled(if: QemuImageFactory.toolsAvailable && CLI.binary != nil, "needs qemu-img and the built qcowscope"))
struct ChainConfinementTests {
    /// An overlay `t.qcow2` naming `backing` (not opened by qemu-img: `-u`), format `format`.
    static func overlay(_ f: QemuImageFactory, backing: String, format: String = "raw") throws {
        try f.qemuImg(["create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", format, f.path("t.qcow2"), "1M"])
    }

    /// `qcowscope chain t.qcow2 --format json`, within 20 s; it must exit 1 (the chain ended early).
    static func brokenChain(_ f: QemuImageFactory) throws -> [String: Any] {
        let binary = try #require(CLI.binary)
        let run = try f.run(binary, ["chain", "t.qcow2", "--format", "json"], allowFailure: true, timeout: 20)
        #expect(run.status == 1 && !run.signaled, "status \(run.status): \(run.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    }

    static func codes(_ doc: [String: Any]) -> [String] {
        (doc["findings"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
    }

    @Test("a FIFO, a directory and a device as backing file: B5, one layer, no hang", arguments: ["fifo", "dir", "device"])
    func notRegular(_ kind: String) throws {
        let f = try QemuImageFactory()
        defer { f.removeDirectory() }
        switch kind {
        case "fifo":
            #expect(mkfifo(f.path("base"), 0o600) == 0)
            try Self.overlay(f, backing: "base")
        case "dir":
            try FileManager.default.createDirectory(atPath: f.path("base"), withIntermediateDirectories: false)
            try Self.overlay(f, backing: "base")
        default:
            // A device inside the directory, reached by a symlink that stays inside its own path but points out.
            try FileManager.default.createSymbolicLink(atPath: f.path("base"), withDestinationPath: "/dev/zero")
            try Self.overlay(f, backing: "base")
        }
        let doc = try Self.brokenChain(f)
        #expect(doc["complete"] as? Bool == false)
        #expect((doc["layers"] as? [Any])?.count == 1)
        #expect(Self.codes(doc).contains("B5"), "\(Self.codes(doc))")
        // The map still answers, over the one layer.
        let map = try f.run(try #require(CLI.binary), ["map", "t.qcow2", "--format", "json"], timeout: 20)
        #expect(map.status == 0)
    }

    @Test("an absolute backing path to a FIFO outside the directory is never opened")
    func outsideFifo() throws {
        let f = try QemuImageFactory()
        defer { f.removeDirectory() }
        let outside = try QemuImageFactory(prefix: "qcowscope-outside-")
        defer { outside.removeDirectory() }
        #expect(mkfifo(outside.path("pipe"), 0o600) == 0)
        try Self.overlay(f, backing: outside.path("pipe"))
        let doc = try Self.brokenChain(f)
        #expect(doc["complete"] as? Bool == false && Self.codes(doc).contains("B5"), "\(doc)")
        let message = (doc["findings"] as? [[String: Any]])?.first?["message"] as? String ?? ""
        #expect(message.contains("outside the images directory"), "\(message)")
    }
}
