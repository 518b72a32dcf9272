import Dispatch
import Foundation
import HTTPTypes
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The API's deferred path (the daemon's): file work on the executor, stalls answered at once.
@Suite("API with an I/O policy", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct DeferredAPITests {
    /// Answers `target` through the deferred path and waits for the answer.
    static func ask(_ api: API, _ target: String, headers: [(name: String, value: String)] = []) -> Response {
        let box = Mutex<Response?>(nil)
        let done = DispatchSemaphore(value: 0)
        api.respond(TestRequest(method: "GET", target: target, headers: headers).head) { r in
            box.withLock { $0 = r }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 30)
        return box.withLock { $0 } ?? Response(head: HTTPResponse(status: .internalServerError))
    }

    @Test("a stalled image answers 503 image-stalled at once, other images 200; without the token it is 401")
    func stalledImage() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-deferred-")
        defer { f.removeDirectory() }
        try f.create("a.qcow2", size: 1 << 20)
        try f.create("b.qcow2", size: 1 << 20)
        let catalog = try ImageCatalog(path: f.directory)
        let io = IOPolicy(executor: IOExecutor(threads: 2), timeout: .seconds(2), stallAfter: .milliseconds(20))
        let access = API.AccessPolicy(accepts: { $0 == "Bearer secret" })
        let api = API(catalog: catalog, access: access, io: io)
        let token = [(name: "Authorization", value: "Bearer secret")]
        #expect(Self.ask(api, "/v1/images/a.qcow2", headers: token).status == 200)

        // A read of a.qcow2 that never returns (as storage that stalls leaves it).
        let stuck = catalog.activity(named: "a.qcow2").begin(65536)
        defer { catalog.activity(named: "a.qcow2").end(stuck) }
        Thread.sleep(forTimeInterval: 0.05)
        let start = ContinuousClock.now
        let r = Self.ask(api, "/v1/images/a.qcow2/header", headers: token)
        #expect(ContinuousClock.now - start < .milliseconds(200))
        #expect(r.status == 503 && r.header("Retry-After") == "2")
        let body = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        #expect(body["type"] as? String == "urn:qcowscope:problem:image-stalled")
        #expect(body["image"] as? String == "a.qcow2" && body["offset"] as? Int == 65536 && body["operation"] as? String == "read")
        #expect(Self.ask(api, "/v1/images/b.qcow2", headers: token).status == 200)
        #expect(Self.ask(api, "/v1/images/a.qcow2/header").status == 401, "a stall must not show through to an unauthenticated caller")

        let listing = try #require(
            try JSONSerialization.jsonObject(with: Data(Self.ask(api, "/v1/images", headers: token).body)) as? [String: Any])
        let items = try #require(listing["images"] as? [[String: Any]])
        #expect(items.map { $0["status"] as? String } == ["stalled", "ok"])
        #expect((items[0]["error"] as? [String: Any])?["offset"] as? Int == 65536)
    }

    @Test("kept bodies are answered without touching the file, and a change in place, a truncation or a rename over it is seen by the very next request; symlinks always take the I/O path")
    func freshness() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-deferred-")
        defer { f.removeDirectory() }
        try f.create("a.qcow2", size: 1 << 20)
        let catalog = try ImageCatalog(path: f.directory)
        try #require(catalog.watchesChanges, "the test directory is on a local filesystem with inotify")
        let api = API(catalog: catalog, io: IOPolicy(executor: IOExecutor(threads: 2), timeout: .seconds(5)))
        func size(_ name: String = "a.qcow2") throws -> Int? {
            let r = Self.ask(api, "/v1/images/\(name)/header")
            guard r.status == 200 else { return nil }
            return (try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["size"] as? Int
        }
        #expect(try size() == 1 << 20)
        let hits = catalog.freshHits
        #expect(try size() == 1 << 20)
        #expect(catalog.freshHits == hits + 1, "the second request is answered from the kept body")
        // Changed in place (qemu-img rewrites the header field).
        try f.qemuImg(["resize", "-q", "-f", "qcow2", f.path("a.qcow2"), "2M"])
        #expect(try size() == 2 << 20)
        #expect(try size() == 2 << 20)
        // Replaced by a rename.
        try f.create("b.qcow2", size: 4 << 20)
        #expect(rename(f.path("b.qcow2"), f.path("a.qcow2")) == 0)
        #expect(try size() == 4 << 20)
        #expect(try size() == 4 << 20)
        let before = catalog.freshHits
        // Truncated to less than a header: the next answer says so.
        #expect(truncate(f.path("a.qcow2"), 50) == 0)
        #expect(Self.ask(api, "/v1/images/a.qcow2/header").status == 422)
        #expect(catalog.freshHits == before, "no kept body after a change")
        // A symlink's target can change without an event for the link's name.
        try f.create("c.qcow2", size: 8 << 20)
        #expect(symlink("c.qcow2", f.path("link.qcow2")) == 0)
        #expect(try size("link.qcow2") == 8 << 20)
        let linkHits = catalog.freshHits
        #expect(try size("link.qcow2") == 8 << 20)
        #expect(catalog.freshHits == linkHits, "a symlink is never served without a lookup")
        try f.qemuImg(["resize", "-q", "-f", "qcow2", f.path("c.qcow2"), "16M"])
        #expect(try size("link.qcow2") == 16 << 20)
    }

    @Test("an answer that does not come within the deadline is 504 io-timeout; the work finishes later")
    func deadline() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-deferred-")
        defer { f.removeDirectory() }
        try f.create("a.qcow2", size: 1 << 20)
        let catalog = try ImageCatalog(path: f.directory)
        // One worker, busy for a second: the request waits in the queue past its 200 ms deadline.
        let executor = IOExecutor(threads: 1, maxThreads: 1)
        executor.submit { Thread.sleep(forTimeInterval: 1) }
        let api = API(catalog: catalog, io: IOPolicy(executor: executor, timeout: .milliseconds(200)))
        let start = ContinuousClock.now
        let r = Self.ask(api, "/v1/images/a.qcow2")
        let took = ContinuousClock.now - start
        #expect(r.status == 504 && took >= .milliseconds(190) && took < .milliseconds(900), "\(r.status) after \(took)")
        let body = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        #expect(body["type"] as? String == "urn:qcowscope:problem:io-timeout" && body["image"] as? String == "a.qcow2")
        Thread.sleep(forTimeInterval: 1.2)
        #expect(Self.ask(api, "/v1/images/a.qcow2").status == 200)
        #expect(Self.ask(api, "/healthz").status == 200)
    }
}
