import Foundation
import QCOW2API
import QCOW2TestSupport
import Testing

/// Runs the built `qcowscope` executable.
enum CLI {
    /// The `qcowscope` binary next to the test bundle (SwiftPM puts every product of the build in one directory).
    static let binary: String? = {
        let fm = FileManager.default
        let arg0 = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let bundle = Bundle.main.bundleURL.resolvingSymlinksInPath()
        let dirs = [arg0.deletingLastPathComponent(), bundle, bundle.deletingLastPathComponent()]
        for dir in dirs {
            let candidate = dir.appendingPathComponent("qcowscope").path
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: candidate, isDirectory: &isDir), !isDir.boolValue, fm.isExecutableFile(atPath: candidate) {
                return candidate
            }
        }
        return nil
    }()

    /// Runs `qcowscope ARGS` in the factory's directory (stdout is a pipe, so `--format` defaults to json).
    static func run(_ factory: QemuImageFactory, _ arguments: [String]) throws -> ToolResult {
        let bin = try #require(binary, "qcowscope not found next to the test bundle (\(CommandLine.arguments[0])); run `swift build --build-tests` first")
        return try factory.run(bin, arguments, allowFailure: true, timeout: 60)
    }

    /// JSON text without the whitespace between tokens (strings kept as they are).
    static func minify(_ s: String) -> String {
        var out: [UInt8] = []
        var inString = false
        var escaped = false
        for b in s.utf8 {
            if inString {
                out.append(b)
                if escaped {
                    escaped = false
                } else if b == UInt8(ascii: "\\") {
                    escaped = true
                } else if b == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if b == 0x20 || b == 0x0a || b == 0x0d || b == 0x09 {
                continue
            } else {
                if b == UInt8(ascii: "\"") { inString = true }
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

@Suite(.enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"))
struct CLITests {
    /// An image with two bitmaps (one enabled and written, one disabled), data, and an internal snapshot.
    static func makeImage(_ factory: QemuImageFactory) throws -> String {
        let image = try factory.create("bm.qcow2", size: 64 << 20)
        try factory.bitmapAdd(image, "b-auto")
        try factory.bitmapAdd(image, "b-disabled", granularity: 4096, disabled: true)
        try factory.write(image, offset: 0, length: 1 << 20)
        try factory.write(image, offset: 33 << 20, length: 64 << 10)
        try factory.snapshotCreate(image, "snap1")
        return image
    }

    /// The compact body the API answers for `target`, without its final newline.
    static func apiBody(_ api: API, _ target: String) -> String {
        let response = api.handle(APIRequest(method: "GET", target: target))
        #expect(response.status == 200, "GET \(target)")
        return String(decoding: response.body, as: UTF8.self).trimmingCharacters(in: .newlines)
    }

    @Test func iotest303DumpsMatchExpectedOutput() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let zlib = try Iotest303.makeImage(factory, compression: "zlib")
        let text = try CLI.run(factory, ["dump-header", zlib])
        #expect(text.status == 0)
        #expect(text.stderr == "")
        #expect(text.stdout == Iotest303.text)
        let exts = try CLI.run(factory, ["dump-header-exts", zlib])
        #expect(exts.status == 0)
        #expect(exts.stdout == Iotest303.extensionsText)

        let zstd = try Iotest303.makeImage(factory, compression: "zstd")
        let json = try CLI.run(factory, ["dump-header", zstd, "-j"])
        #expect(json.status == 0)
        #expect(json.stderr == "")
        #expect(json.stdout == Iotest303.json)
        let jsonFirst = try CLI.run(factory, ["dump-header-exts", "-j", zstd])
        #expect(jsonFirst.status == 0)
        #expect(jsonFirst.stdout == Iotest303.extensionsJSON)
    }

    @Test func jsonViewsEqualTheAPIResponses() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try Self.makeImage(factory)
        let api = API(catalog: try ImageCatalog(path: factory.directory))
        let base = "/v1/images/bm.qcow2"
        let cases: [([String], String)] = [
            (["info", image], base),
            (["header", image], base + "/header"),
            (["extensions", image], base + "/extensions"),
            (["bitmaps", image], base + "/bitmaps"),
            (["table", image, "b-auto"], base + "/bitmaps/b-auto/table"),
            (["table", image, "b-disabled", "--offset", "0", "--limit", "1"], base + "/bitmaps/b-disabled/table?offset=0&limit=1"),
            (["table", image, "b-auto", "--all"], base + "/bitmaps/b-auto/table?offset=0&limit=4096"),
            (["snapshots", image], base + "/snapshots"),
            (["findings", image], base + "/findings"),
        ]
        for (arguments, target) in cases {
            let expected = Self.apiBody(api, target)
            let run = try CLI.run(factory, arguments + ["--format", "json"])
            #expect(run.status == 0, "\(arguments)")
            #expect(run.stderr == "", "\(arguments)")
            #expect(CLI.minify(run.stdout) == expected, "\(arguments) vs GET \(target)")
            #expect(run.stdout.hasSuffix("}\n") || run.stdout.hasSuffix("]\n"))
        }
        // stdout is a pipe here, so json is the default.
        let plain = try CLI.run(factory, ["header", image])
        #expect(CLI.minify(plain.stdout) == Self.apiBody(api, base + "/header"))
        // The same file reached through a relative path and a symlink.
        try FileManager.default.createSymbolicLink(atPath: factory.path("link.qcow2"), withDestinationPath: image)
        let viaLink = try CLI.run(factory, ["bitmaps", "link.qcow2"])
        #expect(CLI.minify(viaLink.stdout) == Self.apiBody(api, base + "/bitmaps"))
    }

    @Test func textFormatIsAligned() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try Self.makeImage(factory)
        let info = try CLI.run(factory, ["info", image, "--format", "text"])
        #expect(info.status == 0)
        let lines = info.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("virtual_size") && $0.hasSuffix(" 67108864") })
        #expect(lines.contains { $0.hasPrefix("name") && $0.hasSuffix(" bm.qcow2") })
        let table = try CLI.run(factory, ["table", image, "b-auto", "--format", "text"])
        #expect(table.stdout.contains("entries:\n  index  type        offset"))
    }

    @Test func findingsExitCodes() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let clean = try Self.makeImage(factory)
        let ok = try CLI.run(factory, ["findings", clean])
        #expect(ok.status == 0)

        // Autoclear bit 0 (bitmaps) set without a bitmaps extension: rule E3, severity error.
        let broken = try factory.create("e3.qcow2", size: 1 << 20)
        try Iotest303.patch(broken, at: 95, [0x01])
        let api = API(catalog: try ImageCatalog(path: factory.directory))
        let body = Self.apiBody(api, "/v1/images/e3.qcow2/findings")
        #expect(body.contains("\"code\":\"E3\""))
        let bad = try CLI.run(factory, ["findings", broken, "--format", "json"])
        #expect(bad.status == 1)
        #expect(bad.stderr == "")
        #expect(CLI.minify(bad.stdout) == body)
    }

    @Test(arguments: [
        [], ["bogus"], ["dump-header"], ["dump-header", "a.qcow2", "b.qcow2"], ["set-header", "a.qcow2", "x", "1"],
        ["table", "a.qcow2"], ["table", "a.qcow2", "b", "--all", "--limit", "2"], ["info", "a.qcow2", "--format", "yaml"],
    ])
    func usageErrorsExitTwo(arguments: [String]) throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let run = try CLI.run(factory, arguments)
        #expect(run.status == 2)
        #expect(run.stdout == "")
        #expect(run.stderr.lowercased().contains("usage:"))
    }

    @Test func errorsAreOneLineAndExitOne() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let notQcow2 = try factory.writeFile("raw.img", bytes: Array(repeating: 0, count: 65536))
        for arguments in [
            ["info", "missing.qcow2"], ["dump-header", "missing.qcow2"], ["header", notQcow2],
            ["dump-header", notQcow2], ["dump-header-exts", "-j", notQcow2], ["findings", factory.directory],
        ] {
            let run = try CLI.run(factory, arguments)
            #expect(run.status == 1, "\(arguments)")
            #expect(run.stdout == "", "\(arguments)")
            #expect(run.stderr.hasPrefix("qcowscope: "), "\(arguments)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(arguments): \(run.stderr)")
        }
        let image = try Self.makeImage(factory)
        let noBitmap = try CLI.run(factory, ["table", image, "nope"])
        #expect(noBitmap.status == 1)
        #expect(noBitmap.stderr.contains("no bitmap named 'nope'"))
    }

    @Test func dumpNeverWrites() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try Self.makeImage(factory)
        let before = try factory.sha256(image)
        // A read-only file still dumps (qcow2.py needs write access).
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: image)
        for command in ["dump-header", "dump-header-exts"] {
            let run = try CLI.run(factory, [command, image])
            #expect(run.status == 0)
        }
        #expect(try factory.sha256(image) == before)
    }

    @Test func helpDocumentsTheDifferences() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let help = try CLI.run(factory, ["--help"])
        #expect(help.status == 0)
        for word in ["O_RDONLY", "set-header", "add-header-ext", "set-feature-bit", "dump-header", "exits 1"] {
            #expect(help.stdout.contains(word), "\(word)")
        }
        let sub = try CLI.run(factory, ["dump-header", "--help"])
        #expect(sub.status == 0)
        #expect(sub.stdout.contains("-j, --json"))
    }
}
