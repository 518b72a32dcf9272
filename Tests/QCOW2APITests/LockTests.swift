import Foundation
import ProcessTestSupport
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Testing

/// A QEMU process kept running in the background while it holds an image: `qemu-io` reading
/// commands from a pipe, or `qemu-nbd` serving on a unix socket. Killed with SIGKILL (test
/// threads may block SIGTERM) by ``stop()``, which every test calls in a `defer`.
final class QemuHolder: @unchecked Sendable {
    let process: ChildProcess
    let log: String

    init(_ tool: String, _ arguments: [String], directory: String) throws {
        var env = ProcessInfo.processInfo.environment
        env["LC_ALL"] = "C"
        log = "\(directory)/\(tool)-\(UUID().uuidString.prefix(8)).log"
        process = try ChildProcess(
            try Self.locate(tool), arguments, environment: env, directory: directory,
            stdin: .pipe, stdout: .file(log), stderr: .file(log))
    }

    /// Sends one interactive command (qemu-io) on its standard input.
    func send(_ command: String) {
        process.write(command + "\n")
    }

    /// Everything the process printed so far.
    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func stop() {
        process.kill()
        process.wait()
        process.closeInput()
    }

    static func locate(_ tool: String) throws -> String {
        guard let path = ChildProcess.locate(tool) else { throw QemuToolError.toolNotFound(tool) }
        return path
    }

    static var nbdAvailable: Bool { (try? locate("qemu-nbd")) != nil }
}

/// One image with two bitmaps in a private directory, and an API over it.
struct LockFixture {
    let factory: QemuImageFactory
    let api: API
    let image = "vm.qcow2"

    init() throws {
        factory = try QemuImageFactory(prefix: "qcowscope-locks-")
        try factory.create(image, size: 16 << 20, options: ["cluster_size=65536"])
        try factory.bitmapAdd(image, "b0")
        try factory.write(image, offset: 0, length: 65536)
        api = API(catalog: try ImageCatalog(path: factory.directory))
    }

    func get(_ target: String, headers: [(name: String, value: String)] = []) -> Response {
        api.handle(TestRequest(method: "GET", target: target, headers: headers))
    }

    func json(_ target: String) throws -> [String: Any] {
        let r = get(target)
        #expect(r.status == 200, "\(target): \(r.status) \(String(decoding: r.body, as: UTF8.self))")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
    }

    var locks: [String: Any] { get throws { try json("/v1/images/\(image)/locks") } }

    /// Held offsets of the locks view.
    func heldOffsets() throws -> [Int] {
        let bytes = try #require(try locks["bytes"] as? [[String: Any]])
        return bytes.filter { $0["held"] as? Bool == true }.compactMap { $0["offset"] as? Int }
    }

    /// Polls the locks view until `done` holds (QEMU takes its locks shortly after start).
    func wait(_ what: String, _ holder: QemuHolder, until done: ([String: Any]) -> Bool) throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if done(try locks) { return }
            guard holder.process.isRunning else { break }
            usleep(50_000)
        }
        Issue.record("timed out waiting for \(what); locks: \(try locks); holder output: \(holder.output)")
    }

    /// The four bitmap answers of `b0`.
    var bitmapTargets: [String] {
        let base = "/v1/images/\(image)/bitmaps"
        return [base, base + "/b0", base + "/b0/table", base + "/b0/extents"]
    }

    func cleanup() { factory.removeDirectory() }
}

@Suite(
    "QEMU lock bytes (real qemu-io / qemu-nbd holders)", .serialized,
    .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"))
struct LockTests {
    @Test("nobody holds the image: every byte free, no writer, nothing stale; our open descriptor locks nothing")
    func nobody() throws {
        let fx = try LockFixture()
        defer { fx.cleanup() }
        let l = try fx.locks
        #expect(l["writer_present"] as? Bool == false)
        #expect(l["readers_present"] as? Bool == false)
        #expect(l["shared_write_allowed"] as? Bool == true)
        #expect(l["locks_held"] as? Bool == false)
        #expect(l["probe_error"] is NSNull)
        let bytes = try #require(l["bytes"] as? [[String: Any]])
        #expect(bytes.compactMap { $0["offset"] as? Int } == [100, 101, 102, 103, 200, 201, 202, 203])
        #expect(bytes.allSatisfy { $0["held"] as? Bool == false && $0["owner_pid"] is NSNull && $0["lock_type"] is NSNull })
        let s = try fx.json("/v1/images/\(fx.image)")
        #expect(s["writer_present"] as? Bool == false && s["locks_held"] as? Bool == false)
        for t in fx.bitmapTargets {
            let o = try fx.json(t)
            #expect(o["writer_present"] as? Bool == false, "\(t)")
            #expect(o["stale_reason"] is NSNull, "\(t)")
        }
        // The catalog keeps the image open (cached entry) and has just probed it: QEMU must see
        // nothing. A writer opens it and writes, and a locking `qemu-img info` (no -U) succeeds.
        try fx.factory.write(fx.image, pattern: 0x5a, offset: 65536, length: 4096)
        let info = try fx.factory.qemuImg(["info", "--output=json", fx.factory.path(fx.image)], allowFailure: true)
        #expect(info.status == 0, "qemu-img info failed next to our descriptor: \(info.stderr)")
        #expect(try fx.heldOffsets().isEmpty)
    }

    @Test(
        "a writer holds the image: writer present, every bitmap answer stale, ETag changes, QEMU unaffected",
        arguments: ["qemu-io", "qemu-nbd"])
    func writer(tool: String) throws {
        if tool == "qemu-nbd" && !QemuHolder.nbdAvailable { return }
        let fx = try LockFixture()
        defer { fx.cleanup() }
        let summaryPath = "/v1/images/\(fx.image)"
        let before = try #require(fx.get(summaryPath).header("ETag"))
        let bitmapsBefore = try #require(fx.get(fx.bitmapTargets[0]).header("ETag"))
        let args =
            tool == "qemu-io"
            ? ["-f", "qcow2", fx.image]
            : ["-f", "qcow2", "-k", "\(fx.factory.directory)/nbd.sock", "--persistent", fx.image]
        let holder = try QemuHolder(tool, args, directory: fx.factory.directory)
        defer { holder.stop() }
        try fx.wait("the writer's locks", holder) { $0["writer_present"] as? Bool == true }

        let l = try fx.locks
        #expect(l["writer_present"] as? Bool == true)
        #expect(l["readers_present"] as? Bool == true)
        #expect(l["shared_write_allowed"] as? Bool == false)
        #expect(l["locks_held"] as? Bool == true)
        #expect(l["permissions_held"] as? [String] == ["consistent_read", "write", "resize"])
        #expect(l["permissions_not_shared"] as? [String] == ["write", "resize"])
        #expect(try fx.heldOffsets() == [100, 101, 103, 201, 203])
        let bytes = try #require(l["bytes"] as? [[String: Any]])
        for b in bytes where b["held"] as? Bool == true {
            // QEMU takes shared OFD locks: the kernel reports type read and l_pid -1 (null here).
            #expect(b["lock_type"] as? String == "read")
            #expect(b["owner_pid"] is NSNull)
        }

        let s = try fx.json(summaryPath)
        #expect(s["writer_present"] as? Bool == true && s["locks_held"] as? Bool == true)
        for t in fx.bitmapTargets {
            let o = try fx.json(t)
            #expect(o["writer_present"] as? Bool == true, "\(t)")
            #expect((o["stale_reason"] as? String)?.contains("writer") == true, "\(t)")
        }
        let entries = try #require(try fx.json(fx.bitmapTargets[0])["bitmaps"] as? [[String: Any]])
        #expect(entries.allSatisfy { $0["writer_present"] as? Bool == true && $0["stale_reason"] is String })
        // QEMU flags the bitmap in-use while it has the image open read-write: the reason names the
        // writer, not a crash.
        let inUse = entries.filter { $0["in_use"] as? Bool == true }
        #expect(!inUse.isEmpty, "the writer did not flag b0 in-use")
        for e in inUse {
            let reason = e["inconsistent_reason"] as? String ?? ""
            #expect(reason.contains("a writer has the image open") && !reason.contains("crash"), "\(reason)")
        }

        // A poller's old ETag no longer matches: the lock state is part of it.
        #expect(fx.get(summaryPath, headers: [("If-None-Match", before)]).status == 200)
        #expect(fx.get(fx.bitmapTargets[0], headers: [("If-None-Match", bitmapsBefore)]).status == 200)
        // ... and a stable state still answers 304.
        let now = try #require(fx.get(fx.bitmapTargets[0]).header("ETag"))
        #expect(fx.get(fx.bitmapTargets[0], headers: [("If-None-Match", now)]).status == 304)
        let locksTag = try #require(fx.get("/v1/images/\(fx.image)/locks").header("ETag"))
        #expect(fx.get("/v1/images/\(fx.image)/locks", headers: [("If-None-Match", locksTag)]).status == 304)

        // While we keep probing, QEMU behaves as it does without us: a second opener fails on the
        // writer's lock (QEMU's own protocol), `-U` reads fine.
        for _ in 0..<20 { _ = fx.get("/v1/images/\(fx.image)/locks") }
        let locked = try fx.factory.qemuImg(["info", fx.factory.path(fx.image)], allowFailure: true)
        #expect(locked.status != 0 && locked.stderr.contains("lock"), "\(locked.status) \(locked.stderr)")
        let shared = try fx.factory.qemuImg(["info", "-U", "--output=json", fx.factory.path(fx.image)], allowFailure: true)
        #expect(shared.status == 0, "qemu-img info -U: \(shared.stderr)")
        if tool == "qemu-io" {
            // The writer itself still writes after our probes.
            holder.send("write -P 0x77 131072 4096")
            let deadline = Date().addingTimeInterval(10)
            while !holder.output.contains("wrote 4096/4096") && Date() < deadline { usleep(50_000) }
            #expect(holder.output.contains("wrote 4096/4096"), "qemu-io output: \(holder.output)")
            #expect(!holder.output.contains("lock"), "qemu-io output: \(holder.output)")
        }

        holder.stop()
        #expect(try fx.locks["writer_present"] as? Bool == false)
        #expect(try fx.heldOffsets().isEmpty)
        #expect(try fx.json(fx.bitmapTargets[0])["stale_reason"] is NSNull)
    }

    @Test("a read-only user (qemu-nbd -r) holds the image: readers present, no writer, writes not shared")
    func reader() throws {
        guard QemuHolder.nbdAvailable else { return }
        let fx = try LockFixture()
        defer { fx.cleanup() }
        let holder = try QemuHolder(
            "qemu-nbd", ["-r", "-f", "qcow2", "-k", "\(fx.factory.directory)/nbd.sock", "--persistent", fx.image],
            directory: fx.factory.directory)
        defer { holder.stop() }
        try fx.wait("the reader's locks", holder) { $0["readers_present"] as? Bool == true }
        let l = try fx.locks
        #expect(l["writer_present"] as? Bool == false)
        #expect(l["readers_present"] as? Bool == true)
        #expect(l["shared_write_allowed"] as? Bool == false)
        #expect(l["locks_held"] as? Bool == true)
        #expect(try fx.heldOffsets() == [100, 201, 203])
        let s = try fx.json("/v1/images/\(fx.image)")
        #expect(s["writer_present"] as? Bool == false && s["locks_held"] as? Bool == true)
        for t in fx.bitmapTargets {
            let o = try fx.json(t)
            #expect(o["writer_present"] as? Bool == false, "\(t)")
            #expect(o["stale_reason"] is NSNull, "\(t)")
        }
        // A second reader is fine next to it and to us, as without us.
        let info = try fx.factory.qemuImg(["info", fx.factory.path(fx.image)], allowFailure: true)
        #expect(info.status == 0, "qemu-img info: \(info.stderr)")
    }

    @Test("views without lock state keep their ETag and take no probe")
    func unaffectedViews() throws {
        let fx = try LockFixture()
        defer { fx.cleanup() }
        let header = try fx.json("/v1/images/\(fx.image)/header")
        #expect(header["writer_present"] == nil)
        let tag = try #require(fx.get("/v1/images/\(fx.image)/header").header("ETag"))
        #expect(fx.get("/v1/images/\(fx.image)/header", headers: [("If-None-Match", tag)]).status == 304)
        #expect(fx.get("/v1/images/nope.qcow2/locks").status == 404)
        #expect(fx.get("/v1/images/\(fx.image)/locks/x").status == 404)
    }

    @Test("a check while a writer holds the image is busy: figures shown, not reported as corruption; clean once it leaves")
    func checkWhileWriting() throws {
        let fx = try LockFixture()
        defer { fx.cleanup() }
        // qemu-io writes with lazy refcounts on, so the refcounts on disk lag while it runs.
        try fx.factory.qemuImg(["amend", "-o", "lazy_refcounts=on", fx.factory.path(fx.image)])
        let holder = try QemuHolder("qemu-io", ["-f", "qcow2", fx.image], directory: fx.factory.directory)
        try fx.wait("the writer's locks", holder) { $0["writer_present"] as? Bool == true }
        holder.send("write -P 7 1M 128k")
        let deadline = Date().addingTimeInterval(15)
        while !holder.output.contains("wrote 131072/131072") && Date() < deadline { usleep(50_000) }
        let busy = try fx.json("/v1/images/\(fx.image)/check")
        #expect(busy["state"] as? String == "busy" && busy["writer_present"] as? Bool == true, "\(busy)")
        #expect((busy["stale_reason"] as? String)?.contains("writer") == true)
        let listed = try fx.json("/v1/images")
        let item = try #require((listed["images"] as? [[String: Any]])?.first)
        #expect(item["status"] as? String != "errors", "a busy verdict is never reported as corruption: \(item)")
        let findings = try fx.json("/v1/images/\(fx.image)/findings")
        let codes = (findings["findings"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
        #expect(!codes.contains("C1") && !codes.contains("C3"), "\(codes)")
        holder.send("quit")
        let quit = Date().addingTimeInterval(10)
        while holder.process.isRunning && Date() < quit { usleep(50_000) }
        holder.stop()
        // The writer is gone (it wrote the refcounts when it closed the image): checked again, clean.
        let after = try fx.json("/v1/images/\(fx.image)/check")
        #expect(after["writer_present"] as? Bool == false)
        #expect(after["state"] as? String == "clean", "\(after)")
    }
}
