import QCOW2
import QCOW2TestSupport
import Testing

/// A map page reads only the L1 window and the L2 entries of the range it covers: the last page of a
/// disk costs what the first costs, and no page reads more than its budget.
@Suite("Map paging reads only the page", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct MapPagingTests {
    /// A 64 GiB disk of 64 KiB clusters with metadata preallocation: 1M L2 entries (8 MiB of L2 tables).
    static func image(_ factory: QemuImageFactory) throws -> (CountingImageSource, GuestMap) {
        let path = try factory.create("big.qcow2", size: 64 << 30, options: ["preallocation=metadata"])
        let source = CountingImageSource(try FileImageSource(path: path))
        let image = try QCOW2Image(source: source)
        return (source, GuestMap(layers: [MapLayer(qcow2: image)]))
    }

    @Test("a 1 MiB range costs the same at the start and at the end of the disk: one L1 window, one L2 chunk")
    func rangeCost() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let (source, map) = try Self.image(factory)
        var costs: [UInt64] = []
        for start in [0, map.virtualSize / 2, map.virtualSize - (1 << 20)] {
            source.reset()
            let page = try map.page(from: start, to: start + (1 << 20), limit: 1000)
            #expect(page.extents.count == 1 && page.extents[0].start == start && page.extents[0].length == 1 << 20)
            #expect(page.extents[0].data && page.extents[0].offset != nil)
            costs.append(source.totals.bytes)
        }
        #expect(Set(costs).count == 1, "\(costs)")
        // 512 L1 entries (4 KiB) and at most 8192 L2 entries (64 KiB).
        #expect((costs.first ?? 0) <= 4096 + 65536, "\(costs)")
    }

    @Test("a page of the whole disk stops at its L2 budget and the next page goes on from there")
    func budgetBounds() throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        let (source, map) = try Self.image(factory)
        var from: UInt64? = 0
        var pages = 0
        var covered: UInt64 = 0
        while let start = from {
            source.reset()
            let page = try map.page(from: start, to: map.virtualSize, limit: 1000, l2Budget: 1 << 16)
            #expect(page.l2EntriesRead <= (1 << 16) + 8192)
            #expect(source.totals.bytes <= ((1 << 16) + 8192) * 8 + 4096 * 2)
            for e in page.extents {
                #expect(e.start == covered)
                covered = e.end
            }
            pages += 1
            from = page.next
            if pages > 64 { break }
        }
        // 1M entries at 2^16 per page: 16 pages, the whole disk covered once.
        #expect(pages == 16 && covered == map.virtualSize, "\(pages) pages, \(covered) bytes")
    }
}
