import QCOW2
import QCOW2TestSupport
import Testing

/// A page of a bitmap table costs one read of the page, wherever it lies in the table.
@Suite("Bitmap table paging reads only the page")
struct TablePagingTests {
    static let entries = 1 << 20

    /// A 512-byte-cluster image whose bitmap has a 1,048,576-entry (8 MiB) table.
    static let bigTable: [UInt8] = {
        var b = ImageBuilder(version: 3, clusterBits: 9, size: 1 << 20)
        b.addBitmap(name: "big", granularityBits: 9)
        b.bitmaps[0].tableSize = UInt32(entries)
        b.bitmaps[0].allocatedTableEntries = entries
        b.bitmaps[0].entryOverrides[entries - 1] = 1  // all-ones: recognisable last entry
        return b.build()
    }()

    @Test("opening reads the header cluster and the directory, not the table")
    func openIsBounded() throws {
        let src = CountingImageSource(MemoryImageSource(bytes: Self.bigTable))
        let image = try QCOW2Image(source: src)
        let t = src.totals
        #expect(t.bytes <= image.header.clusterSize + (image.bitmapsExtension?.directorySize ?? 0) + 112)
        #expect(image.bitmaps.first?.tableSize == UInt32(Self.entries))
    }

    @Test("first and last page each cost exactly one read of the page's bytes", arguments: [1, 256, 4096])
    func pageCost(limit: Int) throws {
        let src = CountingImageSource(MemoryImageSource(bytes: Self.bigTable))
        let image = try QCOW2Image(source: src)
        let bitmap = try #require(image.bitmaps.first)
        src.reset()
        let first = try image.bitmapTable(bitmap, offset: 0, limit: limit)
        #expect(src.totals.reads == 1 && src.totals.bytes == UInt64(limit * 8))
        #expect(first.first?.index == 0)
        src.reset()
        let lastOffset = UInt64(Self.entries - limit)
        let last = try image.bitmapTable(bitmap, offset: lastOffset, limit: limit)
        #expect(src.totals.reads == 1 && src.totals.bytes == UInt64(limit * 8))
        #expect(last.last?.index == UInt64(Self.entries - 1))
        #expect(last.last?.kind == .allOnes)
    }

    @Test("a page past the end, a zero limit and an oversized limit are typed errors")
    func badPages() throws {
        let image = try QCOW2Image(source: MemoryImageSource(bytes: Self.bigTable))
        let bitmap = try #require(image.bitmaps.first)
        #expect(throws: QCOW2Error.self) { try image.bitmapTable(bitmap, offset: UInt64(Self.entries), limit: 1) }
        #expect(throws: QCOW2Error.self) { try image.bitmapTable(bitmap, offset: 0, limit: 0) }
        #expect(throws: QCOW2Error.self) { try image.bitmapTable(bitmap, offset: 0, limit: Limits.maxTablePage + 1) }
        // The last page is clipped to the table.
        let tail = try image.bitmapTable(bitmap, offset: UInt64(Self.entries - 3), limit: 100)
        #expect(tail.count == 3)
    }

    @Test("guest ranges: each entry covers cluster_size * 8 * granularity bytes, clipped to the disk")
    func guestRanges() throws {
        var b = ImageBuilder(version: 3, clusterBits: 9, size: 3 << 20)
        b.addBitmap(name: "g", granularityBits: 9)
        let image = try QCOW2Image(source: MemoryImageSource(bytes: b.build()))
        let bitmap = try #require(image.bitmaps.first)
        let page = try image.bitmapTable(bitmap, offset: 0, limit: 4096)
        // 512-byte clusters, 512-byte granularity: 2 MiB per entry; 3 MiB needs 2 entries.
        #expect(page.count == 2)
        #expect(page[0].guestStart == 0 && page[0].guestLength == 2 << 20)
        #expect(page[1].guestStart == 2 << 20 && page[1].guestLength == 1 << 20)
    }
}
