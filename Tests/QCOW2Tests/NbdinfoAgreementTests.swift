import Foundation
import QCOW2
import QCOW2TestSupport
import ProcessTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Dirty extents and totals agree with libnbd's `nbdinfo --map=qemu:dirty-bitmap:NAME` over
/// `qemu-nbd -r -t -B NAME`: QEMU decodes the bitmap, nbdinfo reports it, and we compare every extent.
///
/// nbdinfo 1.14 `--json --map` prints `[{"offset", "length", "type", "description"}]`; for the
/// `qemu:dirty-bitmap:` context type 1 ("dirty") is set, type 0 ("clean") is not. `--json --totals`
/// prints `[{"size", "percent", "type", "description"}]`. qemu-nbd may split a run over several
/// replies, so adjacent extents of the same type are merged before comparing.
///
/// These tests need nbdinfo (Debian: libnbd-bin, installed by Tests/Scripts/install-deps.sh) and
/// fail, not skip, without it.
@Suite("Extents agree with nbdinfo over qemu-nbd")
struct NbdinfoAgreementTests {
    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// One extent as (start, length, dirty).
    typealias Run = (start: UInt64, length: UInt64, dirty: Bool)

    /// `name` on PATH (or in /usr/bin), else nil.
    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"] {
            let p = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    static func nbdinfo() throws -> String {
        guard let p = which("nbdinfo") else {
            throw Missing(description: "nbdinfo not found on PATH: install libnbd-bin (bash Tests/Scripts/install-deps.sh, or apt-get install libnbd-bin)")
        }
        return p
    }

    static func merge(_ runs: [Run]) -> [Run] {
        var out: [Run] = []
        for r in runs where r.length > 0 {
            if let last = out.last, last.dirty == r.dirty, last.start + last.length == r.start {
                out[out.count - 1].length += r.length
            } else {
                out.append(r)
            }
        }
        return out
    }

    static func number(_ v: Any?) -> UInt64? { (v as? NSNumber)?.uint64Value }

    /// What QEMU exports for `bitmap`: the merged `--map` extents and the `--totals` dirty byte count.
    static func theirs(_ f: QemuImageFactory, image: String, bitmap: String) throws -> (runs: [Run], dirty: UInt64, clean: UInt64) {
        let tool = try nbdinfo()
        let sock = f.path("nbd-\(bitmap).sock")
        let log = f.path("qemu-nbd-\(bitmap).log")
        let nbd = try ChildProcess(
            try #require(which("qemu-nbd"), "qemu-nbd not found (qemu-utils)"),
            ["-r", "-t", "-k", sock, "-B", bitmap, "-f", "qcow2", f.path(image)], stderr: .file(log))
        defer {
            nbd.kill()
            nbd.wait()
            try? FileManager.default.removeItem(atPath: sock)
        }
        for _ in 0..<250 where !FileManager.default.fileExists(atPath: sock) && nbd.isRunning { usleep(20_000) }
        guard FileManager.default.fileExists(atPath: sock) else {
            let err = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw Missing(description: "qemu-nbd -B \(bitmap) \(image) did not start: \(err)")
        }
        let uri = "nbd+unix:///?socket=\(sock)"
        let map = try f.run(tool, ["--json", "--map=qemu:dirty-bitmap:\(bitmap)", uri], timeout: 120)
        let rows = try JSONSerialization.jsonObject(with: Data(map.stdout.utf8)) as? [[String: Any]] ?? []
        var runs: [Run] = []
        for r in rows {
            let type = try #require(number(r["type"]))
            let desc = r["description"] as? String ?? ""
            // The dirty-bitmap context: bit 0 of the type is "dirty", and nbdinfo says so.
            #expect((type & 1 != 0) == (desc == "dirty") || desc.isEmpty, "type \(type) described as \(desc)")
            runs.append((try #require(number(r["offset"])), try #require(number(r["length"])), type & 1 != 0))
        }
        let totals = try f.run(tool, ["--json", "--totals", "--map=qemu:dirty-bitmap:\(bitmap)", uri], timeout: 120)
        let trows = try JSONSerialization.jsonObject(with: Data(totals.stdout.utf8)) as? [[String: Any]] ?? []
        var dirty: UInt64 = 0
        var clean: UInt64 = 0
        for r in trows {
            let size = try #require(number(r["size"]))
            if try #require(number(r["type"])) & 1 != 0 { dirty += size } else { clean += size }
        }
        return (merge(runs), dirty, clean)
    }

    /// Every extent of `b` (paged `limit` at a time).
    static func ours(_ image: QCOW2Image, _ b: BitmapDirectoryEntry, limit: Int = 1000) throws -> [Run] {
        var out: [Run] = []
        var from: UInt64 = 0
        while true {
            let page = try image.dirtyExtents(b, start: from, length: image.header.size - from, limit: limit)
            out += page.extents.map { ($0.start, $0.length, $0.dirty) }
            guard let next = page.next else { break }
            from = next
        }
        return merge(out)
    }

    static func text(_ runs: [Run]) -> [String] { runs.map { "\($0.start)+\($0.length):\($0.dirty ? "dirty" : "clean")" } }

    /// Compares every extent and the totals of each bitmap with nbdinfo's; returns the dirty totals.
    @discardableResult
    static func agree(_ f: QemuImageFactory, _ file: String, _ bitmaps: [String]) throws -> [String: UInt64] {
        let image = try QCOW2Image(path: f.path(file))
        var totals: [String: UInt64] = [:]
        for name in bitmaps {
            let b = try #require(image.bitmap(named: ByteString(name)), "\(file): no bitmap \(name)")
            let t = try theirs(f, image: file, bitmap: name)
            let o = try ours(image, b)
            #expect(!t.runs.isEmpty && t.runs.last.map { $0.start + $0.length } == image.header.size, "\(file) \(name): nbdinfo covers the disk")
            #expect(text(o) == text(t.runs), "\(file) \(name)")
            #expect(try image.dirtyBytes(b) == t.dirty, "\(file) \(name): --totals dirty")
            #expect(t.dirty + t.clean == image.header.size, "\(file) \(name): --totals cover the disk")
            // One extent per page gives the same answer.
            #expect(text(try ours(image, b, limit: 1)) == text(o), "\(file) \(name) paged by 1")
            totals[name] = t.dirty
        }
        return totals
    }

    @Test("nbdinfo is installed (libnbd-bin)")
    func nbdinfoInstalled() throws {
        _ = try Self.nbdinfo()
    }

    @Test("granularities 512 B, 64 KiB and 2 MiB", arguments: [
        (UInt64(4096), UInt64(512)), (65536, 65536), (65536, 2 << 20), (512, 2 << 20),
    ])
    func granularities(clusterSize: UInt64, granularity: UInt64) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-nbdinfo-")
        defer { f.removeDirectory() }
        let size: UInt64 = 41 << 20 + 3 * 512  // a partial last bit at every granularity here
        try f.create("g.qcow2", size: size, options: ["cluster_size=\(clusterSize)"])
        try f.bitmapAdd("g.qcow2", "b", granularity: granularity)
        let writes: [(UInt64, UInt64)] = [
            (0, 4096), ((1 << 20) + 512, 1024), (5 << 20, 3 << 20), ((17 << 20) - 512, 1024), (33 << 20, 64 << 10),
            (size - 512, 512),
        ]
        try f.qemuIO("g.qcow2", writes.map { "write -P 0xab \($0.0) \($0.1)" })
        let totals = try Self.agree(f, "g.qcow2", ["b"])
        // And both say what the writes imply: every granule a write touched, nothing else.
        var expected: [Run] = writes.map { w in
            let lo = w.0 / granularity * granularity
            return (lo, min(size, (w.0 + w.1 + granularity - 1) / granularity * granularity) - lo, true)
        }
        expected.sort { $0.start < $1.start }
        var union: [Run] = []
        for e in expected {
            if let l = union.last, l.start + l.length >= e.start {
                union[union.count - 1].length = max(l.start + l.length, e.start + e.length) - l.start
            } else {
                union.append(e)
            }
        }
        #expect(totals["b"] == union.reduce(0) { $0 + $1.length })
    }

    @Test("a 16 TiB sparse disk with 64 KiB granularity, writes near 0, across a table entry, at 8 TiB and at the end")
    func sixteenTiB() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-nbdinfo-")
        defer { f.removeDirectory() }
        let size: UInt64 = 16 << 40
        try f.create("big.qcow2", size: size, options: ["cluster_size=65536"])
        try f.bitmapAdd("big.qcow2", "b", granularity: 65536)
        // One table entry covers 64 KiB * 8 * 64 KiB = 32 GiB; the second write straddles entries 0 and 1.
        try f.qemuIO("big.qcow2", [
            "write 4096 4096", "write \((32 << 30) - 4096) 8192", "write \(8 << 40) 65536", "write \((8 << 40) + 12345 * 512) 512",
            "write \(size - 4096) 4096",
        ])
        let totals = try Self.agree(f, "big.qcow2", ["b"])
        #expect(totals["b"] == 6 * 65536)
    }

    @Test("a disabled bitmap: dirty up to --disable, clean afterwards; one disabled from the start stays clean")
    func disabled() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-nbdinfo-")
        defer { f.removeDirectory() }
        try f.create("d.qcow2", size: 64 << 20)
        try f.bitmapAdd("d.qcow2", "off", granularity: 65536, disabled: true)
        try f.bitmapAdd("d.qcow2", "d", granularity: 4096)
        try f.qemuIO("d.qcow2", ["write 0 8k", "write 10M 1M"])
        try f.bitmapDisable("d.qcow2", "d")
        try f.qemuIO("d.qcow2", ["write 40M 1M"])
        let image = try QCOW2Image(path: f.path("d.qcow2"))
        #expect(image.bitmaps.allSatisfy { $0.flags & 0x2 == 0 }, "both bitmaps are disabled")
        let totals = try Self.agree(f, "d.qcow2", ["d", "off"])
        #expect(totals["d"] == 8192 + (1 << 20))
        #expect(totals["off"] == 0)
    }

    @Test("all-ones table entries (crafted; QEMU exports them when the bitmap is consistent)")
    func allOnes() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-nbdinfo-")
        defer { f.removeDirectory() }
        // 4 KiB clusters, 512 B granularity: one table entry covers 32768 bits = 16 MiB; 5 entries, the last partial.
        let size: UInt64 = (64 << 20) + 7 * 512
        var builder = ImageBuilder(version: 3, clusterBits: 12, size: size)
        builder.addBitmap(name: "ones", granularityBits: 9)
        builder.bitmaps[0].entryOverrides[1] = 1
        builder.bitmaps[0].entryOverrides[4] = 1
        builder.markDirty(bitmap: 0, guestOffset: (32 << 20) + 1536, length: 4096)
        builder.markDirty(bitmap: 0, guestOffset: (48 << 20) - 512, length: 512)  // touches entry 1's neighbour
        try f.writeFile("ones.qcow2", bytes: builder.build())
        let image = try QCOW2Image(path: f.path("ones.qcow2"))
        let b = try #require(image.bitmaps.first)
        #expect(image.isConsistent(b))
        let kinds = try image.bitmapTable(b, offset: 0, limit: 10).map(\.kind)
        #expect(kinds == [.allZeroes, .allOnes, .serialized, .allZeroes, .allOnes])
        let totals = try Self.agree(f, "ones.qcow2", ["ones"])
        #expect(totals["ones"] == (16 << 20) + 4096 + 512 + 7 * 512)
    }
}
