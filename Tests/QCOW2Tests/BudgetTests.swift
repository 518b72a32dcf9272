import QCOW2
import QCOW2TestSupport
import Testing

/// A small hostile file cannot make whole-image work unbounded: one budget per image.
@Suite("Image-wide budgets")
struct BudgetTests {
    @Test("many bitmaps sharing one huge table: findings stop at the budget and say so, quickly")
    func sharedHugeTable() throws {
        var b = ImageBuilder(version: 3, clusterBits: 9, size: 1 << 20)
        b.addBitmap(name: "t", granularityBits: 9, flags: ImageBuilder.Bitmap.inUse)
        b.bitmaps[0].tableSize = 1 << 20
        b.bitmaps[0].allocatedTableEntries = 1 << 20
        let tableOffset = b.layout().bitmapTableOffsets[0]
        for i in 1..<40 {
            b.addBitmap(name: "b\(i)", granularityBits: 9, flags: ImageBuilder.Bitmap.inUse)
            b.bitmaps[i].tableOffset = tableOffset
            b.bitmaps[i].tableSize = 1 << 20
            b.bitmaps[i].allocatedTableEntries = 1
        }
        let src = CountingImageSource(MemoryImageSource(bytes: b.build()))
        let image = try QCOW2Image(source: src)
        #expect(image.bitmaps.count == 40)
        src.reset()
        let start = ContinuousClock.now
        let findings = ImageValidator.allFindings(image)
        let took = ContinuousClock.now - start
        #expect(findings.contains { $0.severity == .info && $0.message.contains("budget") })
        #expect(src.totals.bytes <= Limits.maxTableEntriesPerImage * 8 + (8 << 20))
        #expect(took < .seconds(20))
    }

    @Test("checking 2,000 bitmaps reads their tables and refcounts a window at a time, with the same findings")
    func manySmallTablesReadInWindows() throws {
        var b = ImageBuilder(version: 3, clusterBits: 9, size: 1 << 20)
        for i in 0..<2000 { b.addBitmap(name: "b\(i)", granularityBits: 16) }
        // One table entry points at a cluster with refcount 0 (T5), another has a data offset and the all-ones bit (T2).
        b.bitmaps[7].entryOverrides[0] = 0x200 * 3
        b.bitmaps[1999].entryOverrides[0] = 0x201
        let src = CountingImageSource(MemoryImageSource(bytes: b.build()))
        let image = try QCOW2Image(source: src)
        #expect(image.bitmaps.count == 2000)
        src.reset()
        let findings = ImageValidator.allFindings(image)
        let windowed = src.totals.reads
        src.reset()
        // The same checks bitmap by bitmap on the plain source: one read or more per bitmap.
        let plain = ImageValidator.findings(image) + image.bitmaps.flatMap { ImageValidator.tableFindings(image, $0) }
            + ImageValidator.snapshotFindings(image)
        #expect(src.totals.reads >= 2000)
        #expect(windowed <= 100, "reads through the windows: \(windowed)")
        #expect(findings.map(\.message) == plain.map(\.message))
        #expect(findings.contains { $0.rule == .t2 })
    }
}
