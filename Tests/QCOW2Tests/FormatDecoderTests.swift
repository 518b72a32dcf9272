import Foundation
import QCOW2
import QCOW2TestSupport
import Testing

/// The tolerant Format-layer decoders (used by QemuCompat) agree with the parser on real images.
@Suite(.enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"))
struct FormatDecoderTests {
    /// A v3 image with a backing file, two bitmaps (one written) and the feature name table.
    static func makeImage(_ factory: QemuImageFactory) throws -> String {
        try factory.create("base", size: 4 << 20)
        let image = try factory.create("img", size: 4 << 20, backing: "base")
        try factory.bitmapAdd(image, "one")
        try factory.write(image, pattern: 0x5a, offset: 0, length: 1 << 20)
        try factory.bitmapAdd(image, "two", granularity: 1 << 16, disabled: true)
        return image
    }

    static func bytes(_ source: any ImageSource, _ offset: UInt64, _ count: Int) throws -> [UInt8] {
        try source.read(at: offset, count: count)
    }

    @Test func decodersAgreeWithTheParser() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try QCOW2Image(path: try Self.makeImage(factory))
        let src = image.source

        var header = try Header(decodingFixedPart: try Self.bytes(src, 0, Header.fixedPartLength))
        #expect(header.compressionType == 0 && header.additionalBytes.isEmpty)
        header.compressionType = image.header.compressionType
        header.additionalBytes = image.header.additionalBytes
        #expect(header == image.header)

        #expect(image.extensions.count >= 3)
        for e in image.extensions {
            let framing = try HeaderExtension.decodeFraming(try Self.bytes(src, e.offset, HeaderExtension.framingLength), at: e.offset)
            #expect(framing.magic == e.magic && framing.length == e.length)
            #expect(HeaderExtension(magic: e.magic, length: e.length, offset: e.offset, data: e.data) == e)
        }

        let ext = try #require(image.extensions.first { $0.kind == .bitmaps })
        let fields = try BitmapsExtension(decoding: try Self.bytes(src, ext.dataOffset, BitmapsExtension.encodedLength), at: ext.dataOffset)
        #expect(fields == image.bitmapsExtension)

        #expect(image.bitmaps.count == 2)
        for b in image.bitmaps {
            let raw = try Self.bytes(src, b.entryOffset, BitmapDirectoryEntry.fixedPartLength)
            var e = try BitmapDirectoryEntry(decodingFixedPart: raw, at: b.entryOffset, index: b.index)
            #expect(e.name.bytes.isEmpty && e.extraData.isEmpty && e.padding.isEmpty)
            e.name = b.name
            e.extraData = b.extraData
            e.padding = b.padding
            #expect(e == b)

            let table = try image.bitmapTable(b, offset: 0, limit: Int(b.tableSize))
            let tableBytes = try Self.bytes(src, b.tableOffset, Int(b.tableSize) * BitmapTableEntry.encodedLength)
            let per = b.bytesPerTableEntry(clusterSize: image.header.clusterSize)
            #expect(BitmapTableEntry.decode(tableBytes, firstIndex: 0, bytesPerEntry: per, virtualSize: image.header.size) == table)
            // A trailing partial entry is ignored; without placement only the raw values count.
            let plain = BitmapTableEntry.decode(tableBytes + [1, 2, 3], firstIndex: 0)
            #expect(plain.map(\.raw) == table.map(\.raw))
            #expect(plain.allSatisfy { $0.guestStart == nil })
        }
        #expect(image.bitmaps.contains { b in (try? image.bitmapTable(b))?.contains { $0.kind == .serialized } == true })
    }

    @Test func version2GetsTheDefaults() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let path = try factory.create("v2", size: 1 << 20, options: ["compat=0.10"])
        let image = try QCOW2Image(path: path)
        let header = try Header(decodingFixedPart: try Self.bytes(image.source, 0, Header.fixedPartLength))
        #expect(header == image.header)
        #expect(header.headerLength == 72 && header.refcountOrder == 4)
    }

    @Test func shortBytesThrowTruncatedNamingTheField() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let image = try QCOW2Image(path: try factory.create("s", size: 1 << 20))
        let first = try Self.bytes(image.source, 0, Header.fixedPartLength)
        do {
            _ = try Header(decodingFixedPart: Array(first.prefix(Header.fixedPartLength - 1)))
            Issue.record("a 103-byte header decoded")
        } catch {
            #expect(error.kind == .truncated && error.field == "header_length" && error.offset == 100)
        }
        #expect(throws: QCOW2Error.self) { try HeaderExtension.decodeFraming([0, 0, 0, 1, 0, 0, 0], at: 112) }
        #expect(throws: QCOW2Error.self) { try BitmapsExtension(decoding: Array(repeating: 0, count: 23), at: 512) }
        #expect(throws: QCOW2Error.self) {
            try BitmapDirectoryEntry(decodingFixedPart: Array(repeating: 0, count: 23), at: 4096, index: 0)
        }
    }

    @Test func seekFailureOfSources() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let file = try FileImageSource(path: try factory.create("f", size: 1 << 20))
        let memory = MemoryImageSource(bytes: [1, 2, 3])
        for source in [file as any ImageSource, memory] {
            #expect(source.seekFailure(at: 0) == nil)
            // Past the end of the file is a valid position.
            #expect(source.seekFailure(at: source.size + (1 << 20)) == nil)
            #expect(source.seekFailure(at: UInt64(Int64.max) + 1) != nil)
        }
    }
}
