import Dispatch
import Foundation
import HTTPTypes
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Synchronization
import Testing

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
