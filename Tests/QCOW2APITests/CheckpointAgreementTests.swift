import Foundation
import ProcessTestSupport
import QCOW2TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `qcowscope checkpoints` (the daemon's `/checkpoints` documents) against QEMU on the same chains.
///
/// Each case builds a real chain with qemu-img and qemu-io. qcowscope judges it and gives the union's
/// extents and sizes. Then, on a scratch copy of the chain, the same bitmaps are merged into one as
/// libvirt does for a backup: `qemu-img bitmap --add -g G TOP u` at the finest granularity, then
/// `qemu-img bitmap --merge NAME [-b LAYER -F qcow2] TOP u` for every layer that has the name. That
/// merged bitmap is exported with `qemu-nbd -r -B u` and read with `nbdinfo --map` and `--totals`.
/// Compared are every extent, the dirty total, and the dirty bytes split by `base:allocation`'s zero
/// flag (backup_bytes, zero_bytes). Where QEMU refuses the merge (an in-use bitmap, different sizes),
/// the refusal is checked along with our verdict. The files under test are never modified (sha256
/// before and after).
@Suite(
    "Checkpoints agree with qemu-img bitmap --merge, qemu-nbd -B and nbdinfo", .serialized,
    .enabled(if: QemuImageFactory.toolsAvailable && CLI.binary != nil, "needs qemu-img, qemu-io and the built qcowscope"))
struct CheckpointAgreementTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        /// The checkpoint asked about, and the names merged with it.
        var checkpoint = "c1"
        var with: [String] = []
        /// The error codes expected among the reasons (empty: ready).
        var errors: Set<String> = []
        /// The info codes expected among the reasons.
        var infos: Set<String> = []
        /// What `qemu-img bitmap --merge` says when it refuses (nil: it must succeed and agree).
        var qemuRefuses: String? = nil
        var build: @Sendable (QemuImageFactory) throws -> Void
        var testDescription: String { name }
    }

    static let mib: UInt64 = 1 << 20

    static let cases: [Case] = [
        Case(name: "one layer, 64 KiB granularity") { f in
            try f.create("top.qcow2", size: 64 * mib)
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 0 4k", "write 1M 200k", "write -z 8M 1M", "write 63M 1M"])
        },
        Case(name: "two layers, 64 KiB below 2 MiB (libvirt: disabled below, enabled above)", infos: ["K5"]) { f in
            try f.create("base.qcow2", size: 64 * mib)
            try f.bitmapAdd("base.qcow2", "c1", granularity: 65536)
            try f.qemuIO("base.qcow2", ["write 0 1M", "write 20M 64k"])
            try f.bitmapDisable("base.qcow2", "c1")
            try f.create("top.qcow2", size: 64 * mib, backing: "base.qcow2")
            try f.bitmapAdd("top.qcow2", "c1", granularity: 2 * mib)
            try f.qemuIO("top.qcow2", ["write 4M 64k", "write -z 30M 4k"])
        },
        Case(name: "four layers, granularities 64 KiB, 128 KiB, 1 MiB and 2 MiB", infos: ["K5"]) { f in
            let g: [UInt64] = [2 * mib, mib, 128 << 10, 65536]
            var below: String? = nil
            for (i, name) in ["l3.qcow2", "l2.qcow2", "l1.qcow2", "top.qcow2"].enumerated() {
                try f.create(name, size: 128 * mib, backing: below)
                try f.bitmapAdd(name, "c1", granularity: g[i])
                let at = UInt64(i) * 7 * mib
                try f.qemuIO(name, ["write \(at) 100k", "write \(at + 40 * mib) 3M", "write -z \(at + 90 * mib) 256k"])
                if name != "top.qcow2" { try f.bitmapDisable(name, "c1") }
                below = name
            }
        },
        Case(name: "a layer missing the bitmap (the chain extended without it)", errors: ["K3"]) { f in
            try f.create("base.qcow2", size: 32 * mib)
            try f.bitmapAdd("base.qcow2", "c1", granularity: 65536)
            try f.qemuIO("base.qcow2", ["write 0 1M"])
            try f.create("mid.qcow2", size: 32 * mib, backing: "base.qcow2")
            try f.qemuIO("mid.qcow2", ["write 8M 1M"])
            try f.create("top.qcow2", size: 32 * mib, backing: "mid.qcow2")
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 16M 64k"])
        },
        Case(
            name: "an in-use layer (a writer of the base was killed)", errors: ["K1"],
            qemuRefuses: "inconsistent"
        ) { f in
            try f.create("base.qcow2", size: 32 * mib)
            try f.bitmapAdd("base.qcow2", "c1", granularity: 65536)
            try f.crashWithInUseBitmap("base.qcow2", offset: 2 * mib, length: 65536)
            try f.create("top.qcow2", size: 32 * mib, backing: "base.qcow2")
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 4M 64k"])
        },
        Case(name: "disabled in the active layer with a later checkpoint enabled", infos: ["K7"]) { f in
            try f.create("top.qcow2", size: 64 * mib)
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 0 1M"])
            try f.bitmapDisable("top.qcow2", "c1")
            try f.bitmapAdd("top.qcow2", "c2", granularity: 2 * mib)
            try f.qemuIO("top.qcow2", ["write 10M 64k"])
        },
        Case(name: "since c1 merged with the later c2 (?with=c2)", with: ["c2"]) { f in
            try f.create("top.qcow2", size: 64 * mib)
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 0 1M"])
            try f.bitmapDisable("top.qcow2", "c1")
            try f.bitmapAdd("top.qcow2", "c2", granularity: 2 * mib)
            try f.qemuIO("top.qcow2", ["write 10M 64k"])
        },
        Case(name: "disabled in the active layer and nothing records writes", errors: ["K6"]) { f in
            try f.create("top.qcow2", size: 64 * mib)
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 0 1M"])
            try f.bitmapDisable("top.qcow2", "c1")
            try f.qemuIO("top.qcow2", ["write 10M 64k"])
        },
        Case(
            name: "a layer of another size (the overlay was made larger)", errors: ["K4"], qemuRefuses: "different sizes"
        ) { f in
            try f.create("base.qcow2", size: 64 * mib)
            try f.bitmapAdd("base.qcow2", "c1", granularity: 65536)
            try f.qemuIO("base.qcow2", ["write 0 1M"])
            try f.create("top.qcow2", size: 128 * mib, backing: "base.qcow2")
            try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
            try f.qemuIO("top.qcow2", ["write 100M 64k"])
        },
        Case(name: "a 16 TiB sparse disk, two layers", infos: ["K5"]) { f in
            let tib: UInt64 = 1 << 40
            try f.create("base.qcow2", size: 16 * tib)
            try f.bitmapAdd("base.qcow2", "c1", granularity: 65536)
            try f.qemuIO("base.qcow2", ["write 4096 4096", "write \((32 << 30) - 4096) 8192", "write \(8 * tib) 64k"])
            try f.bitmapDisable("base.qcow2", "c1")
            try f.create("top.qcow2", size: 16 * tib, backing: "base.qcow2")
            try f.bitmapAdd("top.qcow2", "c1", granularity: 2 * mib)
            try f.qemuIO("top.qcow2", ["write \(8 * tib + 12345 * 512) 512", "write -z \(12 * tib) 4M", "write \(16 * tib - 4096) 4096"])
        },
    ]

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func json(_ text: String) throws -> [String: Any] {
        guard let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw Failure(description: "not a JSON object: \(text.prefix(300))")
        }
        return o
    }

    static func number(_ v: Any?) -> UInt64? { (v as? NSNumber)?.uint64Value }

    /// One extent as (start, length, dirty).
    typealias Run = (start: UInt64, length: UInt64, dirty: Bool)

    /// `name` on PATH (or in /usr/bin); nbdinfo comes from libnbd-bin, which `.ci/run` installs.
    static func which(_ name: String) throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin"] {
            let p = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw Failure(description: "\(name) not found on PATH (bash Tests/Scripts/install-deps.sh installs libnbd-bin and qemu-utils)")
    }

    /// Adjacent runs of one state joined (qemu-nbd may split a run over several replies).
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

    static func text(_ runs: [Run]) -> [String] { runs.map { "\($0.start)+\($0.length):\($0.dirty ? "dirty" : "clean")" } }

    /// What QEMU exports for bitmap `u` of `image`: the dirty runs, the dirty total, and the allocation map.
    static func export(_ f: QemuImageFactory, _ image: String) throws -> (runs: [Run], dirty: UInt64, alloc: [(UInt64, UInt64, UInt64)]) {
        let tool = try which("nbdinfo")
        let sock = f.path("cp-nbd.sock")
        let log = f.path("cp-nbd.log")
        let nbd = try ChildProcess(
            try which("qemu-nbd"),
            ["-r", "-t", "-k", sock, "-B", "u", "-f", "qcow2", f.path(image)], stderr: .file(log))
        defer {
            nbd.kill()
            nbd.wait()
            try? FileManager.default.removeItem(atPath: sock)
        }
        for _ in 0..<250 where !FileManager.default.fileExists(atPath: sock) && nbd.isRunning { usleep(20_000) }
        guard FileManager.default.fileExists(atPath: sock) else {
            throw Failure(description: "qemu-nbd did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        let uri = "nbd+unix:///?socket=\(sock)"
        func rows(_ args: [String]) throws -> [[String: Any]] {
            let out = try f.run(tool, ["--json"] + args + [uri], timeout: 120).stdout
            return try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]] ?? []
        }
        var runs: [Run] = []
        for r in try rows(["--map=qemu:dirty-bitmap:u"]) {
            runs.append((try #require(number(r["offset"])), try #require(number(r["length"])), try #require(number(r["type"])) & 1 != 0))
        }
        var dirty: UInt64 = 0
        for r in try rows(["--totals", "--map=qemu:dirty-bitmap:u"]) where try #require(number(r["type"])) & 1 != 0 {
            dirty += try #require(number(r["size"]))
        }
        var alloc: [(UInt64, UInt64, UInt64)] = []
        for r in try rows(["--map"]) {
            alloc.append((try #require(number(r["offset"])), try #require(number(r["length"])), try #require(number(r["type"]))))
        }
        return (merge(runs), dirty, alloc)
    }

    /// The dirty bytes of `runs` that NBD's base:allocation marks zero (type bit 1), and the rest.
    static func split(_ runs: [Run], _ alloc: [(UInt64, UInt64, UInt64)]) -> (backup: UInt64, zero: UInt64) {
        var backup: UInt64 = 0
        var zero: UInt64 = 0
        var j = 0
        for r in runs where r.dirty {
            var p = r.start
            let end = r.start + r.length
            while p < end {
                while j < alloc.count && alloc[j].0 + alloc[j].1 <= p { j += 1 }
                guard j < alloc.count else {
                    zero += end - p
                    break
                }
                let e = min(end, alloc[j].0 + alloc[j].1)
                if alloc[j].2 & 2 != 0 { zero += e - p } else { backup += e - p }
                p = e
            }
        }
        return (backup, zero)
    }

    @Test("verdict, extents, dirty, backup and zero bytes agree with QEMU; the images are not modified", arguments: cases)
    func agrees(_ c: Case) throws {
        let f = try QemuImageFactory(prefix: "qcowscope-checkpoints-")
        defer { f.removeDirectory() }
        try c.build(f)
        let files = try FileManager.default.contentsOfDirectory(atPath: f.directory).filter { $0.hasSuffix(".qcow2") }.sorted()
        let before = try files.map { try f.sha256($0) }

        let withArgs = c.with.flatMap { ["--with", $0] }
        let verdict = try CLI.run(f, ["checkpoints", "top.qcow2", c.checkpoint, "--format", "json"] + withArgs)
        let doc = try Self.json(verdict.stdout)
        let reasons = doc["reasons"] as? [[String: Any]] ?? []
        let errors = Set(reasons.filter { $0["severity"] as? String == "error" }.compactMap { $0["code"] as? String })
        let infos = Set(reasons.filter { $0["severity"] as? String == "info" }.compactMap { $0["code"] as? String })
        #expect(errors == c.errors, "\(reasons)")
        #expect(infos == c.infos, "\(reasons)")
        #expect(doc["incremental_ready"] as? Bool == c.errors.isEmpty)
        #expect(verdict.status == (c.errors.isEmpty ? 0 : 1), "exit status follows the verdict")
        let dirty = try #require(Self.number(doc["dirty_bytes"]), "\(doc)")
        let backup = try #require(Self.number(doc["backup_bytes"]))
        let zero = try #require(Self.number(doc["zero_bytes"]))
        #expect(backup + zero == dirty)
        let extentsDoc = try Self.json(try CLI.run(f, ["checkpoints", "top.qcow2", c.checkpoint, "--extents", "--format", "json"] + withArgs).stdout)
        let ours: [Run] = try (extentsDoc["extents"] as? [[String: Any]] ?? []).map {
            (try #require(Self.number($0["start"])), try #require(Self.number($0["length"])), $0["dirty"] as? Bool == true)
        }
        #expect(ours.filter(\.dirty).reduce(0) { $0 + $1.length } == dirty, "the extents' dirty bytes are dirty_bytes")
        #expect(dirty > 0, "every case writes something the checkpoint records")

        // QEMU's merge on a scratch copy of the chain.
        let scratch = "scratch"
        try FileManager.default.createDirectory(atPath: f.path(scratch), withIntermediateDirectories: true)
        for file in files { try FileManager.default.copyItem(atPath: f.path(file), toPath: f.path("\(scratch)/\(file)")) }
        let granularity = try #require(Self.number(doc["granularity"]))
        try f.qemuImg(["bitmap", "--add", "-g", String(granularity), "-f", "qcow2", f.path("\(scratch)/top.qcow2"), "u"])
        var refusal: String? = nil
        let layers = doc["layers"] as? [[String: Any]] ?? []
        let layerNames = layers.compactMap { $0["image"] as? String }
        for name in [c.checkpoint] + c.with {
            for (depth, layer) in layerNames.enumerated() {
                // Which layers hold the name: the checkpoint's own layers, or (for a `with` name) qemu-img info's.
                let present: Bool
                if name == c.checkpoint {
                    present = layers[depth]["present"] as? Bool == true
                } else {
                    let info = try f.infoJSON("\(scratch)/\(layer)", extraArguments: ["-U"])
                    let bitmaps = ((info["format-specific"] as? [String: Any])?["data"] as? [String: Any])?["bitmaps"] as? [[String: Any]] ?? []
                    present = bitmaps.contains { $0["name"] as? String == name }
                }
                guard present else { continue }
                var args = ["bitmap", "--merge", name]
                if depth > 0 { args += ["-b", f.path("\(scratch)/\(layer)"), "-F", "qcow2"] }
                args += ["-f", "qcow2", f.path("\(scratch)/top.qcow2"), "u"]
                let r = try f.qemuImg(args, allowFailure: true)
                if r.status != 0 { refusal = (refusal ?? "") + r.stderr }
            }
        }
        if let expected = c.qemuRefuses {
            #expect(refusal?.contains(expected) == true, "qemu-img bitmap --merge should refuse (\(expected)): \(refusal ?? "it merged")")
        } else {
            #expect(refusal == nil, "qemu-img bitmap --merge failed: \(refusal ?? "")")
            let theirs = try Self.export(f, "\(scratch)/top.qcow2")
            #expect(Self.text(Self.merge(ours)) == Self.text(theirs.runs))
            #expect(dirty == theirs.dirty, "--totals")
            let (b, z) = Self.split(theirs.runs, theirs.alloc)
            #expect(backup == b, "backup_bytes against base:allocation")
            #expect(zero == z, "zero_bytes against base:allocation")
        }
        #expect(try files.map { try f.sha256($0) } == before, "the images under test are unchanged")
    }

    @Test("a writer holding the image: not ready (K8, and its bitmap in use: K1), ready again once it is gone")
    func writerPresent() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-checkpoints-")
        defer { f.removeDirectory() }
        try f.create("top.qcow2", size: 16 * Self.mib)
        try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
        try f.qemuIO("top.qcow2", ["write 0 64k"])
        let holder = try QemuHolder("qemu-io", ["-f", "qcow2", "top.qcow2"], directory: f.directory)
        defer { holder.stop() }
        var doc: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(15)
        repeat {
            doc = try Self.json(try CLI.run(f, ["checkpoints", "top.qcow2", "c1", "--format", "json"]).stdout)
            if doc["writer_present"] as? Bool == true { break }
            usleep(100_000)
        } while Date() < deadline
        let codes = Set((doc["reasons"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String })
        #expect(doc["writer_present"] as? Bool == true && codes.isSuperset(of: ["K8", "K1"]), "\(doc)")
        #expect(doc["incremental_ready"] as? Bool == false)
        #expect((doc["stale_reason"] as? String)?.contains("writer") == true)
        holder.send("quit")
        holder.process.wait()
        let after = try Self.json(try CLI.run(f, ["checkpoints", "top.qcow2", "c1", "--format", "json"]).stdout)
        #expect(after["incremental_ready"] as? Bool == true, "\(after)")
    }

    @Test("a missing backing file: not ready (K9); the listing names every bitmap of every layer")
    func incompleteChain() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-checkpoints-")
        defer { f.removeDirectory() }
        try f.create("base.qcow2", size: 16 * Self.mib)
        try f.bitmapAdd("base.qcow2", "old", granularity: 65536)
        try f.create("top.qcow2", size: 16 * Self.mib, backing: "base.qcow2")
        try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
        let listing = try Self.json(try CLI.run(f, ["checkpoints", "top.qcow2", "--format", "json"]).stdout)
        let names = (listing["checkpoints"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(names == ["c1", "old"])
        // "old" is only in the base, below the top that lacks it: K3 at depth 0.
        let old = (listing["checkpoints"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "old" }
        #expect((old?["reasons"] as? [[String: Any]] ?? []).contains { $0["code"] as? String == "K3" && Self.number($0["depth"]) == 0 })
        try FileManager.default.removeItem(atPath: f.path("base.qcow2"))
        let r = try CLI.run(f, ["checkpoints", "top.qcow2", "c1", "--format", "json"])
        let doc = try Self.json(r.stdout)
        let k9 = (doc["reasons"] as? [[String: Any]] ?? []).first { $0["code"] as? String == "K9" }
        #expect(k9 != nil && Self.number(k9?["depth"]) == 1, "\(doc)")
        #expect(r.status == 1 && doc["chain_complete"] as? Bool == false)
    }
}
