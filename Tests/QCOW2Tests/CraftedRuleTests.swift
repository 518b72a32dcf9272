import QCOW2
import QCOW2TestSupport
import Testing

/// Every byte-crafted image breaks one rule: the parser reports exactly that rule and still parses.
@Suite("Crafted images: one rule each")
struct CraftedRuleTests {
    static let ruleCases = CraftedImages.all.filter { $0.code.wholeMatch(of: /[HXSEDT][0-9]+/) != nil }

    /// The other rules a case cannot help breaking too, by case name (each says why in its note).
    static let companions: [String: Set<String>] = [
        // A header cluster size above 2 MiB makes the 512-byte layout misaligned and the tables too large.
        "cluster-bits-30": ["H10", "H11", "H19", "E7"],
        "H1-cluster-bits-22": ["H10", "H19", "E7"],
        // Without a refcount table every refcount reads as 0.
        "H11-no-refcount-table": ["T5"],
        // The external data file bit without a data file name: QEMU refuses the image before its snapshots.
        "H18-snapshot-with-data-file": ["X8"],
        // A backing name read from the header's own bytes starts with a NUL.
        "H20-backing-name-inside-header": ["H21"],
        // The entry past the end reads as zeros: no extra data, which a version 3 image needs.
        "S8-table-past-eof": ["S3"],
        // The L1 and refcount tables the zeroed header names lie past the end of a 60-byte file.
        "H22-v2-header-cut": ["H19"],
        // The entries after the real one are read from the bytes after it, and past the end as zeros.
        "S1-too-many-snapshots": ["H18", "S3", "S5", "S8"],
    ]

    @Test("reports the rule and nothing else of severity error or warning", arguments: ruleCases)
    func reportsExactlyTheRule(_ c: CraftedImage) throws {
        let image = try QCOW2Image(source: MemoryImageSource(bytes: c.bytes))
        let findings = ImageValidator.allFindings(image)
        let codes = Set(findings.map(\.code))
        #expect(codes.contains(c.code), "\(c.name): expected \(c.code), got \(findings.map { "\($0.code) \($0.message)" })")
        let allowed = Self.companions[c.name] ?? []
        #expect(allowed.isSubset(of: codes), "\(c.name): companions \(allowed.subtracting(codes)) no longer reported; shorten the list")
        let others = findings.filter { $0.code != c.code && $0.severity != .info && !allowed.contains($0.code) }
        #expect(others.isEmpty, "\(c.name): unexpected \(others.map { "\($0.code) \($0.message)" })")
        for f in findings where f.code == c.code {
            #expect(!f.message.isEmpty && !f.structure.isEmpty)
        }
    }

    @Test("qemu-img refuses the X8 image (data file bit, no data file name) as the rule says")
    func qemuRefusesDataFileBitWithoutName() throws {
        let factory = try QemuImageFactory(prefix: "qcowscope-x8-")
        let path = try factory.writeFile("x8.qcow2", bytes: CraftedImages.x8.bytes)
        // `info` opens without I/O and succeeds; everything that reads (check, map, qemu-io) refuses.
        for command in [["check"], ["map"]] {
            let r = try factory.qemuImg(command + ["-f", "qcow2", path], allowFailure: true)
            #expect(r.status != 0 && r.stderr.contains("'data-file' is required for this image"), "\(command): \(r.stderr)")
        }
        let clean = try factory.writeFile("clean.qcow2", bytes: CraftedImages.clean.bytes)
        #expect(try factory.qemuImg(["check", "-f", "qcow2", clean], allowFailure: true).status == 0)
    }

    @Test("the clean baseline has no findings at all")
    func cleanHasNoFindings() throws {
        let image = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.clean.bytes))
        #expect(ImageValidator.allFindings(image).isEmpty)
        #expect(image.bitmaps.map(\.name.escaped) == ["b0"])
        let table = try image.bitmapTable(image.bitmaps[0])
        #expect(table.map(\.kind) == [.serialized])
    }

    @Test("an in-use bitmap with a stale table size is reported as in use, not as D10/D11")
    func inUseSkipsSizeRules() throws {
        let image = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.d15InUseWrongSize.bytes))
        let codes = ImageValidator.allFindings(image).map(\.code)
        #expect(codes.contains("D15"))
        #expect(!codes.contains("D10") && !codes.contains("D11"))
        #expect(image.isConsistent(image.bitmaps[0]) == false)
    }

    @Test("names are kept losslessly: invalid UTF-8, a slash, markup")
    func names() throws {
        let bad = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.nameNotUTF8.bytes))
        #expect(bad.bitmaps[0].name.bytes == [0xff, 0xfe])
        #expect(bad.bitmaps[0].name.escaped == "\\xff\\xfe")
        #expect(bad.bitmaps[0].name.hex == "fffe")
        let slash = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.nameWithSlash.bytes))
        #expect(slash.bitmaps[0].name.escaped.contains("/"))
        let markup = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.nameWithMarkup.bytes))
        #expect(markup.bitmaps[0].name.escaped == "<img src=x onerror=alert(1)>")
    }

    @Test("unreadable headers are typed errors naming field and offset")
    func fatalHeaders() {
        let cases: [(CraftedImage, QCOW2Error.Kind, String)] = [
            (CraftedImages.wrongMagic, .badMagic, "magic"), (CraftedImages.version4, .unsupportedVersion, "version"),
            (CraftedImages.headerLength100, .invalidHeader, "header_length"),
        ]
        for (c, kind, field) in cases {
            #expect(throws: QCOW2Error.self, "\(c.name)") {
                try QCOW2Image(source: MemoryImageSource(bytes: c.bytes))
            }
            do {
                _ = try QCOW2Image(source: MemoryImageSource(bytes: c.bytes))
            } catch {
                #expect(error.kind == kind, "\(c.name): \(error)")
                #expect(error.field == field, "\(c.name): \(error)")
                #expect(error.offset != nil && error.description.contains("offset"), "\(c.name): \(error)")
            }
        }
        // Too short for any header: a typed truncation error.
        #expect(throws: QCOW2Error.self) { try QCOW2Image(source: MemoryImageSource(bytes: [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])) }
    }

    @Test("cluster_bits above QEMU's 21 parses with H1; above 30 is unreadable")
    func clusterBits() throws {
        let image = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.clusterBits30.bytes))
        #expect(ImageValidator.findings(image).contains { $0.code == "H1" && $0.field == "cluster_bits" && $0.offset == 20 })
        var bytes = CraftedImages.clean.bytes
        bytes[23] = 31
        #expect(throws: QCOW2Error.self) { try QCOW2Image(source: MemoryImageSource(bytes: bytes)) }
    }

    @Test("a header with nothing behind it still parses, with findings about what is missing")
    func headerOnly() throws {
        let image = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.truncatedHeaderOnly.bytes))
        #expect(ImageValidator.allFindings(image).contains { $0.severity == .error })
    }

    @Test("unknown incompatible bit and a directory past the end of the file are findings")
    func otherFindings() throws {
        let unk = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.unknownIncompatibleBit.bytes))
        #expect(ImageValidator.findings(unk).contains { $0.code == "H4" && $0.severity == .error })
        let huge = try QCOW2Image(source: MemoryImageSource(bytes: CraftedImages.hugeBitmapCountPastEOF.bytes))
        let codes = Set(ImageValidator.findings(huge).map(\.code))
        #expect(codes.contains("E6") || codes.contains("E10"), "\(codes)")
        #expect(huge.bitmaps.count <= 65536)
    }
}
