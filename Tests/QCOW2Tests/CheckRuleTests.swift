import QCOW2
import QCOW2TestSupport
import Testing

/// Each rule of the refcount check (C1-C9) broken by a crafted image, and the clean image it starts from
/// checked clean: the counts are those qemu-img check gives for the same damage (qemu-check-map.md §1.7).
/// CheckAgreementTests compares the figures with the real qemu-img on qemu-made images.
@Suite("Refcount check rules")
struct CheckRuleTests {
    /// A v3 image, 64 KiB clusters, guest clusters 0-2 written: its bytes and layout.
    static func base(_ configure: (inout ImageBuilder) -> Void = { _ in }) -> (ImageBuilder, [UInt8], ImageBuilder.Layout) {
        var b = ImageBuilder(version: 3, clusterBits: 16, size: 1 << 20)
        for g in 0..<3 { b.guestClusters[UInt64(g)] = [UInt8](repeating: UInt8(g + 1), count: 65536) }
        configure(&b)
        return (b, b.build(), b.layout())
    }

    static func poke64(_ bytes: inout [UInt8], _ offset: UInt64, _ value: UInt64) {
        for i in 0..<8 { bytes[Int(offset) + i] = UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64(i))) }
    }

    static func check(_ bytes: [UInt8], _ options: CheckOptions = CheckOptions()) throws -> CheckReport {
        ImageCheck.run(try QCOW2Image(source: MemoryImageSource(bytes: bytes)), options: options)
    }

    static func codes(_ r: CheckReport) -> [String] { r.problems.map(\.code) }

    @Test("the crafted base image is clean, and its figures are those of qemu-img for it")
    func baseIsClean() throws {
        let (_, bytes, layout) = Self.base()
        let r = try Self.check(bytes)
        #expect(r.verdict == "clean" && r.problems.isEmpty, "\(r.problems)")
        #expect(r.allocatedClusters == 3 && r.totalClusters == 16 && r.fragmentedClusters == 0)
        #expect(r.imageEndOffset == UInt64(layout.clusterCount) * 65536)
        #expect(r.exitStatus == 0 && r.incomplete == nil)
    }

    @Test("C1 and C3: a data cluster with refcount 0 costs two corruptions (the comparison, the copied flag)")
    func refcountTooLow() throws {
        let (_, _, layout) = Self.base()
        let data = try #require(layout.guestDataOffsets[1])
        let (_, bytes, _) = Self.base { $0.refcountOverrides[data] = 0 }
        let r = try Self.check(bytes)
        #expect(r.corruptions == 2 && Self.codes(r).sorted() == ["C1", "C3"])
        let c1 = try #require(r.problems.first { $0.code == "C1" })
        #expect(c1.structure == "cluster[\(data / 65536)]" && c1.value == "0")
        #expect(c1.offset == layout.refcountBlockOffsets[0] + data / 65536 * 2)
        #expect(r.exitStatus == 2)
    }

    @Test("C2: a refcount on a cluster nothing references is a leak")
    func leak() throws {
        let (_, _, layout) = Self.base()
        let spare = UInt64(layout.clusterCount)
        let (_, bytes, _) = Self.base {
            $0.trailingBytes = [UInt8](repeating: 0, count: 65536)
            $0.refcountOverrides[spare * 65536] = 1
        }
        let r = try Self.check(bytes)
        #expect(r.leaks == 1 && r.corruptions == 0 && Self.codes(r) == ["C2"] && r.exitStatus == 3)
        #expect(r.problems.first?.structure == "cluster[\(spare)]")
    }

    @Test("C3: the copied flag missing on an L2 entry of refcount 1")
    func copiedMissing() throws {
        var (_, bytes, layout) = Self.base()
        let l2 = try #require(layout.l2TableOffsets[0])
        let entry = ByteReaderTest.u64(bytes, l2)
        Self.poke64(&bytes, l2, entry & ~(UInt64(1) << 63))
        let r = try Self.check(bytes)
        #expect(r.corruptions == 1 && Self.codes(r) == ["C3"])
        #expect(r.problems.first?.structure == "l2_table[0][0]" && r.problems.first?.offset == l2)
    }

    @Test("C4: an L2 entry past the end of the file (with the copied flag: also C3, refcount 0)")
    func pastEnd() throws {
        var (_, bytes, layout) = Self.base()
        let l2 = try #require(layout.l2TableOffsets[0])
        Self.poke64(&bytes, l2 + 3 * 8, (UInt64(1) << 63) | 0x100_0000)
        let r = try Self.check(bytes)
        #expect(Self.codes(r).sorted() == ["C3", "C4"] && r.corruptions == 2)
        #expect(r.problems.first { $0.code == "C4" }?.offset == l2 + 24)
    }

    @Test("C5: with 1-bit refcounts a second reference overflows (one corruption, no mismatch)")
    func overflow() throws {
        var (_, bytes, layout) = Self.base { $0.refcountOrder = 0 }
        let l2 = try #require(layout.l2TableOffsets[0])
        let first = ByteReaderTest.u64(bytes, l2)
        Self.poke64(&bytes, l2 + 5 * 8, first)
        let r = try Self.check(bytes)
        #expect(Self.codes(r).contains("C5"), "\(r.problems)")
        #expect(!Self.codes(r).contains("C1"))
    }

    @Test("C6: a refcount table entry with reserved bits set, an unaligned one, and one outside the file")
    func refcountTableEntries() throws {
        for (value, word) in [(UInt64(1), "reserved"), (0x200, "not cluster aligned"), (0x4000_0000, "outside")] {
            var (_, bytes, layout) = Self.base()
            let at = layout.refcountTableOffset + 8
            Self.poke64(&bytes, at, value)
            let r = try Self.check(bytes)
            let c6 = try #require(r.problems.first { $0.code == "C6" }, "\(word): \(r.problems)")
            #expect(c6.offset == at && c6.message.contains(word), "\(c6.message)")
        }
    }

    @Test("C7: an unaligned refcount block makes every refcount it holds unreadable (one check error each)")
    func unreadableRefcounts() throws {
        var (_, bytes, layout) = Self.base()
        Self.poke64(&bytes, layout.refcountTableOffset, layout.refcountBlockOffsets[0] + 0x200)
        let r = try Self.check(bytes)
        #expect(r.checkErrors > 0 && r.checkErrors == r.problemCounts["C7"])
        #expect(r.imageEndOffset == 65536 && r.exitStatus == 1)
    }

    @Test("C8: internal snapshots in an image with an external data file")
    func snapshotsWithDataFile() throws {
        let (_, bytes, _) = Self.base {
            $0.extensions = [.dataFile("t.data")]
            $0.incompatibleFeatures = Header.externalDataFileBit
            $0.snapshots = [.init(id: "1", name: "s1")]
        }
        let r = try Self.check(bytes)
        #expect(Self.codes(r).contains("C8"), "\(r.problems)")
    }

    @Test("C9: a check that cannot finish says why (memory limit, too many snapshots, a stop request)")
    func incomplete() throws {
        let (_, bytes, _) = Self.base()
        var tight = CheckOptions()
        tight.memoryLimit = 16
        let r = try Self.check(bytes, tight)
        #expect(r.incomplete?.contains("--check-memory") == true && Self.codes(r) == ["C9"] && r.exitStatus == 1)
        var stop = CheckOptions()
        stop.shouldStop = { true }
        #expect(try Self.check(bytes, stop).incomplete?.contains("stopped") == true)
        let (_, many, _) = Self.base { $0.nbSnapshots = 70000 }
        let s = try Self.check(many)
        #expect(s.incomplete != nil && s.checkErrors == 1 && Self.codes(s).contains("S1"))
    }

    @Test("the problem list is bounded; every problem is still counted")
    func boundedProblems() throws {
        let (_, _, layout) = Self.base()
        var b = ImageBuilder(version: 3, clusterBits: 16, size: 1 << 20)
        for g in 0..<3 { b.guestClusters[UInt64(g)] = [UInt8](repeating: 1, count: 65536) }
        for c in 0..<layout.clusterCount { b.refcountOverrides[UInt64(c) * 65536] = 0 }
        var options = CheckOptions()
        options.maxProblems = 2
        let r = try Self.check(b.build(), options)
        #expect(r.problems.count == 2 && r.problemsOmitted > 0)
        #expect(UInt64(r.problems.count) + r.problemsOmitted == r.problemCounts.values.reduce(0, +))
    }
}

/// Big-endian reads of crafted bytes.
enum ByteReaderTest {
    static func u64(_ b: [UInt8], _ offset: UInt64) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(b[Int(offset) + $1]) }
    }
}
