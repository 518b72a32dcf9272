import Foundation
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Testing

/// QEMU's iotest 303 ("Test for dumping of qcow2 image metadata"), rebuilt with the real qemu-img and
/// qemu-io, and the expected output of its `303.out`.
///
/// The expected texts below are 303.out's dump part as upstream has it, with the feature name table
/// length qemu-img 7.2 writes (384). The JSON part is the `test('zstd', True)` half, so the
/// incompatible features mask is 8 (compression type). They are written out here by hand from
/// 303.out, not produced by our renderer.
enum Iotest303 {
    /// `qcow2.py disk dump-header` on the zlib image.
    static let text = """
        magic                     0x514649fb
        version                   3
        backing_file_offset       0x0
        backing_file_size         0x0
        cluster_bits              16
        size                      10485760
        crypt_method              0
        l1_size                   1
        l1_table_offset           0x30000
        refcount_table_offset     0x10000
        refcount_table_clusters   1
        nb_snapshots              0
        snapshot_offset           0x0
        incompatible_features     []
        compatible_features       []
        autoclear_features        [0]
        refcount_order            4
        header_length             112

        \(extensionsText)
        """

    /// The extension part of ``text``: what `dump-header-exts` prints.
    static let extensionsText = """
        Header extension:
        magic                     0x6803f857 (Feature table)
        length                    384
        data                      <binary>

        Header extension:
        magic                     0x23852875 (Bitmaps)
        length                    24
        nb_bitmaps                2
        reserved32                0
        bitmap_directory_size     0x40
        bitmap_directory_offset   0x9d0000

        Bitmap name               bitmap-1
        bitmap_table_offset       0x9b0000
        bitmap_table_size         1
        flags                     0x2 (['auto'])
        type                      1
        granularity_bits          15
        name_size                 8
        extra_data_size           0
        Bitmap table   type            size         offset
        0              serialized      65536        10092544

        Bitmap name               bitmap-2
        bitmap_table_offset       0x9c0000
        bitmap_table_size         1
        flags                     0x0 ([])
        type                      1
        granularity_bits          16
        name_size                 8
        extra_data_size           0
        Bitmap table   type            size         offset
        0              all-zeroes      0            0


        """

    /// `qcow2.py disk dump-header -j` on the zstd image.
    static let json = """
        {
            "magic": 1363560955,
            "version": 3,
            "backing_file_offset": 0,
            "backing_file_size": 0,
            "cluster_bits": 16,
            "size": 10485760,
            "crypt_method": 0,
            "l1_size": 1,
            "l1_table_offset": 196608,
            "refcount_table_offset": 65536,
            "refcount_table_clusters": 1,
            "nb_snapshots": 0,
            "snapshot_offset": 0,
            "incompatible_features": 8,
            "compatible_features": 0,
            "autoclear_features": 1,
            "refcount_order": 4,
            "header_length": 112
        }

        \(extensionsJSON)
        """

    /// The extension array of ``json``: what `dump-header-exts -j` prints.
    static let extensionsJSON = """
        [
            {
                "name": "Feature table",
                "magic": 1745090647,
                "length": 384,
                "data_str": "<binary>"
            },
            {
                "name": "Bitmaps",
                "magic": 595929205,
                "length": 24,
                "data": {
                    "nb_bitmaps": 2,
                    "reserved32": 0,
                    "bitmap_directory_size": 64,
                    "bitmap_directory_offset": 10289152,
                    "bitmap_directory": [
                        {
                            "name": "bitmap-1",
                            "bitmap_table_offset": 10158080,
                            "bitmap_table_size": 1,
                            "flags": 2,
                            "type": 1,
                            "granularity_bits": 15,
                            "name_size": 8,
                            "extra_data_size": 0,
                            "bitmap_table": [
                                {
                                    "type": "serialized",
                                    "offset": 10092544,
                                    "reserved": 0
                                }
                            ]
                        },
                        {
                            "name": "bitmap-2",
                            "bitmap_table_offset": 10223616,
                            "bitmap_table_size": 1,
                            "flags": 0,
                            "type": 1,
                            "granularity_bits": 16,
                            "name_size": 8,
                            "extra_data_size": 0,
                            "bitmap_table": [
                                {
                                    "type": "all-zeroes",
                                    "offset": 0,
                                    "reserved": 0
                                }
                            ]
                        }
                    ]
                }
            }
        ]

        """

    /// The bitmap directory offset of the 303 image (from 303.out).
    static let directoryOffset = 0x9d_0000

    /// Builds `disk` exactly as 303 does: 10 MiB, bitmap-1 (g 32 KiB) + 1 MiB writes at 0..5 MiB,
    /// bitmap-2 (g 64 KiB, disabled) + writes at 6 and 7 MiB, each write its own qemu-io run.
    static func makeImage(_ factory: QemuImageFactory, compression: String) throws -> String {
        let disk = try factory.create("disk-\(compression)", size: 10 << 20, options: ["compression_type=\(compression)"])
        try factory.bitmapAdd(disk, "bitmap-1", granularity: 1 << 15)
        for i in 0..<6 { try factory.write(disk, pattern: nil, offset: UInt64(i) << 20, length: 1 << 20) }
        try factory.bitmapAdd(disk, "bitmap-2", granularity: 1 << 16, disabled: true)
        for i in 6..<8 { try factory.write(disk, pattern: nil, offset: UInt64(i) << 20, length: 1 << 20) }
        return disk
    }

    /// Overwrites bytes of a file in place (the image is then read only by the code under test).
    static func patch(_ path: String, at offset: Int, _ bytes: [UInt8]) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Big-endian bytes of `value`, `width` bytes wide.
    static func be(_ value: UInt64, _ width: Int) -> [UInt8] {
        (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(width - 1 - $0))) }
    }
}

@Suite(.enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"))
struct QemuDumpTests {
    @Test func iotest303TextMatchesExpectedOutput() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        let dump = try QemuDump(path: disk)
        let full = dump.text(includeHeader: true)
        #expect(full.problem == nil)
        #expect(full.text == Iotest303.text)
        let exts = dump.text(includeHeader: false)
        #expect(exts.problem == nil)
        #expect(exts.text == Iotest303.extensionsText)
    }

    @Test func iotest303JSONMatchesExpectedOutput() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zstd")
        let dump = try QemuDump(path: disk)
        let full = dump.json(includeHeader: true)
        #expect(full.problem == nil)
        #expect(full.text == Iotest303.json)
        let exts = dump.json(includeHeader: false)
        #expect(exts.text == Iotest303.extensionsJSON)
    }

    @Test func imageWithoutExtensionsDumpsEmptyArray() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        // 512-byte clusters: qemu-img writes no feature name table, so there is no extension at all.
        let disk = try factory.create("small", size: 1 << 20, options: ["cluster_size=512", "compat=0.10"])
        let dump = try QemuDump(path: disk)
        #expect(dump.extensions.isEmpty)
        #expect(dump.json(includeHeader: false).text == "[]\n")
        #expect(dump.text(includeHeader: false).text == "")
        let text = dump.text(includeHeader: true).text
        // v2: qcow2.py's set_defaults() replaces the v3 fields.
        #expect(text.hasSuffix("incompatible_features     []\ncompatible_features       []\nautoclear_features        []\nrefcount_order            4\nheader_length             72\n\n"))
        #expect(text.contains("\nversion                   2\n"))
    }

    @Test func backingFormatIsQuotedText() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        try factory.create("base", size: 1 << 20)
        let overlay = try factory.create("overlay", size: 1 << 20, backing: "base")
        let dump = try QemuDump(path: overlay)
        let text = dump.text(includeHeader: true).text
        #expect(text.contains("Header extension:\nmagic                     0xe2792aca (Backing format)\nlength                    5\ndata                      'qcow2'\n\n"))
        #expect(text.contains("\nbacking_file_size         0x4\n"))
        let json = dump.json(includeHeader: false).text
        #expect(json.contains("        \"name\": \"Backing format\",\n        \"magic\": 3799591626,\n        \"length\": 5,\n        \"data_str\": \"'qcow2'\"\n"))
    }

    @Test func nonASCIINameGivesAllOutputAndOneProblem() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let disk = try Iotest303.makeImage(factory, compression: "zlib")
        // "bitmap-1" -> "b\xc3\xbcmap-1" (still 8 bytes): qcow2.py dies with UnicodeDecodeError here.
        let nameAt = Iotest303.directoryOffset + 24
        try Iotest303.patch(disk, at: nameAt + 1, [0xc3, 0xbc])
        let dump = try QemuDump(path: disk)
        let (text, problem) = dump.text(includeHeader: true)
        #expect(text == Iotest303.text.replacingOccurrences(of: "bitmap-1", with: "b\\xc3\\xbcmap-1"))
        let p = try #require(problem)
        #expect(p.structure == "bitmap_directory[0]")
        #expect(p.field == "name")
        #expect(p.offset == UInt64(nameAt + 1))
        #expect(dump.failure == nil)

        let run = try CLI.run(factory, ["dump-header", disk])
        #expect(run.status == 1)
        #expect(run.stdout == text)
        #expect(run.stderr == "qcowscope: \(disk): \(p.description)\n")
        #expect(run.stderr.contains("bitmap_directory[0].name at offset 10289177 (0x9d0019)"))
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

        let dump = try QemuDump(path: disk)
        let (text, problem) = dump.text(includeHeader: true)
        let head = try #require(Iotest303.text.components(separatedBy: "bitmap_table_offset       0x9c0000").first)
        #expect(text.hasPrefix(head + "bitmap_table_offset       0x9d0000\nbitmap_table_size         16\n"))
        let tail = try #require(text.components(separatedBy: "Bitmap table   type            size         offset\n").last)
        let rows = tail.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(rows.count == readable + 1)  // the rows, then the empty string after the last newline
        // Entry 0 reads the directory's first 8 bytes: bitmap-1's table offset.
        #expect(rows.first == "0              serialized      65536        10158080")
        #expect(rows.dropLast().last?.hasPrefix("\(readable - 1)") == true)
        let p = try #require(problem)
        #expect(p.structure == "bitmap_table[1]")
        #expect(p.offset == UInt64(fileSize))
        // JSON prints complete documents only: the header, not the extension array.
        let json = dump.json(includeHeader: true)
        let zlibHeader = Iotest303.json.replacingOccurrences(of: "\"incompatible_features\": 8", with: "\"incompatible_features\": 0")
        #expect(json.text == (zlibHeader.components(separatedBy: "\n\n[").first ?? "") + "\n")
        #expect(dump.json(includeHeader: false).text == "")

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
        let dump = try QemuDump(path: disk)
        let (text, problem) = dump.text(includeHeader: true)
        let upTo = try #require(Iotest303.text.components(separatedBy: "bitmap_directory_offset").first)
        #expect(text == upTo + "bitmap_directory_offset   0x40000000\n")
        let p = try #require(problem)
        #expect(p.structure == "bitmap_directory[0]")
        #expect(p.offset == 0x4000_0000)
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
        let dump = try QemuDump(path: disk)
        let (text, problem) = dump.text(includeHeader: false)
        // Like Python: the name is read past the end of the file (empty), the table is still read,
        // and the next entry's 24 bytes cannot be.
        #expect(text.contains("\nBitmap name               \nbitmap_table_offset       0x9b0000\n"))
        #expect(text.contains("extra_data_size           2147483647\nBitmap table   type            size         offset\n0              serialized      65536        10092544\n"))
        #expect(!text.contains("bitmap-2"))
        let p = try #require(problem)
        #expect(p.structure == "bitmap_directory[1]")
        // 24 + 0x7fffffff + 8 name bytes = 0x8000001f, padded to 0x80000020; the name read got 0 bytes.
        #expect(p.offset == UInt64(dir + 24 + 0x7fff_ffff + 1))
    }

    @Test func notQcow2AndTooShortAreRefused() throws {
        let source = MemoryImageSource(bytes: Array(repeating: 0, count: 4096))
        #expect(throws: QemuDump.Problem.self) { try QemuDump(source: source) }
        let short = MemoryImageSource(bytes: [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])
        #expect(throws: QemuDump.Problem.self) { try QemuDump(source: short) }
    }
}
