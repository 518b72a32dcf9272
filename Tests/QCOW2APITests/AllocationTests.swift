import Foundation
import QCOW2TestSupport
import Testing

/// `qcowscope allocation` (the daemon's `/allocation` document): every figure equals the sum over
/// `qemu-img map --output=json`'s entries and over `qcowscope map`'s extents, on real images.
@Suite(
    "Allocation totals are the map's sums",
    .enabled(if: QemuImageFactory.toolsAvailable && CLI.binary != nil, "needs qemu-img and the built qcowscope"))
struct AllocationTests {
    /// A recipe run in a fresh directory; the image under test is `t.qcow2`.
    struct Recipe: Sendable, CustomTestStringConvertible {
        var name: String
        var build: @Sendable (QemuImageFactory) throws -> Void
        var testDescription: String { name }
    }

    static let recipes: [Recipe] = [
        Recipe(name: "chain of three with zero and discarded clusters") { f in
            try f.create("base.qcow2", size: 1 << 20)
            try f.qemuIO("base.qcow2", ["write -P 1 0 256k", "write -z 512k 64k"])
            try f.create("mid.qcow2", size: 1 << 20, backing: "base.qcow2")
            try f.qemuIO("mid.qcow2", ["write -P 2 64k 64k", "write -z 128k 64k", "discard 192k 64k"])
            try f.create("t.qcow2", size: 1 << 20, backing: "mid.qcow2")
            try f.qemuIO("t.qcow2", ["write -P 3 0 4k"])
        },
        Recipe(name: "compressed and plain clusters") { f in
            try f.create("t.qcow2", size: 1 << 20)
            try f.qemuIO("t.qcow2", ["write -c -P 0x11 0 64k", "write -c -P 0x22 64k 64k", "write -P 0x33 128k 64k", "write -c -P 0x44 192k 64k"])
        },
        Recipe(name: "extended L2 subclusters") { f in
            try f.create("t.qcow2", size: 1 << 20, options: ["extended_l2=on"])
            try f.qemuIO("t.qcow2", ["write -P 0xaa 0 2k", "write -P 0xbb 8k 4k", "write -z 16k 2k", "write -P 0xcc 64k 64k"])
        },
        Recipe(name: "metadata preallocation, partly written") { f in
            try f.create("t.qcow2", size: 1 << 20, options: ["preallocation=metadata"])
            try f.qemuIO("t.qcow2", ["write -P 1 64k 64k", "write -P 2 512k 4k"])
        },
        Recipe(name: "external data file") { f in
            try f.create("t.qcow2", size: 1 << 20, options: ["data_file=t.data"])
            try f.qemuIO("t.qcow2", ["write -P 1 0 64k", "write -P 2 256k 128k", "write -z 512k 64k"])
        },
    ]

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func number(_ v: Any?) -> UInt64 { (v as? NSNumber)?.uint64Value ?? UInt64.max }

    @Test("allocated + zero + unallocated = virtual size; each figure = the sum over qemu-img map and qcowscope map", arguments: recipes)
    func totalsAreSums(_ recipe: Recipe) throws {
        let factory = try QemuImageFactory()
        defer { factory.removeDirectory() }
        try recipe.build(factory)
        let binary = try #require(CLI.binary)
        let allocation = try Self.json(try factory.run(binary, ["allocation", "t.qcow2", "--format", "json"]).stdout)
        let ours = try Self.json(try factory.run(binary, ["map", "t.qcow2", "--format", "json"]).stdout)
        let qemuText = try factory.qemuImg(["map", "--output=json", "-U", "-f", "qcow2", factory.path("t.qcow2")]).stdout
        let qemu = try #require(try JSONSerialization.jsonObject(with: Data(qemuText.utf8)) as? [[String: Any]])
        let extents = try #require(ours["extents"] as? [[String: Any]])

        func sums(_ entries: [[String: Any]]) -> (allocated: UInt64, zero: UInt64, unallocated: UInt64, depth: [UInt64: UInt64]) {
            var s: (allocated: UInt64, zero: UInt64, unallocated: UInt64, depth: [UInt64: UInt64]) = (0, 0, 0, [:])
            for e in entries {
                let length = Self.number(e["length"])
                let present = e["present"] as? Bool ?? false, data = e["data"] as? Bool ?? false
                if !present {
                    s.unallocated += length
                } else if data {
                    s.allocated += length
                    s.depth[Self.number(e["depth"]), default: 0] += length
                } else {
                    s.zero += length
                }
            }
            return s
        }
        let fromQemu = sums(qemu)
        let fromOurs = sums(extents)
        #expect(allocation["known"] as? Bool == true)
        #expect(Self.number(allocation["allocated_bytes"]) == fromQemu.allocated && fromQemu.allocated == fromOurs.allocated)
        #expect(Self.number(allocation["zero_bytes"]) == fromQemu.zero && fromQemu.zero == fromOurs.zero)
        #expect(Self.number(allocation["unallocated_bytes"]) == fromQemu.unallocated && fromQemu.unallocated == fromOurs.unallocated)
        #expect(
            Self.number(allocation["allocated_bytes"]) + Self.number(allocation["zero_bytes"])
                + Self.number(allocation["unallocated_bytes"]) == Self.number(allocation["virtual_size"]))
        let byDepth = try #require(allocation["by_depth"] as? [[String: Any]])
        for d in byDepth {
            #expect(Self.number(d["data_bytes"]) == fromQemu.depth[Self.number(d["depth"]), default: 0], "\(d)")
        }
        #expect(byDepth.map { Self.number($0["data_bytes"]) }.reduce(0, +) == fromQemu.allocated)
        // Compressed bytes and clusters: qemu-img 7.2 prints data without an offset only for compressed clusters.
        let compressed = extents.filter { $0["compressed"] as? Bool == true }.map { Self.number($0["length"]) }.reduce(0, +)
        let noOffset = qemu.filter { ($0["data"] as? Bool ?? false) && $0["offset"] == nil }.map { Self.number($0["length"]) }.reduce(0, +)
        #expect(Self.number(allocation["compressed_bytes"]) == compressed && compressed == noOffset)
        let cs = Self.number(allocation["cluster_size"])
        #expect(Self.number(allocation["compressed_clusters"]) == compressed / cs)
        // Data clusters of the image: the clusters its own data extents touch.
        var clusters = Set<UInt64>()
        for e in extents where Self.number(e["depth"]) == 0 && e["data"] as? Bool == true && e["compressed"] as? Bool != true {
            let start = Self.number(e["start"]), length = Self.number(e["length"])
            for c in (start / cs)...((start + length - 1) / cs) { clusters.insert(c) }
        }
        #expect(Self.number(allocation["data_clusters"]) == UInt64(clusters.count))
    }
}
