import Foundation
import ProcessTestSupport
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Testing

/// The read-only check (`/check`, `qcowscope check`) against `qemu-img check` 7.2 on the same files.
///
/// The corpus is built at test time by `Tests/Scripts/make-check-cases.py` from the recipes of
/// qemu-check-map.md §4 (qemu-img and qemu-io, and the byte pokes of `Tests/Scripts/q2.py` for the damage
/// qemu-img will not make). For every image qemu-img can open, each figure of `qemu-img check -U
/// --output=json` (an absent key is 0) must equal the document's, and the exit status qemu-img gives must be
/// the one `qcowscope check` gives. Where qemu-img refuses or fails, the check must still answer and say what
/// it could not do.
@Suite(
    "The check agrees with qemu-img check 7.2",
    .enabled(if: QemuImageFactory.toolsAvailable && CLI.binary != nil, "needs qemu-img, qemu-io and the built qcowscope"),
    .serialized)
struct CheckAgreementTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// One case of the corpus manifest.
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var image: String
        var opens: Bool
        var secret: String?
        var description: String { name }
    }

    /// qemu-img check's keys and the document's, in the order qemu-img's JSON defines them.
    static let figures: [(qemu: String, ours: String)] = [
        ("check-errors", "check_errors"), ("corruptions", "corruptions"), ("leaks", "leaks"),
        ("corruptions-fixed", "corruptions_fixed"), ("leaks-fixed", "leaks_fixed"),
        ("image-end-offset", "image_end_offset"), ("total-clusters", "total_clusters"),
        ("allocated-clusters", "allocated_clusters"), ("fragmented-clusters", "fragmented_clusters"),
        ("compressed-clusters", "compressed_clusters"),
    ]

    /// Builds the corpus once into a fresh directory; its manifest.
    static func corpus() throws -> (directory: String, cases: [Case]) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qcowscope-check-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let script = root.appendingPathComponent("Tests/Scripts/make-check-cases.py").path
        let r = try ChildProcess.run(try #require(ChildProcess.locate("python3")), [script, dir], timeout: 600)
        guard r.status == 0, !r.signaled else {
            Issue.record("make-check-cases.py failed (\(r.status)): \(r.stderr.suffix(2000))")
            throw CancellationError()
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/manifest.json"))
        let list = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        let cases = list.compactMap { o -> Case? in
            guard let n = o["name"] as? String, let i = o["image"] as? String else { return nil }
            return Case(name: n, image: i, opens: o["opens"] as? Bool ?? true, secret: o["secret"] as? String)
        }
        return (dir, cases)
    }

    /// `qemu-img check -U --output=json` of `c`: exit status, the parsed JSON (nil when none was printed), stderr.
    static func qemuCheck(_ dir: String, _ c: Case, human: Bool = false) throws -> (status: Int32, json: [String: Any]?, stdout: String, stderr: String) {
        // From the image's directory, by its own name: QEMU opens a data file relative to the working directory.
        let full = dir + "/" + c.image
        let slash = full.lastIndex(of: "/") ?? full.startIndex
        let (folder, path) = (String(full[..<slash]), String(full[full.index(after: slash)...]))
        var args = ["check", "-U"]
        if !human { args.append("--output=json") }
        if let s = c.secret {
            args += ["--object", "secret,id=sec0,data=\(s)", "--image-opts", "driver=qcow2,file.filename=\(path),encrypt.key-secret=sec0"]
        } else {
            args += ["-f", "qcow2", path]
        }
        let r = try ChildProcess.run(try #require(ChildProcess.locate("qemu-img")), args, directory: folder, timeout: 120)
        var json: [String: Any]? = nil
        if !human, !r.stdout.isEmpty, let d = r.stdout.data(using: .utf8) {
            json = try JSONSerialization.jsonObject(with: d) as? [String: Any]
        }
        return (r.signaled ? -1 : r.status, json, r.stdout, r.stderr)
    }

    /// `qcowscope check --format json|text` of `c`'s image.
    static func ourCheck(_ dir: String, _ c: Case, format: String = "json") throws -> (status: Int32, json: [String: Any]?, stdout: String) {
        let r = try Self.cli(["check", dir + "/" + c.image, "--format", format])
        var json: [String: Any]? = nil
        if format == "json", let d = r.stdout.data(using: .utf8) {
            json = try JSONSerialization.jsonObject(with: d) as? [String: Any]
        }
        return (r.status, json, r.stdout)
    }

    /// Runs the built `qcowscope` with `arguments`.
    static func cli(_ arguments: [String]) throws -> ChildProcess.Result {
        try ChildProcess.run(try #require(CLI.binary), arguments, timeout: 120)
    }

    static func number(_ v: Any?) -> UInt64 {
        (v as? NSNumber)?.uint64Value ?? 0
    }

    @Test("every figure and the exit status equal qemu-img check's on the whole corpus; refused images still get an answer")
    func corpusAgrees() throws {
        let (dir, cases) = try Self.corpus()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(cases.count >= 90, "the corpus has \(cases.count) cases")
        var compared = 0
        for c in cases {
            let ours = try Self.ourCheck(dir, c)
            let doc = try #require(ours.json, "\(c.name): qcowscope check printed no JSON")
            let qemu = try Self.qemuCheck(dir, c)
            guard c.opens, let theirs = qemu.json else {
                // qemu-img prints nothing (open refused, or its check failed): ours says what it could not do.
                #expect(qemu.json == nil || !c.opens, "\(c.name): qemu-img printed JSON for a case listed as refused")
                let refuses = (doc["qemu_refuses"] as? [String]) ?? []
                let incomplete = doc["complete"] as? Bool == false
                let found = Self.number(doc["corruptions"]) + Self.number(doc["check_errors"]) > 0
                #expect(!refuses.isEmpty || incomplete || found,
                    "\(c.name): qemu-img refuses the image (\(qemu.stderr.prefix(200))) but the check reports nothing: \(doc)")
                continue
            }
            compared += 1
            for (q, o) in Self.figures {
                #expect(Self.number(theirs[q]) == Self.number(doc[o]),
                    "\(c.name): \(q) is \(Self.number(theirs[q])) for qemu-img, \(o) \(Self.number(doc[o])) here; qemu-img stderr: \(qemu.stderr.prefix(600))")
            }
            #expect(ours.status == qemu.status, "\(c.name): exit status \(ours.status), qemu-img \(qemu.status)")
            #expect(doc["complete"] as? Bool == true, "\(c.name): \(String(describing: doc["incomplete_reason"]))")
            // Each corruption and leak qemu-img counts is one problem here (up to the 1000 listed).
            let counts = doc["problem_counts"] as? [String: Any] ?? [:]
            let problems = counts.values.reduce(UInt64(0)) { $0 + Self.number($1) }
            #expect(problems == Self.number(doc["corruptions"]) + Self.number(doc["leaks"]) + Self.number(doc["check_errors"]),
                "\(c.name): \(problems) problems for \(doc["corruptions"] ?? 0) corruptions, \(doc["leaks"] ?? 0) leaks")
        }
        #expect(compared >= 80, "only \(compared) cases compared with qemu-img")
    }

    @Test("the text output and exit status are qemu-img check's, byte for byte")
    func humanTextAgrees() throws {
        let (dir, cases) = try Self.corpus()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names: Set = ["fresh", "written", "compressed_zlib", "lazy_crash", "c_leak", "c_refcount2_unshared", "c_reftable_unaligned", "snap1_cow", "cs512_big"]
        let chosen = cases.filter { names.contains($0.name) }
        #expect(chosen.count == names.count, "cases missing from the corpus: \(names.subtracting(chosen.map(\.name)))")
        for c in chosen {
            let qemu = try Self.qemuCheck(dir, c, human: true)
            let ours = try Self.ourCheck(dir, c, format: "text")
            #expect(ours.stdout == qemu.stdout, "\(c.name): ours\n\(ours.stdout)\nqemu-img\n\(qemu.stdout)")
            #expect(ours.status == qemu.status, "\(c.name): exit \(ours.status), qemu-img \(qemu.status)")
        }
    }

    @Test("problems name the rule, the structure, the value and the file offset")
    func problemsAreSpecific() throws {
        let (dir, cases) = try Self.corpus()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func problems(_ name: String) throws -> [[String: Any]] {
            let c = try #require(cases.first { $0.name == name }, "no case \(name)")
            let doc = try #require(try Self.ourCheck(dir, c).json)
            return doc["problems"] as? [[String: Any]] ?? []
        }
        // A leaked cluster: C2 on cluster 8, with the refcount's file offset (refblock at 0x20000, 16-bit entries).
        let leak = try problems("c_leak")
        #expect(leak.count == 1 && leak.first?["code"] as? String == "C2" && leak.first?["structure"] as? String == "cluster[8]")
        #expect(Self.number(leak.first?["offset"]) == 0x20000 + 16)
        // A lazy-refcounts crash: every written cluster twice (C1 then C3), as qemu-img counts them.
        let lazy = try problems("lazy_crash")
        #expect(lazy.filter { $0["code"] as? String == "C1" }.count == 16)
        #expect(lazy.filter { $0["code"] as? String == "C3" }.count == 16)
        // An L2 entry past the end of the file: C4 at the entry's own offset, and its copied flag (C3).
        let past = try problems("c_l2_past_eof")
        let c4 = try #require(past.first { $0["code"] as? String == "C4" })
        #expect(c4["structure"] as? String == "l2_table[0][3]" && Self.number(c4["offset"]) == 0x40000 + 24)
        #expect(past.contains { $0["code"] as? String == "C3" })
    }

    @Test("a file needing more counters than --check-memory allows is not checked, and says so")
    func memoryLimitIsReported() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-check-")
        defer { f.removeDirectory() }
        try f.create("t.qcow2", size: 64 << 20, options: ["cluster_size=512", "preallocation=metadata"])
        let r = try Self.cli(["check", f.path("t.qcow2"), "--format", "json", "--check-memory", "0"])
        #expect(r.status == 1)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(doc["complete"] as? Bool == false)
        #expect((doc["incomplete_reason"] as? String)?.contains("--check-memory") == true, "\(doc)")
        #expect((doc["problems"] as? [[String: Any]])?.contains { $0["code"] as? String == "C9" } == true)
    }

    @Test("the round-1 image corpus and every refcount width 1-64 (snapshots, compressed and shared clusters) agree with qemu-img check")
    func standardImagesAndWidthsAgree() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-check-std-")
        defer { f.removeDirectory() }
        var cases: [Case] = try StandardImages.makeAll(in: f).map { img in
            let rel = String(img.path.dropFirst(f.directory.count + 1))
            return Case(name: img.scenario.rawValue, image: rel, opens: true, secret: img.scenario == .luks ? StandardImages.luksSecret : nil)
        }
        for order in 0...6 {
            let name = "rc\(1 << order).qcow2"
            try f.create(name, size: 4 << 20, options: ["refcount_bits=\(1 << order)", "cluster_size=4096"])
            try f.write(name, pattern: 1, offset: 0, length: 256 << 10)
            try f.write(name, pattern: 2, offset: 1 << 20, length: 64 << 10, compressed: true)
            // A snapshot shares every cluster (refcount 2, 3 for the shared compressed host cluster): qemu-img
            // refuses it below 8-bit refcounts.
            if order >= 3 { try f.snapshotCreate(name, "s1") }
            try f.write(name, pattern: 3, offset: 64 << 10, length: 64 << 10)
            cases.append(Case(name: "refcount_bits=\(1 << order)", image: name, opens: true, secret: nil))
        }
        for c in cases {
            let qemu = try Self.qemuCheck(f.directory, c)
            let theirs = try #require(qemu.json, "\(c.name): qemu-img check printed no JSON: \(qemu.stderr.prefix(300))")
            let ours = try Self.ourCheck(f.directory, c)
            let doc = try #require(ours.json, "\(c.name): no JSON")
            for (q, o) in Self.figures {
                #expect(Self.number(theirs[q]) == Self.number(doc[o]), "\(c.name): \(q) \(Self.number(theirs[q])) vs \(o) \(Self.number(doc[o]))")
            }
            #expect(ours.status == qemu.status, "\(c.name): exit \(ours.status), qemu-img \(qemu.status)")
        }
    }
}
