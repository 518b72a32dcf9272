import Foundation
import QCOW2
import QCOW2API
import ProcessTestSupport
import QCOW2TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Agreement with qemu-img on images nobody here made (issue 16): each case compares the summary
/// with `qemu-img info --output=json` on the same file.
@Suite("Unusual images agree with qemu-img", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct UnusualImageAgreementTests {
    /// The daemon's summary and qemu-img's `info` of `name` in `factory`'s directory.
    static func both(_ factory: QemuImageFactory, _ name: String) throws -> (ours: [String: Any], qemu: [String: Any]) {
        let api = API(catalog: try ImageCatalog(path: factory.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        let r = api.handle(TestRequest(method: "GET", target: "/v1/images/\(name)"))
        let ours = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        return (ours, try factory.infoJSON(name))
    }

    /// qemu-img's `format-specific.data` object.
    static func specific(_ info: [String: Any]) -> [String: Any] {
        (info["format-specific"] as? [String: Any])?["data"] as? [String: Any] ?? [:]
    }

    @Test("lazy_refcounts is null on v2 images, where qemu-img omits it, and qemu-img's value on v3", arguments: ["0.10", "1.1"])
    func lazyRefcountsOnlyForVersion3(compat: String) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        let options = compat == "1.1" ? ["compat=1.1", "lazy_refcounts=on"] : ["compat=0.10"]
        try f.create("a.qcow2", size: 1 << 20, options: options)
        let (ours, qemu) = try Self.both(f, "a.qcow2")
        let theirs = Self.specific(qemu)["lazy-refcounts"] as? Bool
        #expect(ours["compat"] as? String == compat)
        if compat == "0.10" {
            #expect(theirs == nil, "qemu-img: \(Self.specific(qemu))")
            #expect(ours["lazy_refcounts"] is NSNull, "ours: \(String(describing: ours["lazy_refcounts"]))")
        } else {
            #expect(theirs == true)
            #expect(ours["lazy_refcounts"] as? Bool == true)
        }
    }

    @Test("a backing format extension without a backing file: no backing_file_format, as qemu-img shows none", arguments: [2, 3] as [UInt32])
    func backingFormatWithoutBackingFile(version: UInt32) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        var builder = ImageBuilder(version: version, clusterBits: 16, size: 1 << 20)
        builder.extensions = [.backingFormat("qcow2")]
        try f.writeFile("x.qcow2", bytes: builder.build())
        let (ours, qemu) = try Self.both(f, "x.qcow2")
        #expect(qemu["backing-filename-format"] == nil && qemu["backing-filename"] == nil, "qemu-img: \(qemu)")
        #expect(ours["backing_file"] is NSNull && ours["backing_file_format"] is NSNull, "ours: \(ours)")
        // The stray extension is still reported.
        let findings = try ImageValidator.allFindings(QCOW2Image(path: f.path("x.qcow2")))
        #expect(findings.contains { $0.code == "X7" })
    }

    @Test("a backslash in a valid UTF-8 name is shown once, as qemu-img shows it")
    func backslashesAreText() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        try f.create("b.qcow2", size: 1 << 20, backing: "C:\\images\\base.qcow2", extraArguments: ["-u"])
        try f.bitmapAdd("b.qcow2", "back\\slash")
        let (ours, qemu) = try Self.both(f, "b.qcow2")
        #expect(qemu["backing-filename"] as? String == "C:\\images\\base.qcow2")
        #expect(ours["backing_file"] as? String == qemu["backing-filename"] as? String, "ours: \(String(describing: ours["backing_file"]))")
        let theirs = (Self.specific(qemu)["bitmaps"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        let mine = (ours["bitmaps"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(theirs == ["back\\slash"])
        #expect(mine == theirs)
        // Not valid UTF-8: still lossless, the backslash escaped so that the form reverses.
        #expect(ByteString([0x61, 0x5c, 0xff]).escaped == "a\\\\\\xff")
    }

    @Test("backing_file_offset inside the header: no extensions are read, as QEMU reads none, and H20 says so")
    func backingOffsetInsideHeader() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        try f.create("h.qcow2", size: 1 << 20)
        try f.bitmapAdd("h.qcow2", "b1")
        try f.bitmapAdd("h.qcow2", "b2")
        let before = try Self.both(f, "h.qcow2")
        #expect(before.ours["bitmaps_total"] as? Int == 2)
        // backing_file_offset 50, backing_file_size 10: a "name" made of header bytes.
        try ImagePatch.poke64(f.path("h.qcow2"), 8, 50)
        try ImagePatch.poke(f.path("h.qcow2"), 16, [0, 0, 0, 10])
        let (ours, qemu) = try Self.both(f, "h.qcow2")
        #expect(Self.specific(qemu)["bitmaps"] == nil, "qemu-img: \(Self.specific(qemu))")
        #expect(ours["bitmaps_total"] as? Int == 0, "ours: \(String(describing: ours["bitmaps_total"]))")
        let findings = try ImageValidator.allFindings(QCOW2Image(path: f.path("h.qcow2")))
        #expect(findings.contains { $0.code == "H20" && $0.offset == 8 }, "\(findings.map(\.code))")
    }

    @Test("QEMU's 'Header extension too large': an end marker with a huge length, an extension header cut by backing_file_offset, one crossing the end of cluster 0 after header_length 108", arguments: ["end-marker", "cut-header", "cross-cluster"])
    func headerExtensionTooLarge(kind: String) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        let path = try f.create("e.qcow2", size: 1 << 20)
        let image = try QCOW2Image(path: path)
        let marker = try #require(image.extensionsEndMarker)
        if kind == "end-marker" {
            try ImagePatch.poke(path, marker + 4, [0xff, 0xff, 0xff, 0xff])
        } else if kind == "cross-cluster" {
            // header_length 108; one unknown extension of 65416 bytes at 108 ends at 65532 (QEMU pads the length, not
            // the offset), where the next 8-byte header would cross the end of the 64 KiB cluster 0.
            try ImagePatch.poke(path, 100, [0, 0, 0, 108])
            try ImagePatch.poke(path, 104, [UInt8](repeating: 0, count: 65536 - 104))
            try ImagePatch.poke(path, 108, [0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0xff, 0x88])
            try ImagePatch.poke(path, 65532, [0x87, 0x65, 0x43, 0x21])
        } else {
            // The backing file name starts 4 bytes into the first extension header; its size is 1.
            try ImagePatch.poke64(path, 8, image.header.extensionsStart + 4)
            try ImagePatch.poke(path, 16, [0, 0, 0, 1])
        }
        let refused = try f.qemuImg(["info", path], allowFailure: true)
        #expect(refused.status != 0 && refused.stderr.contains("Header extension too large"), "\(refused.stderr)")
        let findings = try ImageValidator.allFindings(QCOW2Image(path: path))
        let x1 = findings.filter { $0.code == "X1" }
        #expect(x1.count == 1 && x1[0].severity == .error && x1[0].message.contains("Header extension too large"), "\(findings.map { "\($0.code) \($0.message)" })")
        let expected: UInt64 = kind == "end-marker" ? marker + 4 : kind == "cross-cluster" ? 65532 : image.header.extensionsStart
        #expect(x1.first?.offset == expected, "\(x1)")
        // Tolerated and reported: the image is still served.
        let api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        #expect(api.handle(TestRequest(method: "GET", target: "/v1/images/e.qcow2")).status == 200)
    }

    @Test("a NUL ends a name as in QEMU: backing file 'base\\0junk' is 'base', bitmap 'b\\0t\\x1b' is 'b'; the stored bytes stay in _hex")
    func nulEndsNames() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        try f.writeFile("h21.qcow2", bytes: CraftedImages.h21.bytes)
        try f.writeFile("d16.qcow2", bytes: CraftedImages.d16.bytes)
        let (backing, qemuBacking) = try Self.both(f, "h21.qcow2")
        #expect(qemuBacking["backing-filename"] as? String == "base", "qemu-img: \(qemuBacking)")
        #expect(backing["backing_file"] as? String == "base")
        #expect(backing["backing_file_hex"] as? String == "62617365006a756e6b")
        let (bitmaps, qemuBitmaps) = try Self.both(f, "d16.qcow2")
        let theirs = (Self.specific(qemuBitmaps)["bitmaps"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        let mine = bitmaps["bitmaps"] as? [[String: Any]]
        #expect(theirs == ["b"], "qemu-img: \(Self.specific(qemuBitmaps))")
        #expect(mine?.compactMap { $0["name"] as? String } == theirs)
        #expect(mine?.first?["name_hex"] as? String == "6200741b")
    }

    @Test("every bitmap has an address: an empty name, a repeated name and a name of the form @index:N are reached as @index:N, in links, extents and the CLI")
    func everyBitmapIsAddressable() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        var builder = ImageBuilder(version: 3, clusterBits: 16, size: 64 << 20)
        for name in ["", "dup", "dup", "@index:0", "plain"] { builder.addBitmap(name: name, granularityBits: 16) }
        builder.markDirty(bitmap: 0, guestOffset: 0, length: 1 << 20)
        builder.markDirty(bitmap: 2, guestOffset: 8 << 20, length: 2 << 20)
        try f.writeFile("e.qcow2", bytes: builder.build())
        let api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        func get(_ t: String) -> Response { api.handle(TestRequest(method: "GET", target: t)) }
        let list = try #require(try JSONSerialization.jsonObject(with: Data(get("/v1/images/e.qcow2/bitmaps").body)) as? [String: Any])
        let addresses = (list["bitmaps"] as? [[String: Any]] ?? []).compactMap { $0["address"] as? String }
        #expect(addresses == ["%40index%3A0", "dup", "%40index%3A2", "%40index%3A3", "plain"])
        for (i, a) in addresses.enumerated() {
            let r = get("/v1/images/e.qcow2/bitmaps/\(a)")
            #expect(r.status == 200, "\(a)")
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
            #expect(doc["index"] as? Int == i, "\(a) reaches entry \(i)")
        }
        // The empty name's extents, a page at a time: the next link keeps the address.
        let first = get("/v1/images/e.qcow2/bitmaps/@index:0/extents?limit=1")
        #expect(first.status == 200)
        #expect(first.header("Link")?.contains("/bitmaps/%40index%3A0/extents?") == true, "\(first.header("Link") ?? "no Link")")
        let second = get("/v1/images/e.qcow2/bitmaps/@index:2/extents")
        let extents = (try JSONSerialization.jsonObject(with: Data(second.body)) as? [String: Any])?["extents"] as? [[String: Any]]
        #expect(extents?.contains { $0["dirty"] as? Bool == true && $0["start"] as? Int == 8 << 20 } == true, "the second 'dup' is entry 2's bits")
        #expect(get("/v1/images/e.qcow2/bitmaps/@index:5").status == 404)
        #expect(get("/v1/images/e.qcow2/bitmaps/@index:x").status == 404)
        if let bin = CLI.binary {
            let r = try f.run(bin, ["extents", f.path("e.qcow2"), "@index:0", "--format", "json"], allowFailure: true)
            #expect(r.status == 0 && r.stdout.contains("\"dirty\": true"), "\(r.stderr)")
        }
    }

    @Test("structures past the end of the file read as zeros, as QEMU reads them: a snapshot name cut by the end (qemu-img snapshot -l), a version 2 header cut (qemu-img info), a bitmap table past it (qemu-nbd exports it all clean); S8, H22 and T6 say so")
    func pastEndReadsAsZeros() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        // A snapshot 's1' whose name's last byte lies past the end of the file.
        try f.create("s.qcow2", size: 1 << 20)
        try f.snapshotCreate("s.qcow2", "s1")
        let s = try QCOW2Image(path: f.path("s.qcow2"))
        let entry = try #require(s.snapshots().entries.first)
        let cut = s.header.snapshotsOffset + 40 + UInt64(entry.extraDataSize) + UInt64(entry.idStrSize) + 1
        #expect(truncate(f.path("s.qcow2"), off_t(cut)) == 0)
        let listed = try f.qemuImg(["snapshot", "-l", f.path("s.qcow2")]).stdout
        let qemuRow = try #require(listed.split(separator: "\n").dropFirst(2).first, "\(listed)")
        #expect(qemuRow.split(separator: " ").prefix(2) == ["1", "s"], "qemu-img snapshot -l: \(listed)")
        let api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        let snaps = try #require(try JSONSerialization.jsonObject(with: Data(api.handle(TestRequest(method: "GET", target: "/v1/images/s.qcow2/snapshots")).body)) as? [String: Any])
        let rows = snaps["snapshots"] as? [[String: Any]] ?? []
        #expect(rows.count == 1 && rows.first?["id"] as? String == "1" && rows.first?["name"] as? String == "s", "\(snaps)")
        #expect(rows.first?["name_hex"] as? String == "7300", "the stored bytes: 's' and a zero read past the end")
        #expect((snaps["findings"] as? [[String: Any]] ?? []).contains { $0["code"] as? String == "S8" && $0["severity"] as? String == "warning" }, "\(snaps)")

        // A version 2 image cut inside its header: qemu-img info opens it; so does qcowscope, with H22.
        try f.create("v2.qcow2", size: 1 << 20, options: ["compat=0.10"])
        #expect(truncate(f.path("v2.qcow2"), 60) == 0)
        let (v2, qemuV2) = try Self.both(f, "v2.qcow2")
        #expect(v2["virtual_size"] as? Int == qemuV2["virtual-size"] as? Int && v2["cluster_size"] as? Int == qemuV2["cluster-size"] as? Int, "\(v2) vs \(qemuV2)")
        #expect(v2["compat"] as? String == "0.10")
        let v2Findings = try #require(try JSONSerialization.jsonObject(with: Data(api.handle(TestRequest(method: "GET", target: "/v1/images/v2.qcow2/findings")).body)) as? [String: Any])
        #expect((v2Findings["findings"] as? [[String: Any]] ?? []).contains { $0["code"] as? String == "H22" }, "\(v2Findings)")

        // A bitmap whose table offset points past the end of the file.
        try f.create("t.qcow2", size: 64 << 20)
        try f.bitmapAdd("t.qcow2", "b", granularity: 65536)
        try f.qemuIO("t.qcow2", ["write 0 1M"])
        let t = try QCOW2Image(path: f.path("t.qcow2"))
        let b = try #require(t.bitmaps.first)
        let fd = open(f.path("t.qcow2"), O_WRONLY)
        var offset = (UInt64(1) << 30).bigEndian
        #expect(pwrite(fd, &offset, 8, off_t(b.entryOffset)) == 8)
        close(fd)
        let nbd = try CheckpointAgreementTests.which("nbdinfo")
        let sock = f.path("t6.sock")
        let server = try ChildProcess(
            try CheckpointAgreementTests.which("qemu-nbd"), ["-r", "-t", "-k", sock, "-B", "b", "-f", "qcow2", f.path("t.qcow2")],
            stderr: .file(f.path("t6.log")))
        defer {
            server.kill()
            server.wait()
        }
        for _ in 0..<250 where !FileManager.default.fileExists(atPath: sock) && server.isRunning { usleep(20_000) }
        let map = try f.run(nbd, ["--json", "--map=qemu:dirty-bitmap:b", "nbd+unix:///?socket=\(sock)"]).stdout
        let theirs = try #require(try JSONSerialization.jsonObject(with: Data(map.utf8)) as? [[String: Any]])
        #expect(theirs.allSatisfy { ($0["type"] as? Int ?? 1) & 1 == 0 }, "QEMU exports it all clean: \(map)")
        let r = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/bitmaps/b/extents"))
        #expect(r.status == 200)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        let extents = doc["extents"] as? [[String: Any]] ?? []
        #expect(extents.count == 1 && extents.first?["dirty"] as? Bool == false && extents.first?["length"] as? Int == 64 << 20, "\(doc)")
        #expect((doc["findings"] as? [[String: Any]] ?? []).map { $0["code"] as? String } == ["T6"], "\(doc)")
    }

    @Test("a LUKS crypto header window of length 0 or past the end of the file: qemu-img refuses it, X9 says why", arguments: ["empty", "past-eof"])
    func luksWindow(kind: String) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        // The round-1 LUKS image (its maker retries qemu-img's intermittent "Unable to get accurate CPU usage").
        let made = try StandardImages.make(.luks, in: f)
        try FileManager.default.moveItem(atPath: made.path, toPath: f.path("l.qcow2"))
        let image = try QCOW2Image(path: f.path("l.qcow2"))
        #expect(!ImageValidator.allFindings(image).contains { $0.code == "X9" }, "the untouched image has no X9")
        let ext = try #require(image.extensions.first { $0.kind == .cryptoHeader })
        if kind == "empty" {
            try ImagePatch.poke64(f.path("l.qcow2"), ext.offset + 16, 0)
        } else {
            try ImagePatch.poke64(f.path("l.qcow2"), ext.offset + 8, 1 << 30)
        }
        let r = try f.qemuImg(["info", f.path("l.qcow2")], allowFailure: true)
        #expect(r.status == 1)
        #expect(r.stderr.contains(kind == "empty" ? "Request for data outside of extension header" : "Volume is not in LUKS format"), "\(r.stderr)")
        let api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        #expect(api.handle(TestRequest(method: "GET", target: "/v1/images/l.qcow2")).status == 200, "still served")
        let findings = ImageValidator.allFindings(try QCOW2Image(path: f.path("l.qcow2")))
        let x9 = try #require(findings.first { $0.code == "X9" })
        #expect(x9.message.contains(kind == "empty" ? "Request for data outside" : "Volume is not in LUKS format"))
    }

    @Test("a snapshot whose ID and name are one NUL each: qemu-img lists ID '' TAG '', /snapshots shows the same, S7 says why")
    func snapshotNamesWithNUL() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-unusual-")
        defer { f.removeDirectory() }
        let path = try f.create("s.qcow2", size: 1 << 20)
        try f.snapshotCreate("s.qcow2", "s1")
        let image = try QCOW2Image(path: path)
        let entry = try #require(image.snapshots().entries.first)
        // id_str_size and name_size 1, each byte NUL.
        try ImagePatch.poke(path, entry.entryOffset + 12, [0, 1, 0, 1])
        try ImagePatch.poke(path, entry.entryOffset + 40 + UInt64(entry.extraDataSize), [0, 0])
        let listed = try f.qemuImg(["snapshot", "-l", path])
        let line = try #require(listed.stdout.split(separator: "\n").dropFirst(2).first, "\(listed.stdout)")
        #expect(line.hasPrefix("                "), "qemu-img shows an empty ID and TAG: '\(line)'")
        let api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
        let r = api.handle(TestRequest(method: "GET", target: "/v1/images/s.qcow2/snapshots"))
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        let snap = try #require((doc["snapshots"] as? [[String: Any]])?.first)
        #expect(snap["id"] as? String == "" && snap["name"] as? String == "", "\(snap)")
        #expect(snap["id_hex"] as? String == "00" && snap["name_hex"] as? String == "00")
        let s7 = ImageValidator.allFindings(try QCOW2Image(path: path)).filter { $0.code == "S7" }
        #expect(s7.map(\.field) == ["id_str", "name"], "\(s7)")
    }
}
