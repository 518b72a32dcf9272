import Foundation
import QCOW2
import QCOW2TestSupport
import QemuCompat
import Testing

@Suite(.enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"))
struct QemuDumpTests {
    @Test func iotest303TextMatchesExpectedOutput() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        let dump = try Qcow2PyDump(path: disk)
        let full = DumpRenderer(dump, style: .text).render(includeHeader: true)
        #expect(full.stop == nil)
        #expect(full.text == Iotest303.text)
        let exts = DumpRenderer(dump, style: .text).render(includeHeader: false)
        #expect(exts.stop == nil)
        #expect(exts.text == Iotest303.extensionsText)
    }

    @Test func iotest303JSONMatchesExpectedOutput() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zstd")
        let dump = try Qcow2PyDump(path: disk)
        let full = DumpRenderer(dump, style: .json).render(includeHeader: true)
        #expect(full.stop == nil)
        #expect(full.text == Iotest303.json)
        let exts = DumpRenderer(dump, style: .json).render(includeHeader: false)
        #expect(exts.text == Iotest303.extensionsJSON)
    }

    @Test func imageWithoutExtensionsDumpsEmptyArray() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        // 512-byte clusters: qemu-img writes no feature name table, so there is no extension at all.
        let disk = try factory.create("small", size: 1 << 20, options: ["cluster_size=512", "compat=0.10"])
        let dump = try Qcow2PyDump(path: disk)
        #expect(dump.extensions.isEmpty)
        #expect(DumpRenderer(dump, style: .json).render(includeHeader: false).text == "[]\n")
        #expect(DumpRenderer(dump, style: .text).render(includeHeader: false).text == "")
        let text = DumpRenderer(dump, style: .text).render(includeHeader: true).text
        // v2: qcow2.py's set_defaults() replaces the v3 fields.
        #expect(text.hasSuffix("incompatible_features     []\ncompatible_features       []\nautoclear_features        []\nrefcount_order            4\nheader_length             72\n\n"))
        #expect(text.contains("\nversion                   2\n"))
    }

    @Test func backingFormatIsQuotedText() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        try factory.create("base", size: 1 << 20)
        let overlay = try factory.create("overlay", size: 1 << 20, backing: "base")
        let dump = try Qcow2PyDump(path: overlay)
        let text = DumpRenderer(dump, style: .text).render(includeHeader: true).text
        #expect(text.contains("Header extension:\nmagic                     0xe2792aca (Backing format)\nlength                    5\ndata                      'qcow2'\n\n"))
        #expect(text.contains("\nbacking_file_size         0x4\n"))
        let json = DumpRenderer(dump, style: .json).render(includeHeader: false).text
        #expect(json.contains("        \"name\": \"Backing format\",\n        \"magic\": 3799591626,\n        \"length\": 5,\n        \"data_str\": \"'qcow2'\"\n"))
    }

    @Test func nonASCIINameGivesAllOutputAndOneProblem() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        // "bitmap-1" -> "b\xc3\xbcmap-1" (still 8 bytes): qcow2.py dies with UnicodeDecodeError here.
        let nameAt = Iotest303.directoryOffset + 24
        try Iotest303.patch(disk, at: nameAt + 1, [0xc3, 0xbc])
        let dump = try Qcow2PyDump(path: disk)
        let (text, stop) = DumpRenderer(dump, style: .text).render(includeHeader: true)
        #expect(text == Iotest303.text.replacingOccurrences(of: "bitmap-1", with: "b\\xc3\\xbcmap-1"))
        let p = try #require(stop)
        #expect(p.structure == "bitmap_directory[0]")
        #expect(p.field == "name")
        #expect(p.kind == .unicodeDecodeError)
        #expect(p.offset == UInt64(nameAt + 1))
        #expect(dump.stop == nil)

        let run = try CLI.run(factory, ["dump-header", disk])
        #expect(run.status == 1)
        #expect(run.stdout == text)
        #expect(run.stderr == "qcowscope: \(disk): \(p.description)\n")
        #expect(run.stderr.contains("bitmap_directory[0].name at offset 10289177 (0x9d0019)"))
    }

    @Test func theFirstFailureQcow2PyHitsIsNamed() throws {
        // bitmap-1's name is not ASCII and bitmap-2's table runs past the end of the file: qcow2.py dies on the
        // name (UnicodeDecodeError, as entry 0 is read) before it reaches the table (struct.error).
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        let dir = Iotest303.directoryOffset
        try Iotest303.patch(disk, at: dir + 24 + 1, [0xc3, 0xbc])
        try Iotest303.patch(disk, at: dir + 32, Iotest303.be(UInt64(dir), 8) + Iotest303.be(16, 4))
        let dump = try Qcow2PyDump(path: disk)
        #expect(dump.escapedNames.count == 1)
        let (_, stop) = DumpRenderer(dump, style: .text).render(includeHeader: true)
        let p = try #require(stop)
        #expect(p.kind == .unicodeDecodeError && p.structure == "bitmap_directory[0]", "\(p.description)")
        let run = try CLI.run(factory, ["dump-header", disk])
        #expect(run.status == 1)
        #expect(run.stderr.contains("UnicodeDecodeError") && !run.stderr.contains("struct.error"), "\(run.stderr)")
    }

    @Test func truncatedTableStopsAfterTheReadableRows() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        let fileSize = try #require(try FileManager.default.attributesOfItem(atPath: disk)[.size] as? Int)
        // bitmap-2's table moved onto the directory (the last cluster) and grown to 16 entries.
        let dir = Iotest303.directoryOffset
        try Iotest303.patch(disk, at: dir + 32, Iotest303.be(UInt64(dir), 8) + Iotest303.be(16, 4))
        let readable = (fileSize - dir) / 8
        #expect(readable > 0 && readable < 16)

        let dump = try Qcow2PyDump(path: disk)
        let (text, stop) = DumpRenderer(dump, style: .text).render(includeHeader: true)
        let head = try #require(Iotest303.text.components(separatedBy: "bitmap_table_offset       0x9c0000").first)
        #expect(text.hasPrefix(head + "bitmap_table_offset       0x9d0000\nbitmap_table_size         16\n"))
        let tail = try #require(text.components(separatedBy: "Bitmap table   type            size         offset\n").last)
        let rows = tail.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(rows.count == readable + 1)  // the rows, then the empty string after the last newline
        // Entry 0 reads the directory's first 8 bytes: bitmap-1's table offset.
        #expect(rows.first == "0              serialized      65536        10158080")
        #expect(rows.dropLast().last?.hasPrefix("\(readable - 1)") == true)
        let p = try #require(stop)
        #expect(p.structure == "bitmap_table[1]")
        #expect(p.kind == .structError)
        #expect(p.offset == UInt64(fileSize))
        // JSON prints complete documents only: the header, not the extension array.
        let json = DumpRenderer(dump, style: .json).render(includeHeader: true)
        let zlibHeader = Iotest303.json.replacingOccurrences(of: "\"incompatible_features\": 8", with: "\"incompatible_features\": 0")
        #expect(json.text == (zlibHeader.components(separatedBy: "\n\n[").first ?? "") + "\n")
        #expect(DumpRenderer(dump, style: .json).render(includeHeader: false).text == "")

        let run = try CLI.run(factory, ["dump-header", disk])
        #expect(run.status == 1)
        #expect(run.stdout == text)
        #expect(run.stderr == "qcowscope: \(disk): \(p.description)\n")
        let runJSON = try CLI.run(factory, ["dump-header-exts", "-j", disk])
        #expect(runJSON.status == 1)
        #expect(runJSON.stdout == "")
        #expect(runJSON.stderr.split(separator: "\n").count == 1)
    }

    @Test func directoryPastTheEndOfTheFile() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        // The bitmaps extension follows the 384-byte feature table: 112 + 8 + 384 = 504; data at 512.
        try Iotest303.patch(disk, at: 512 + 16, Iotest303.be(0x4000_0000, 8))
        let dump = try Qcow2PyDump(path: disk)
        let (text, stop) = DumpRenderer(dump, style: .text).render(includeHeader: true)
        let upTo = try #require(Iotest303.text.components(separatedBy: "bitmap_directory_offset").first)
        #expect(text == upTo + "bitmap_directory_offset   0x40000000\n")
        let p = try #require(stop)
        #expect(p.structure == "bitmap_directory[0]")
        #expect(p.offset == 0x4000_0000)
        #expect(p.kind == .structError)
        let run = try CLI.run(factory, ["dump-header-exts", disk])
        #expect(run.status == 1)
        #expect(run.stderr.hasPrefix("qcowscope: \(disk): bitmap_directory[0] at offset 1073741824 (0x40000000): "))
    }

    @Test func bogusExtraDataSizeStopsAtTheNextEntry() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        let dir = Iotest303.directoryOffset
        try Iotest303.patch(disk, at: dir + 20, Iotest303.be(0x7fff_ffff, 4))
        let dump = try Qcow2PyDump(path: disk)
        let (text, stop) = DumpRenderer(dump, style: .text).render(includeHeader: false)
        // Like Python: the name is read past the end of the file (empty), the table is still read,
        // and the next entry's 24 bytes cannot be.
        #expect(text.contains("\nBitmap name               \nbitmap_table_offset       0x9b0000\n"))
        #expect(text.contains("extra_data_size           2147483647\nBitmap table   type            size         offset\n0              serialized      65536        10092544\n"))
        #expect(!text.contains("bitmap-2"))
        let p = try #require(stop)
        #expect(p.structure == "bitmap_directory[1]")
        #expect(p.kind == .structError)
        // 24 + 0x7fffffff + 8 name bytes = 0x8000001f, padded to 0x80000020; the name read got 0 bytes.
        #expect(p.offset == UInt64(dir + 24 + 0x7fff_ffff + 1))
    }

    @Test func notQcow2AndTooShortAreRefused() throws {
        let source = MemoryImageSource(bytes: Array(repeating: 0, count: 4096))
        let zeros = #expect(throws: DumpStop.self) { try Qcow2PyDump(source: source) }
        #expect(zeros?.kind == .notQcow2)
        let short = MemoryImageSource(bytes: [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])
        let tooShort = #expect(throws: DumpStop.self) { try Qcow2PyDump(source: short) }
        #expect(tooShort?.kind == .structError)
    }

    @Test func unknownVersionIsDumpedAsTheBytesSay() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        try Iotest303.patch(disk, at: 4, Iotest303.be(4, 4))
        // The parser refuses version 4; qcow2.py dumps it, without v2 defaults.
        #expect(throws: QCOW2Error.self) { try QCOW2Image(path: disk) }
        let dump = try Qcow2PyDump(path: disk)
        let (text, stop) = DumpRenderer(dump, style: .text).render(includeHeader: true)
        #expect(stop == nil)
        #expect(text == Iotest303.text.replacingOccurrences(of: "\nversion                   3\n", with: "\nversion                   4\n"))
    }

    @Test func backingOffsetPast2To63StopsAfterTheExtensions() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zstd")
        try Iotest303.patch(disk, at: 8, Iotest303.be(1 << 63, 8))
        let dump = try Qcow2PyDump(path: disk)
        let p = try #require(dump.stop)
        #expect(p.kind == .valueError)
        #expect(p.structure == "header" && p.field == "backing_file_offset" && p.offset == 8)
        #expect(dump.stoppedAfterExtensions)
        // Python raises only after reading every extension: both JSON documents are complete.
        let json = DumpRenderer(dump, style: .json).render(includeHeader: true)
        #expect(json.stop == p)
        #expect(json.text == Iotest303.json.replacingOccurrences(of: "\"backing_file_offset\": 0,", with: "\"backing_file_offset\": 9223372036854775808,"))
        #expect(DumpRenderer(dump, style: .json).render(includeHeader: false).text == Iotest303.extensionsJSON)

        let run = try CLI.run(factory, ["dump-header-exts", "-j", disk])
        #expect(run.status == 1)
        #expect(run.stdout == Iotest303.extensionsJSON)
        #expect(run.stderr == "qcowscope: \(disk): \(p.description)\n")
        #expect(run.stderr.contains("header.backing_file_offset at offset 8 (0x8): cannot seek to 0x8000000000000000 (past 2^63 - 1); qcow2.py stops here with ValueError after reading the extensions"))
    }

    @Test func tableSeekTheFileSystemRefusesIsAnOSError() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        let dir = Iotest303.directoryOffset
        let far: UInt64 = 1 << 50
        try Iotest303.patch(disk, at: dir, Iotest303.be(far, 8))
        let dump = try Qcow2PyDump(path: disk)
        let (text, stop) = DumpRenderer(dump, style: .text).render(includeHeader: false)
        let p = try #require(stop)
        #expect(p.structure == "bitmap_table[0]")
        // ext4 refuses positions past 16 TiB (EINVAL), other file systems may not: ask the same source.
        if let why = try FileImageSource(path: disk).seekFailure(at: far) {
            #expect(p.kind == .osError)
            #expect(p.field == "bitmap_table_offset" && p.offset == UInt64(dir))
            #expect(p.message == "cannot seek to 0x4000000000000 (\(why)); qcow2.py stops here with OSError")
        } else {
            #expect(p.kind == .structError)
            #expect(p.offset == far)
        }
        // Either way qcow2.py has printed the entry and the table's heading line, and no row.
        #expect(text.hasSuffix("bitmap_table_offset       0x4000000000000\nbitmap_table_size         1\nflags                     0x2 (['auto'])\ntype                      1\ngranularity_bits          15\nname_size                 8\nextra_data_size           0\nBitmap table   type            size         offset\n"))
    }
}
