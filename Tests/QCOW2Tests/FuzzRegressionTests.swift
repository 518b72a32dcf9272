import QCOW2
import Testing

/// Inputs that once trapped the parser, found by the libFuzzer target (Tests/Fuzz) or while
/// reviewing what it cannot reach. Each is exercised the way a request would (parse, every view's
/// reads, pages, extents, dirty totals, snapshots, findings) and must not trap.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Everything a request can make the parser do with `source` (the fuzz target, minus the JSON).
    static func exercise(_ source: any ImageSource) {
        guard let image = try? QCOW2Image(source: source) else { return }
        for g in FeatureGroup.allCases { _ = image.featureNames(g) }
        let size = image.header.size
        for b in image.bitmaps.prefix(256) {
            _ = try? image.dirtyBytes(b, budget: 32 << 20)
            let total = UInt64(b.tableSize)
            _ = try? image.bitmapTable(b, offset: 0, limit: 256)
            if total > 0 { _ = try? image.bitmapTable(b, offset: total - 1, limit: 1) }
            if size > 0 {
                _ = try? image.dirtyExtents(b, start: 0, length: size, limit: 1000)
                _ = try? image.dirtyExtents(b, start: size - 1, length: 1, limit: 1)
            }
        }
        _ = ImageValidator.snapshotFindings(image)
        _ = ImageValidator.allFindings(image)
    }

    /// Bytes from a hex string (whitespace ignored).
    static func hex(_ text: String) -> [UInt8] {
        let digits = text.unicodeScalars.compactMap { UInt8(String($0), radix: 16) }
        return stride(from: 0, to: digits.count - 1, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
    }

    /// A sparse file: a few byte runs at given offsets, zeroes elsewhere, any reported size.
    struct SparseSource: ImageSource {
        var runs: [(offset: UInt64, bytes: [UInt8])]
        var size: UInt64

        func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8] {
            guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
                throw QCOW2Error(.truncated, structure: "file", offset: offset, message: "read past the end")
            }
            var out = [UInt8](repeating: 0, count: count)
            for run in runs {
                let lo = max(offset, run.offset)
                let hi = min(offset + UInt64(count), run.offset + UInt64(run.bytes.count))
                guard lo < hi else { continue }
                for p in lo..<hi { out[Int(p - offset)] = run.bytes[Int(p - run.offset)] }
            }
            return out
        }
    }

    /// cluster_bits 30 (H1, still parsed), virtual size 2^64-1, bitmap with granularity_bits 0 and a
    /// 2^31-entry table in a 32 GiB sparse file: the table's last entries cover bits past 2^64, and
    /// `dirtyExtents` computed `(index + 1) * bits_per_entry` unchecked, trapping on overflow. Over
    /// HTTP: `GET .../bitmaps/b0/extents?start=18446744065119617024` killed the daemon (SIGILL).
    @Test("extents near the end of a 2^64-byte disk with 1 GiB clusters and 1-byte granularity")
    func extentsPastTwoToTheSixtyFourBits() throws {
        // Header (v3, 112 bytes) + bitmaps extension (directory at 2 GiB, 32 bytes) + end marker.
        let head = Self.hex(
            """
            514649fb 00000003 0000000000000000 00000000 0000001e ffffffffffffffff 00000000 00000000
            0000000000000000 0000000040000000 00000001 00000000 0000000000000000 0000000000000000
            0000000000000000 0000000000000001 00000004 00000070 0000000000000000
            23852875 00000018 00000001 00000000 0000000000000020 0000000080000000 0000000000000000
            """)
        // Directory entry: table at 3 GiB, 2^31 entries, auto, type 1, granularity_bits 0, name "b0".
        let entry = Self.hex("00000000c0000000 80000000 00000002 01 00 0002 00000000 6230 000000000000")
        let source = SparseSource(runs: [(0, head), (0x8000_0000, entry)], size: 1 << 35)
        let image = try QCOW2Image(source: source)
        let b = try #require(image.bitmaps.first)
        #expect(image.header.clusterBits == 30 && b.tableSize == 0x8000_0000 && b.granularityBits == 0)
        let start: UInt64 = ((1 << 31) - 1) << 33
        let page = try image.dirtyExtents(b, start: start, length: 1 << 33, limit: 10)
        #expect(page.extents.count == 1)
        #expect(page.extents.first.map { $0.start == start && !$0.dirty } == true)
        #expect(page.extents.first.map { $0.start &+ $0.length } == UInt64.max)
        #expect(page.next == nil)
        // The last page of the table and the last extent of the disk, as a client would ask.
        _ = try image.bitmapTable(b, offset: UInt64(b.tableSize) - 1, limit: 1)
        _ = try image.dirtyExtents(b, start: UInt64.max - 1, length: 1, limit: 1)
    }

    /// Inputs found by `Tests/Fuzz/run-fuzz.sh` that trapped: (what broke, the file as hex).
    static let crashers: [(String, String)] = []

    @Test("every fuzzer crasher is exercised without a trap", arguments: 0..<max(1, crashers.count))
    func crasher(_ index: Int) {
        guard index < Self.crashers.count else { return }
        Self.exercise(MemoryImageSource(bytes: Self.hex(Self.crashers[index].1)))
    }
}
