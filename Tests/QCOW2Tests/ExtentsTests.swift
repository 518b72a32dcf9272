import Foundation
import QCOW2
import QCOW2TestSupport
import ProcessTestSupport
import Testing

/// Dirty extents and totals decoded from the file agree with what QEMU itself exports over NBD.
@Suite("Dirty extents and totals")
struct ExtentsTests {
    /// Asks QEMU for the dirty ranges of `bitmap`: qemu-nbd -B + qemu-img map with x-dirty-bitmap
    /// (what iotest 291 does); dirty ranges are the ones reported with `"data": false`.
    static func qemuDirtyRanges(_ f: QemuImageFactory, image: String, bitmap: String) throws -> [(UInt64, UInt64)] {
        let sock = f.path("nbd-\(bitmap).sock")
        let nbd = try ChildProcess("/usr/bin/qemu-nbd", ["-r", "-t", "-k", sock, "-B", bitmap, "-f", "qcow2", f.path(image)])
        defer {
            nbd.kill()
            nbd.wait()
            try? FileManager.default.removeItem(atPath: sock)
        }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: sock) { usleep(20_000) }
        let map = try f.qemuImg([
            "map", "--output=json", "--image-opts",
            "driver=nbd,server.type=unix,server.path=\(sock),x-dirty-bitmap=qemu:dirty-bitmap:\(bitmap)",
        ])
        let arr = try JSONSerialization.jsonObject(with: Data(map.stdout.utf8)) as? [[String: Any]] ?? []
        var out: [(UInt64, UInt64)] = []
        for e in arr where e["data"] as? Bool == false {
            let s = e["start"] as? UInt64 ?? 0
            let l = e["length"] as? UInt64 ?? 0
            if let last = out.last, last.0 + last.1 == s { out[out.count - 1].1 += l } else { out.append((s, l)) }
        }
        return out
    }

    static func ourDirtyRanges(_ image: QCOW2Image, _ b: BitmapDirectoryEntry, limit: Int = 10000) throws -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var from: UInt64 = 0
        while true {
            let page = try image.dirtyExtents(b, start: from, length: image.header.size - from, limit: limit)
            out += page.extents.filter(\.dirty).map { ($0.start, $0.length) }
            guard let next = page.next else { break }
            from = next
        }
        return out
    }

    @Test("extents and dirty totals match QEMU's NBD export", arguments: [
        (UInt32(512), UInt64(512)), (512, 4096), (65536, 65536), (4096, 512), (512, 2 << 20),
    ])
    func matchesQemu(clusterSize: UInt32, granularity: UInt64) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-extents-")
        defer { f.removeDirectory() }
        let size: UInt64 = 9 << 20 + 1536  // not a multiple of the granularity: tail bits matter
        try f.create("e.qcow2", size: size, options: ["cluster_size=\(clusterSize)"])
        try f.bitmapAdd("e.qcow2", "b", granularity: granularity)
        try f.bitmapAdd("e.qcow2", "untouched", granularity: granularity, disabled: true)
        for (off, len) in [(UInt64(0), UInt64(4096)), (1 << 20, 12 << 10), (3_000 << 10, 1 << 10), (5 << 20, 2 << 20),
            (size - 512, 512)] {
            try f.write("e.qcow2", offset: off, length: len)
        }
        let image = try QCOW2Image(path: f.path("e.qcow2"))
        let b = try #require(image.bitmap(named: ByteString("b")))
        let theirs = try Self.qemuDirtyRanges(f, image: "e.qcow2", bitmap: "b")
        let ours = try Self.ourDirtyRanges(image, b)
        #expect(ours.map { [$0.0, $0.1] } == theirs.map { [$0.0, $0.1] }, "ours \(ours) theirs \(theirs)")
        #expect(try image.dirtyBytes(b) == theirs.reduce(0) { $0 + $1.1 })
        // Paging one extent at a time gives the same answer.
        #expect(try Self.ourDirtyRanges(image, b, limit: 1).map { [$0.0, $0.1] } == ours.map { [$0.0, $0.1] })
        // A disabled bitmap created before the writes is clean.
        let u = try #require(image.bitmap(named: ByteString("untouched")))
        #expect(try image.dirtyBytes(u) == 0)
        let whole = try image.dirtyExtents(u, start: 0, length: size, limit: 10)
        #expect(whole.extents == [DirtyExtent(start: 0, length: size, dirty: false)] && whole.next == nil)
    }

    @Test("extents alternate clean/dirty, cover the range exactly, and are clipped to it")
    func shape() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-extents-")
        defer { f.removeDirectory() }
        try f.create("s.qcow2", size: 4 << 20, options: ["cluster_size=512"])
        try f.bitmapAdd("s.qcow2", "b", granularity: 4096)
        try f.write("s.qcow2", offset: 8192, length: 8192)
        let image = try QCOW2Image(path: f.path("s.qcow2"))
        let b = try #require(image.bitmaps.first)
        let page = try image.dirtyExtents(b, start: 1000, length: 20_000, limit: 100)
        #expect(page.extents == [
            DirtyExtent(start: 1000, length: 7192, dirty: false), DirtyExtent(start: 8192, length: 8192, dirty: true),
            DirtyExtent(start: 16384, length: 4616, dirty: false),
        ])
        let past = try image.dirtyExtents(b, start: 4 << 20, length: 10, limit: 1)
        #expect(past.extents.isEmpty)
    }

    @Test("a range query reads only the table entries and data clusters that cover it")
    func rangeReadsOnlyWhatCovers() throws {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 64 << 20)
        builder.addBitmap(name: "b", granularityBits: 9)  // 2 MiB of guest per 512-byte data cluster: 32 entries
        for i in 0..<32 { builder.bitmaps[0].dataClusters[i] = [UInt8](repeating: 0x0f, count: 512) }
        let src = CountingImageSource(MemoryImageSource(bytes: builder.build()))
        let image = try QCOW2Image(source: src)
        let b = try #require(image.bitmaps.first)
        src.reset()
        let page = try image.dirtyExtents(b, start: 40 << 20, length: 4096, limit: 100)
        #expect(page.extents.first == DirtyExtent(start: 40 << 20, length: 2048, dirty: true))
        #expect(src.totals.reads == 2 && src.totals.bytes == 8 + 512)
    }

    @Test("all-ones entries, in-use bitmaps: decoded, not refused")
    func allOnesAndInUse() throws {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 4 << 20)
        builder.addBitmap(name: "b", granularityBits: 9, flags: ImageBuilder.Bitmap.inUse | ImageBuilder.Bitmap.auto)
        builder.bitmaps[0].entryOverrides[1] = 1
        let image = try QCOW2Image(source: MemoryImageSource(bytes: builder.build()))
        let b = try #require(image.bitmaps.first)
        #expect(!image.isConsistent(b))
        let page = try image.dirtyExtents(b, start: 0, length: 4 << 20, limit: 10)
        #expect(page.extents == [DirtyExtent(start: 0, length: 2 << 20, dirty: false), DirtyExtent(start: 2 << 20, length: 2 << 20, dirty: true)])
        #expect(try image.dirtyBytes(b) == 2 << 20)
    }

    @Test("a count over budget says so instead of reading on")
    func budget() throws {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 64 << 20)
        builder.addBitmap(name: "b", granularityBits: 9)
        for i in 0..<32 { builder.bitmaps[0].dataClusters[i] = [0xff] }
        let image = try QCOW2Image(source: MemoryImageSource(bytes: builder.build()))
        let b = try #require(image.bitmaps.first)
        #expect(try image.dirtyBytes(b, budget: 4096) == nil)
        #expect(try image.dirtyBytes(b) == 32 * 8 * 512)
    }
}
