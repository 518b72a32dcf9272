import Foundation
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Synchronization
import Testing

/// `GET /v1/images/{image}/check` over the API: 202 while the check runs, one run per file version, 200
/// with a validator when done, a new run when the file changes, and its problems in `/findings`.
@Suite("The check route", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct CheckRouteTests {
    static func json(_ r: Response) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
    }

    @Test("a slow check answers 202 with progress and Retry-After, joins the same run, then 200, 304 and a new run after a write")
    func slowCheckIsAccepted() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-checkroute-")
        defer { f.removeDirectory() }
        try f.create("t.qcow2", size: 1 << 20)
        try f.write("t.qcow2", pattern: 1, offset: 0, length: 256 << 10)
        let catalog = try ImageCatalog(path: f.directory)
        let pool = IOExecutor(threads: 1)
        let reads = Atomic<Int>(0)
        var options = CheckOptions()
        // Every table read waits: the check takes well over the route's wait.
        options.pace = { _ in
            reads.add(1, ordering: .relaxed)
            Thread.sleep(forTimeInterval: 0.15)
        }
        catalog.checks.configure(launch: { pool.submit($0) }, options: options, wait: .milliseconds(50))
        let api = API(catalog: catalog)

        let first = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check"))
        #expect(first.status == 202)
        #expect(first.header("Retry-After") == "1" && first.header("Cache-Control") == "no-store" && first.header("ETag") == nil)
        let running = try Self.json(first)
        #expect(running["state"] as? String == "running")
        #expect((running["progress"] as? [String: Any])?["total_bytes"] != nil)
        let job = try #require(catalog.checks.currentJob(named: "t.qcow2"))
        let second = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check"))
        #expect(second.status == 202)
        #expect(catalog.checks.currentJob(named: "t.qcow2") === job, "a second request must join the running check")

        var done = second
        let deadline = ContinuousClock.now + .seconds(30)
        while done.status == 202 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            done = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check"))
        }
        #expect(done.status == 200)
        let doc = try Self.json(done)
        #expect(doc["state"] as? String == "clean" && doc["allocated_clusters"] as? Int == 4)
        #expect(doc["corruptions_fixed"] as? Int == 0 && doc["leaks_fixed"] as? Int == 0)
        let etag = try #require(done.header("ETag"))
        let again = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check", headers: [("If-None-Match", etag)]))
        #expect(again.status == 304)
        let readsAfterOne = reads.load(ordering: .relaxed)
        #expect(api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check")).status == 200)
        #expect(reads.load(ordering: .relaxed) == readsAfterOne, "a finished check is cached until the file changes")

        // The file changes: a new check of the new version.
        try f.write("t.qcow2", pattern: 2, offset: 512 << 10, length: 64 << 10)
        var next = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check"))
        #expect(catalog.checks.currentJob(named: "t.qcow2") !== job)
        while next.status == 202 && ContinuousClock.now < deadline + .seconds(30) {
            Thread.sleep(forTimeInterval: 0.1)
            next = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check"))
        }
        #expect(try Self.json(next)["allocated_clusters"] as? Int == 5)
        #expect(next.header("ETag") != etag)
    }

    @Test("a corrupt image's problems are in /findings once checked, and the ETag of /findings changes with it")
    func problemsReachFindings() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-checkroute-")
        defer { f.removeDirectory() }
        try f.create("t.qcow2", size: 1 << 20, options: ["lazy_refcounts=on"])
        try f.crash("t.qcow2", after: ["write -P 1 0 128k"])
        let api = API(catalog: try ImageCatalog(path: f.directory))
        let before = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/findings"))
        let codes = { (r: Response) throws -> [String] in
            ((try Self.json(r)["findings"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String }
        }
        #expect(try !codes(before).contains("C1"))
        let check = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/check"))
        #expect(check.status == 200)
        let doc = try Self.json(check)
        #expect(doc["state"] as? String == "corrupt" && doc["corruptions"] as? Int == 4)
        let after = api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2/findings"))
        #expect(try codes(after).filter { $0 == "C1" }.count == 2)
        #expect(try codes(after).filter { $0 == "C3" }.count == 2)
        #expect(after.header("ETag") != before.header("ETag"))
        let summary = try Self.json(api.handle(TestRequest(method: "GET", target: "/v1/images/t.qcow2")))
        let c = try #require(summary["check"] as? [String: Any])
        #expect(c["state"] as? String == "corrupt" && c["corruptions"] as? Int == 4)
        let listing = try Self.json(api.handle(TestRequest(method: "GET", target: "/v1/images")))
        let item = try #require((listing["images"] as? [[String: Any]])?.first)
        #expect(item["status"] as? String == "errors")
        #expect((item["check"] as? [String: Any])?["state"] as? String == "corrupt")
    }
}

/// Adding a check's problems to an image's findings shares the image's findings and pages the merge in order.
@Suite("FindingIndex with added findings")
struct FindingIndexMergeTests {
    @Test("every page of the merge equals the same page of one index made of all the findings")
    func pagesMatchOneIndex() {
        var base: [Finding] = []
        var more: [Finding] = []
        let rules: [Rule] = [.h5, .h6, .c2, .c1, .s5]
        for i in 0..<300 {
            let r = rules[i % rules.count]
            base.append(Finding(r, structure: "b\(i)", offset: i % 7 == 0 ? nil : UInt64((i * 37) % 101), message: "b\(i)"))
        }
        for i in 0..<40 {
            let r = rules[(i * 3) % rules.count]
            more.append(Finding(r, structure: "m\(i)", offset: i % 5 == 0 ? nil : UInt64((i * 53) % 101), message: "m\(i)"))
        }
        let merged = FindingIndex(FindingIndex(base), adding: more)
        let whole = FindingIndex(base + more)
        #expect(merged.total == whole.total)
        #expect(merged.bySeverity == whole.bySeverity)
        #expect(merged.byCode.map(\.code) == whole.byCode.map(\.code) && merged.byCode.map(\.count) == whole.byCode.map(\.count))
        for size in [1, 7, 50, 340] {
            var start = 0
            while start < whole.total {
                let a = merged.page(start, start + size).map(\.structure)
                let b = Array(whole.sorted[start..<min(whole.total, start + size)]).map(\.structure)
                #expect(a == b, "page \(start) of \(size)")
                start += size
            }
        }
    }
}
