import Foundation
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Testing

/// The defects a new user met (issue 15), each proven fixed on real images made by qemu-img.
@Suite("New-user defects", .serialized, .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct NewUserDefectTests {
    /// A directory with an overlay whose backing file is removed, and overlays named by absolute paths.
    final class Fixture {
        let factory: QemuImageFactory
        let api: API

        init() throws {
            let f = try QemuImageFactory(prefix: "qcowscope-defects-")
            factory = f
            try f.create("base.qcow2", size: 1 << 20)
            try f.create("overlay.qcow2", size: 1 << 20, backing: "base.qcow2")
            try f.create("gone-base.qcow2", size: 1 << 20)
            try f.create("orphan.qcow2", size: 1 << 20, backing: "gone-base.qcow2")
            try FileManager.default.removeItem(atPath: f.path("gone-base.qcow2"))
            try f.create("absolute-inside.qcow2", size: 1 << 20, backing: f.path("base.qcow2"))
            try f.create(
                "absolute-outside.qcow2", size: 1 << 20, backing: "/nonexistent-qcowscope/base.qcow2",
                extraArguments: ["-u"])
            try f.create("escape.qcow2", size: 1 << 20, backing: "../base.qcow2", extraArguments: ["-u"])
            try f.create("bitmaps.qcow2", size: 4 << 20)
            try f.bitmapAdd("bitmaps.qcow2", "on")
            try f.bitmapAdd("bitmaps.qcow2", "off", disabled: true)
            api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        }

        func json(_ target: String) throws -> [String: Any] {
            let r = api.handle(TestRequest(method: "GET", target: target))
            guard let o = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
                throw QemuToolError.unexpectedOutput(command: target, detail: String(decoding: r.body, as: UTF8.self))
            }
            return o
        }

        func findings(_ image: String) throws -> [[String: Any]] {
            try json("/v1/images/\(image)/findings")["findings"] as? [[String: Any]] ?? []
        }
    }

    @Test("a missing backing file is an error finding naming the stored name and where it was looked for")
    func missingBackingFile() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        let s = try fx.json("/v1/images/orphan.qcow2")
        #expect(s["backing_file"] as? String == "gone-base.qcow2")
        #expect(s["backing_file_present"] as? Bool == false)
        #expect((s["finding_counts"] as? [String: Int])?["error"] == 1)
        let b1 = try #require(try fx.findings("orphan.qcow2").first { $0["code"] as? String == "B1" })
        #expect(b1["severity"] as? String == "error" && b1["value"] as? String == "gone-base.qcow2")
        #expect((b1["message"] as? String)?.contains(fx.factory.path("gone-base.qcow2")) == true, "\(b1)")
        let header = try fx.json("/v1/images/orphan.qcow2/header")
        #expect(b1["offset"] as? Int == header["backing_file_offset"] as? Int, "\(b1)")

        let listed = try #require((try fx.json("/v1/images")["images"] as? [[String: Any]])?.first { $0["name"] as? String == "orphan.qcow2" })
        #expect(listed["status"] as? String == "findings")

        // The backing file comes back: the overlay is ok again, with a new ETag, although the overlay did not change.
        let before = fx.api.handle(TestRequest(method: "GET", target: "/v1/images/orphan.qcow2")).header("ETag")
        try fx.factory.create("gone-base.qcow2", size: 1 << 20)
        let again = fx.api.handle(TestRequest(method: "GET", target: "/v1/images/orphan.qcow2"))
        #expect(again.header("ETag") != before)
        #expect(try fx.json("/v1/images/orphan.qcow2")["backing_file_present"] as? Bool == true)
        #expect(try fx.findings("orphan.qcow2").allSatisfy { $0["code"] as? String != "B1" })
    }

    @Test("present backing files, relative or absolute inside the directory, are true; names leaving it are not followed")
    func backingFileResolution() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        #expect(try fx.json("/v1/images/overlay.qcow2")["backing_file_present"] as? Bool == true)
        #expect(try fx.json("/v1/images/absolute-inside.qcow2")["backing_file_present"] as? Bool == true)
        #expect(try fx.json("/v1/images/base.qcow2")["backing_file_present"] is NSNull)
        for image in ["absolute-outside.qcow2", "escape.qcow2"] {
            let s = try fx.json("/v1/images/\(image)")
            #expect(s["backing_file_present"] is NSNull, "\(image)")
            let b2 = try #require(try fx.findings(image).first { $0["code"] as? String == "B2" }, "\(image)")
            #expect(b2["severity"] as? String == "info")
            #expect((b2["message"] as? String)?.contains("outside the images directory") == true, "\(b2)")
        }
    }

    @Test("one flags vocabulary: `flags` is the list of names in every bitmap view, `enabled` says auto")
    func oneFlagsVocabulary() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        let summary = try #require(try fx.json("/v1/images/bitmaps.qcow2")["bitmaps"] as? [[String: Any]])
        let list = try #require(try fx.json("/v1/images/bitmaps.qcow2/bitmaps")["bitmaps"] as? [[String: Any]])
        let one = try fx.json("/v1/images/bitmaps.qcow2/bitmaps/off")
        #expect(summary.map { $0["flags"] as? [String] } == [["auto"], []])
        #expect(list.map { $0["flags"] as? [String] } == [["auto"], []])
        #expect(summary.map { $0["enabled"] as? Bool } == [true, false])
        #expect(list.map { $0["enabled"] as? Bool } == [true, false])
        #expect(list.map { $0["flags_raw"] as? Int } == [2, 0])
        #expect(one["flags"] as? [String] == [] && one["enabled"] as? Bool == false)
        #expect(list.allSatisfy { $0["flag_names"] == nil } && one["flag_names"] == nil)
    }

    @Test("an in-use bitmap with no writer present blames a crash, not a writer")
    func inUseWithoutWriter() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        try fx.factory.create("crashed.qcow2", size: 4 << 20)
        try fx.factory.bitmapAdd("crashed.qcow2", "b-inuse")
        try fx.factory.crashWithInUseBitmap("crashed.qcow2")
        let list = try #require(try fx.json("/v1/images/crashed.qcow2/bitmaps")["bitmaps"] as? [[String: Any]])
        let inUse = try #require(list.first { $0["in_use"] as? Bool == true })
        #expect(inUse["writer_present"] as? Bool == false)
        let reason = try #require(inUse["inconsistent_reason"] as? String)
        #expect(reason.contains("crashed or was killed") && !reason.contains("writer has the image open"), "\(reason)")
    }

    @Test("CLI text prints sizes as qemu-img does and the magic in hex")
    func cliTextSizes() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        let info = try CLI.run(fx.factory, ["info", fx.factory.path("bitmaps.qcow2"), "--format", "text"])
        #expect(info.status == 0)
        let lines = info.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("virtual_size ") && $0.hasSuffix("  4 MiB (4194304 bytes)") }, "\(info.stdout)")
        #expect(lines.contains { $0.hasPrefix("cluster_size ") && $0.hasSuffix("  64 KiB (65536 bytes)") }, "\(info.stdout)")
        let header = try CLI.run(fx.factory, ["header", fx.factory.path("bitmaps.qcow2"), "--format", "text"])
        #expect(header.stdout.split(separator: "\n").contains { $0.hasPrefix("magic ") && $0.hasSuffix("  0x514649fb") }, "\(header.stdout)")
        let json = try CLI.run(fx.factory, ["info", fx.factory.path("bitmaps.qcow2"), "--format", "json"])
        #expect(json.stdout.contains("\"virtual_size\": 4194304"))
    }

    @Test("virtual sizes read as qemu-img info prints them", arguments: [512 as UInt64, 1_536 << 10, 1_000 << 20, 10 << 30, 1_023 << 20])
    func sizesAgreeWithQemuImg(size: UInt64) throws {
        let factory = try QemuImageFactory(prefix: "qcowscope-sizes-")
        defer { factory.removeDirectory() }
        let image = try factory.create("s.qcow2", size: size)
        let ours = try CLI.run(factory, ["info", image, "--format", "text"])
        let theirs = try factory.qemuImg(["info", image])
        let line = try #require(theirs.stdout.split(separator: "\n").first { $0.hasPrefix("virtual size: ") })
        let expected = line.dropFirst("virtual size: ".count)
        let mine = try #require(ours.stdout.split(separator: "\n").first { $0.hasPrefix("virtual_size ") })
        #expect(mine.hasSuffix("  " + expected), "qemu-img: \(expected); qcowscope: \(mine)")
    }
}
