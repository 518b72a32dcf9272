import Foundation
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Testing

/// `/l1` and `/l1/{index}/l2`: the cluster tables a page at a time, on images qemu-img made.
@Suite("L1 and L2 routes", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img"))
struct ClusterRouteTests {
    final class Fixture {
        let factory: QemuImageFactory
        let api: API

        init() throws {
            let f = try QemuImageFactory(prefix: "qcowscope-l1-")
            factory = f
            try f.create("d.qcow2", size: 8 << 20, options: ["cluster_size=512"])
            try f.write("d.qcow2", offset: 0, length: 1024)
            try f.writeZeroes("d.qcow2", offset: 4096, length: 512)
            try f.write("d.qcow2", offset: 40 << 10, length: 512)
            api = API(catalog: try ImageCatalog(path: f.directory))
        }

        func get(_ target: String) -> Response { api.handle(TestRequest(method: "GET", target: target)) }

        func json(_ target: String) throws -> [String: Any] {
            let r = get(target)
            #expect(r.status == 200, "\(target): \(r.status) \(String(decoding: r.body, as: UTF8.self).prefix(300))")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        }
    }

    @Test("the L1 page: l1_size entries, the allocated L2 tables, paged with Link")
    func l1() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        let info = try fx.json("/v1/images/d.qcow2/header")
        let page = try fx.json("/v1/images/d.qcow2/l1?limit=3")
        #expect(page["total"] as? Int == info["l1_size"] as? Int && page["l2_entries"] as? Int == 64)
        #expect(page["bytes_per_l2"] as? Int == 32768 && page["next"] as? Int == 3)
        let entries = try #require(page["entries"] as? [[String: Any]])
        #expect(entries.map { $0["index"] as? Int } == [0, 1, 2])
        // Writes at 0 and 40 KiB: the L2 tables of 0-32 KiB and 32-64 KiB exist, the next does not.
        #expect((entries[0]["l2_offset"] as? Int ?? 0) > 0 && entries[0]["copied"] as? Bool == true)
        #expect((entries[1]["l2_offset"] as? Int ?? 0) > 0 && entries[1]["guest_start"] as? Int == 32768)
        #expect(entries[2]["l2_offset"] as? Int == 0 && entries[2]["guest_start"] as? Int == 65536)
        #expect(fx.get("/v1/images/d.qcow2/l1?limit=2").header("Link") == "</v1/images/d.qcow2/l1?offset=2&limit=2>; rel=\"next\"")
        #expect(fx.get("/v1/images/d.qcow2/l1?offset=256").status == 400)
    }

    @Test("the L2 page: each cluster's type as the parser decodes it; errors for bad indexes")
    func l2() throws {
        let fx = try Fixture()
        defer { fx.factory.removeDirectory() }
        let page = try fx.json("/v1/images/d.qcow2/l1/0/l2?limit=10")
        #expect(page["allocated"] as? Bool == true && page["total"] as? Int == 64 && page["next"] as? Int == 10)
        let types = try #require(page["entries"] as? [[String: Any]]).map { $0["type"] as? String ?? "?" }
        #expect(types == ["normal", "normal", "unallocated", "unallocated", "unallocated", "unallocated", "unallocated", "unallocated", "zero-plain", "unallocated"])
        let image = try QCOW2Image(source: FileImageSource(path: fx.factory.path("d.qcow2")))
        let l1 = try #require(try image.l1Entries(limit: 1).first)
        let first = try #require(try image.l2Entries(l1, limit: 1).first)
        let served = try #require((page["entries"] as? [[String: Any]])?.first)
        #expect(served["host_offset"] as? Int == Int(first.hostOffset) && served["raw"] as? String == Hex.string(first.raw))
        // Table 1 maps 32-64 KiB: the write at 40 KiB is its entry 16.
        let second = try #require(try fx.json("/v1/images/d.qcow2/l1/1/l2?offset=16&limit=1")["entries"] as? [[String: Any]])
        #expect(second.first?["type"] as? String == "normal" && second.first?["guest_start"] as? Int == 40 << 10)
        // An unallocated L2 table lists unallocated entries.
        let empty = try fx.json("/v1/images/d.qcow2/l1/200/l2?limit=3")
        #expect(empty["allocated"] as? Bool == false)
        #expect((empty["entries"] as? [[String: Any]])?.allSatisfy { $0["type"] as? String == "unallocated" } == true)
        #expect(fx.get("/v1/images/d.qcow2/l1/256/l2").status == 404)
        #expect(fx.get("/v1/images/d.qcow2/l1/x1/l2").status == 400)
        #expect(fx.get("/v1/images/d.qcow2/l1/-1/l2").status == 400)
        #expect(fx.get("/v1/images/d.qcow2/l1/0/l2?offset=64").status == 400)
        #expect(fx.get("/v1/images/d.qcow2/l1/0/l2?limit=2").header("Link") == "</v1/images/d.qcow2/l1/0/l2?offset=2&limit=2>; rel=\"next\"")
    }
}
