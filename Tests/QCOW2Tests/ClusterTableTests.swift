import Foundation
import QCOW2
import QCOW2TestSupport
import Testing

/// L1 and L2 tables decoded from images qemu-img and qemu-io made, checked cluster by cluster
/// against `qemu-img map --output=json` (the cluster types it reports: data with an offset, zero with
/// and without one, compressed data without one, unallocated).
@Suite("L1/L2 tables agree with qemu-img map", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct ClusterTableTests {
    /// The type qemu-img map gives guest byte `at`, in L2 terms, and its host offset.
    static func mapped(_ map: [[String: Any]], at: UInt64) -> (kind: L2Entry.Kind, offset: UInt64?)? {
        for e in map {
            guard let start = e["start"] as? UInt64 ?? (e["start"] as? Int).map(UInt64.init),
                let length = e["length"] as? UInt64 ?? (e["length"] as? Int).map(UInt64.init),
                at >= start, at < start + length
            else { continue }
            let offset = (e["offset"] as? Int).map { UInt64($0) + (at - start) }
            let present = e["present"] as? Bool ?? false
            let zero = e["zero"] as? Bool ?? false
            let data = e["data"] as? Bool ?? false
            if !present { return (.unallocated, nil) }
            if zero { return (offset == nil ? .zeroPlain : .zeroAllocated, offset) }
            if data { return (offset == nil ? .compressed : .normal, offset) }
        }
        return nil
    }

    static func map(_ factory: QemuImageFactory, _ image: String) throws -> [[String: Any]] {
        let out = try factory.qemuImg(["map", "--output=json", factory.path(image)]).stdout
        return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])
    }

    /// Every cluster of the image: its L2 entry's kind and offset equal qemu-img map's.
    static func agree(_ factory: QemuImageFactory, _ name: String) throws -> [L2Entry.Kind: Int] {
        let image = try QCOW2Image(source: FileImageSource(path: factory.path(name)))
        let map = try Self.map(factory, name)
        var kinds: [L2Entry.Kind: Int] = [:]
        for l1 in try image.l1Entries(limit: Limits.maxTablePage) {
            #expect(l1.reserved == 0)
            var done: UInt64 = 0
            while done < image.l2EntriesPerTable {
                let page = try image.l2Entries(l1, offset: done, limit: 1024)
                for e in page {
                    guard let start = e.guestStart, let length = e.guestLength, length > 0 else { continue }
                    let theirs = try #require(Self.mapped(map, at: start), "no map entry at \(start)")
                    #expect(e.kind == theirs.kind, "\(name) cluster at \(start): ours \(e.kind), qemu-img \(theirs.kind)")
                    if e.kind == .normal || e.kind == .zeroAllocated {
                        #expect(e.hostOffset == theirs.offset, "\(name) cluster at \(start): host offset")
                    }
                    #expect(e.reserved == 0, "\(name) cluster at \(start): reserved bits \(e.reserved)")
                    kinds[e.kind, default: 0] += 1
                }
                done += UInt64(page.count)
            }
        }
        return kinds
    }

    @Test("normal, zero-plain, zero-allocated and unallocated clusters", arguments: [9 as UInt32, 12, 16, 21])
    func standardTypes(clusterBits: UInt32) throws {
        let factory = try QemuImageFactory(prefix: "qcowscope-l2-")
        defer { factory.removeDirectory() }
        let c = UInt64(1) << UInt64(clusterBits)
        try factory.create("a.qcow2", size: 64 * c, options: ["cluster_size=\(c)"])
        try factory.write("a.qcow2", offset: 0, length: 2 * c)
        try factory.writeZeroes("a.qcow2", offset: 4 * c, length: 2 * c)  // unallocated: zero-plain
        try factory.write("a.qcow2", offset: 8 * c, length: c)
        try factory.writeZeroes("a.qcow2", offset: 8 * c, length: c)  // allocated, then zeroed
        let kinds = try Self.agree(factory, "a.qcow2")
        #expect(kinds[.normal] == 2 && kinds[.zeroPlain] == 2 && kinds[.unallocated] == 59, "\(kinds)")
        #expect((kinds[.zeroAllocated] ?? 0) + (kinds[.zeroPlain] ?? 0) == 3, "\(kinds)")
    }

    @Test("compressed clusters: byte offset and sector count within the file")
    func compressed() throws {
        let factory = try QemuImageFactory(prefix: "qcowscope-l2-")
        defer { factory.removeDirectory() }
        try factory.create("c.qcow2", size: 4 << 20)
        try factory.write("c.qcow2", pattern: nil, offset: 0, length: 256 << 10, compressed: true)
        let kinds = try Self.agree(factory, "c.qcow2")
        #expect(kinds[.compressed] == 4, "\(kinds)")
        let image = try QCOW2Image(source: FileImageSource(path: factory.path("c.qcow2")))
        let l1 = try #require(try image.l1Entries().first)
        for e in try image.l2Entries(l1, limit: 4) {
            let end = try #require(e.compressedBytes.map { e.hostOffset + $0 })
            #expect(e.copied == false && end <= image.source.size + 511, "compressed data past the end: \(e)")
        }
    }

    @Test("extended L2: subcluster allocation and zero bitmaps as qcow2-format.md §1.7 measured them")
    func extendedL2() throws {
        let factory = try QemuImageFactory(prefix: "qcowscope-l2-")
        defer { factory.removeDirectory() }
        try factory.create("x.qcow2", size: 4 << 20, options: ["extended_l2=on", "cluster_size=65536"])
        try factory.write("x.qcow2", offset: 0, length: 4096)
        try factory.write("x.qcow2", offset: 70 << 10, length: 2048)
        try factory.writeZeroes("x.qcow2", offset: 128 << 10, length: 8192)
        let image = try QCOW2Image(source: FileImageSource(path: factory.path("x.qcow2")))
        #expect(image.hasExtendedL2 && image.l2EntriesPerTable == 4096)
        let l1 = try #require(try image.l1Entries().first)
        let e = try image.l2Entries(l1, limit: 3)
        #expect(e[0].subclusterAllocated == 0x3 && e[0].subclusterZero == 0)
        #expect(e[1].subclusterAllocated == 0x8)
        #expect(e[2].subclusterAllocated == 0 && e[2].subclusterZero == 0xf && e[2].hostOffset == 0)
    }

    @Test("pages: the last page of a large L1 table (16 GiB, 512 B clusters) is one entry, pages outside are refused")
    func paging() throws {
        let factory = try QemuImageFactory(prefix: "qcowscope-l2-")
        defer { factory.removeDirectory() }
        try factory.create("p.qcow2", size: 16 << 30, options: ["cluster_size=512"])
        let image = try QCOW2Image(source: FileImageSource(path: factory.path("p.qcow2")))
        let total = image.l1EntryCount
        #expect(total == UInt64(image.header.l1Size) && total > 4096)
        let last = try image.l1Entries(offset: total - 1, limit: 16)
        #expect(last.count == 1 && last[0].index == total - 1 && last[0].l2Offset == 0)
        #expect(throws: QCOW2Error.self) { try image.l1Entries(offset: total, limit: 1) }
        #expect(throws: QCOW2Error.self) { try image.l1Entries(limit: 0) }
        let unallocated = try image.l2Entries(last[0], limit: 4)
        #expect(unallocated.allSatisfy { $0.kind == .unallocated })
    }
}
