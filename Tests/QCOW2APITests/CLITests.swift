import Foundation
import QCOW2API
import QCOW2TestSupport
import Testing

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
        let response = api.handle(TestRequest(method: "GET", target: target))
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
            (["l1", image], base + "/l1"),
            (["l1", image, "--offset", "0", "--limit", "1"], base + "/l1?offset=0&limit=1"),
            (["l2", image, "0", "--limit", "8"], base + "/l1/0/l2?limit=8"),
            (["map", image], base + "/map?limit=10000"),
            (["map", image, "--start", "0", "--length", "65536", "--limit", "5"], base + "/map?start=0&length=65536&limit=5"),
            (["chain", image], base + "/chain"),
            (["allocation", image], base + "/allocation"),
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
        #expect(lines.contains { $0.hasPrefix("virtual_size") && $0.hasSuffix("  64 MiB (67108864 bytes)") })
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
        ["extents", "a.qcow2"], ["extents", "a.qcow2", "b", "--all", "--limit", "2"], ["extents", "a.qcow2", "b", "--start", "-1"],
        ["table", "a.qcow2", "b", "--limit", "0"], ["extents", "a.qcow2", "b", "--length", "0"],
    ])
    func usageErrorsExitTwo(arguments: [String]) throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let run = try CLI.run(factory, arguments)
        #expect(run.status == 2)
        #expect(run.stdout == "")
        #expect(run.stderr.lowercased().contains("usage:"))
    }

    /// Issue 15.3: a bad option value names the option and its range, exits 2, in the CLI's words.
    @Test(arguments: [
        (["table", "IMG", "b-auto", "--limit", "0"], "--limit must be 1...4096"),
        (["extents", "IMG", "b-auto", "--start", "-1"], "--start must be >= 0"),
        (["extents", "IMG", "b-auto", "--limit", "10001"], "--limit must be 1...10000"),
        (["extents", "IMG", "b-auto", "--start", "67108864"], "--start must be 0...67108863"),
    ])
    func optionValuesNameTheOption(arguments: [String], message: String) throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try Self.makeImage(factory)
        let run = try CLI.run(factory, arguments.map { $0 == "IMG" ? image : $0 })
        #expect(run.status == 2, "\(arguments): \(run.stderr)")
        #expect(run.stdout == "")
        #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        #expect(!run.stderr.contains("parameter '"), "HTTP wording in \(run.stderr)")
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

    @Test func extentsEqualTheAPIResponses() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try Self.makeImage(factory)
        let api = API(catalog: try ImageCatalog(path: factory.directory))
        let base = "/v1/images/bm.qcow2/bitmaps/"
        let cases: [([String], String)] = [
            (["extents", image, "b-auto"], base + "b-auto/extents"),
            (["extents", image, "b-disabled"], base + "b-disabled/extents"),
            (["extents", image, "b-auto", "--limit", "1"], base + "b-auto/extents?limit=1"),
            (["extents", image, "b-auto", "--start", "512", "--length", "34603008", "--limit", "2"],
             base + "b-auto/extents?start=512&length=34603008&limit=2"),
            (["extents", image, "b-auto", "--all"], base + "b-auto/extents?limit=10000"),
            (["extents", image, "b-auto", "--all", "--start", "1048576"], base + "b-auto/extents?start=1048576&limit=10000"),
        ]
        for (arguments, target) in cases {
            let expected = Self.apiBody(api, target)
            let run = try CLI.run(factory, arguments + ["--format", "json"])
            #expect(run.status == 0, "\(arguments)")
            #expect(run.stderr == "", "\(arguments)")
            #expect(CLI.minify(run.stdout) == expected, "\(arguments) vs GET \(target)")
        }
        // A one-extent page has a cursor; the whole range has none and three extents (1 MiB dirty, clean, 64 KiB dirty, clean).
        let page = try CLI.run(factory, ["extents", image, "b-auto", "--limit", "1"])
        #expect(page.stdout.contains("\"next\": \"1048576-"))
        let whole = try CLI.run(factory, ["extents", image, "b-auto", "--all"])
        #expect(CLI.minify(whole.stdout).contains(
            "\"extents\":[{\"start\":0,\"length\":1048576,\"dirty\":true},{\"start\":1048576,\"length\":33554432,\"dirty\":false},"
                + "{\"start\":34603008,\"length\":65536,\"dirty\":true},{\"start\":34668544,\"length\":32440320,\"dirty\":false}],\"next\":null"))
    }

    /// A crafted bitmap whose bits alternate (0x55): 32768 one-granule extents, four pages of 10000.
    @Test func extentsAllJoinsPages() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        var builder = ImageBuilder(version: 3, clusterBits: 12, size: 16 << 20)
        builder.addBitmap(name: "alt", granularityBits: 9)
        builder.bitmaps[0].dataClusters[0] = [UInt8](repeating: 0x55, count: 4096)
        let image = try factory.writeFile("alt.qcow2", bytes: builder.build())
        let api = API(catalog: try ImageCatalog(path: factory.directory))
        // The pages the daemon serves, followed by hand.
        var pages: [String] = []
        var target = "/v1/images/alt.qcow2/bitmaps/alt/extents?limit=10000"
        while true {
            let body = Self.apiBody(api, target)
            pages.append(body)
            guard let r = body.range(of: "\"next\":\""), let end = body[r.upperBound...].firstIndex(of: "\"") else { break }
            target = "/v1/images/alt.qcow2/bitmaps/alt/extents?limit=10000&cursor=" + body[r.upperBound..<end]
        }
        #expect(pages.count == 4)
        let run = try CLI.run(factory, ["extents", image, "alt", "--all", "--format", "json"])
        #expect(run.status == 0)
        let doc = CLI.minify(run.stdout)
        // The first page's fields, every page's extents in order, next null.
        func extents(_ body: String) -> String {
            let a = body.range(of: "\"extents\":[")!.upperBound
            let b = body.range(of: "],\"next\":")!.lowerBound
            return String(body[a..<b])
        }
        let first = pages[0]
        #expect(doc.hasPrefix(String(first[..<first.range(of: "\"extents\":[")!.upperBound])))
        #expect(extents(doc) == pages.map(extents).joined(separator: ","))
        #expect(doc.hasSuffix("],\"next\":null}"))
        #expect(doc.components(separatedBy: "\"dirty\":true").count - 1 == 16384)
        // Text: one row per extent plus the header row and a total line.
        let text = try CLI.run(factory, ["extents", image, "alt", "--all", "--format", "text"])
        #expect(text.stdout.hasSuffix("total: 32768 extents, 8388608 dirty bytes of 16777216 (50.00%)\n"))
        #expect(text.stdout.contains("\n     start  length  dirty\n         0     512  dirty\n       512     512  clean\n"))
    }

    @Test func extentsAndBitmapsText() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try Self.makeImage(factory)
        let text = try CLI.run(factory, ["extents", image, "b-auto", "--format", "text"])
        #expect(text.status == 0)
        #expect(text.stdout.contains("""
            extents:
                 start    length  dirty
                     0   1048576  dirty
               1048576  33554432  clean
              34603008     65536  dirty
              34668544  32440320  clean
            total: 4 extents, 1114112 dirty bytes of 67108864 (1.66%)

            """))
        #expect(text.stdout.hasPrefix("bitmap ") && text.stdout.contains(" b-auto\ngranularity "))
        let page = try CLI.run(factory, ["extents", image, "b-auto", "--limit", "1", "--format", "text"])
        #expect(page.stdout.hasSuffix("total: 1 extent, 1048576 dirty bytes of 1048576 (100.00%) in this page; more from `next`\n"))
        // `bitmaps` shows each bitmap's dirty total and fraction in text form too.
        let bitmaps = try CLI.run(factory, ["bitmaps", image, "--format", "text"])
        let lines = bitmaps.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains { $0.hasPrefix("dirty_bytes ") && $0.hasSuffix(" 1.06 MiB (1114112 bytes)") })
        #expect(lines.contains { $0.hasPrefix("dirty_fraction ") && $0.hasSuffix(" 0.0166015625") })
        #expect(lines.contains { $0.hasPrefix("dirty_bytes ") && $0.hasSuffix(" 0 B (0 bytes)") })  // b-disabled
        // Errors: one line, exit 1.
        for arguments in [["extents", image, "nope"], ["extents", image + ".missing", "b-auto"]] {
            let run = try CLI.run(factory, arguments)
            #expect(run.status == 1, "\(arguments)")
            #expect(run.stdout == "", "\(arguments)")
            #expect(run.stderr.hasPrefix("qcowscope: ") && run.stderr.split(separator: "\n").count == 1, "\(arguments): \(run.stderr)")
        }
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

    /// Every command's `--help` shows a runnable example of that command, as the README promises.
    @Test(arguments: [
        "info", "header", "extensions", "bitmaps", "table", "extents", "snapshots", "findings", "l1", "l2",
        "dump-header", "dump-header-exts",
    ])
    func helpHasAnExample(command: String) throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let help = try CLI.run(factory, [command, "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("Example: qcowscope \(command) "), "\(command) --help has no example")
    }
}
