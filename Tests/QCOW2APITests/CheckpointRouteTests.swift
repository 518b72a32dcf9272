import Foundation
import QCOW2API
import QCOW2TestSupport
import Testing

/// The checkpoint routes over the API: pages and their `Link`, cursors bound to the chain (a changed
/// backing file makes them stale), validators, `?with=`, and the errors a client can provoke.
@Suite("The checkpoint routes", .enabled(if: QemuImageFactory.toolsAvailable, "needs qemu-img and qemu-io"))
struct CheckpointRouteTests {
    /// A two-layer chain: c1 in both layers (disabled below), c2 and "a,b" in the top only.
    static func fixture() throws -> (QemuImageFactory, API) {
        let f = try QemuImageFactory(prefix: "qcowscope-checkpointroute-")
        try f.create("base.qcow2", size: 64 << 20)
        try f.bitmapAdd("base.qcow2", "c1", granularity: 65536)
        try f.qemuIO("base.qcow2", ["write 0 64k", "write 1M 64k", "write 2M 64k"])
        try f.bitmapDisable("base.qcow2", "c1")
        try f.create("top.qcow2", size: 64 << 20, backing: "base.qcow2")
        try f.bitmapAdd("top.qcow2", "c1", granularity: 65536)
        try f.bitmapAdd("top.qcow2", "c2", granularity: 65536)
        try f.bitmapAdd("top.qcow2", "a,b", granularity: 65536)
        try f.qemuIO("top.qcow2", ["write 3M 64k", "write 5M 64k", "write 9M 64k"])
        return (f, API(catalog: try ImageCatalog(path: f.directory)))
    }

    static func json(_ r: Response) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any], "\(r.status)")
    }

    static func get(_ api: API, _ target: String, _ headers: [(name: String, value: String)] = []) -> Response {
        api.handle(TestRequest(method: "GET", target: target, headers: headers))
    }

    /// The target of a `Link: <...>; rel="next"` value.
    static func next(_ r: Response) -> String? {
        guard let link = r.header("Link"), let a = link.firstIndex(of: "<"), let b = link.firstIndex(of: ">") else { return nil }
        return String(link[link.index(after: a)..<b])
    }

    @Test("the listing pages by name; every page has the chain's head fields and each item its layers")
    func listingPages() throws {
        let (f, api) = try Self.fixture()
        defer { f.removeDirectory() }
        var target: String? = "/v1/images/top.qcow2/checkpoints?limit=1"
        var names: [String] = []
        while let t = target {
            let r = Self.get(api, t)
            #expect(r.status == 200)
            let doc = try Self.json(r)
            #expect(doc["chain_depth"] as? Int == 2 && doc["total"] as? Int == 3 && doc["writer_present"] as? Bool == false)
            for item in doc["checkpoints"] as? [[String: Any]] ?? [] {
                names.append(item["name"] as? String ?? "?")
                #expect((item["layers"] as? [Any])?.count == 2)
            }
            target = Self.next(r)
        }
        #expect(names == ["c1", "c2", "a,b"])
        let etag = try #require(Self.get(api, "/v1/images/top.qcow2/checkpoints").header("ETag"))
        #expect(Self.get(api, "/v1/images/top.qcow2/checkpoints", [("If-None-Match", etag)]).status == 304)
    }

    @Test("extents paged by one through Link join to the whole union, with ?with= kept in every next link")
    func extentsPage() throws {
        let (f, api) = try Self.fixture()
        defer { f.removeDirectory() }
        let whole = try Self.json(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1/extents?with=c2"))
        let all = whole["extents"] as? [[String: Any]] ?? []
        #expect(whole["merged"] as? [String] == ["c1", "c2"])
        #expect(all.filter { $0["dirty"] as? Bool == true }.count == 6, "\(all)")
        var target: String? = "/v1/images/top.qcow2/checkpoints/c1/extents?with=c2&limit=1"
        var joined: [[String: Any]] = []
        var pages = 0
        while let t = target, pages < 100 {
            let r = Self.get(api, t)
            #expect(r.status == 200, "\(t)")
            joined += try Self.json(r)["extents"] as? [[String: Any]] ?? []
            target = Self.next(r)
            if let n = target { #expect(n.contains("with=c2"), "\(n)") }
            pages += 1
        }
        #expect(pages == all.count)
        #expect(joined.map { "\($0["start"] ?? "")+\($0["length"] ?? ""):\($0["dirty"] ?? "")" } == all.map { "\($0["start"] ?? "")+\($0["length"] ?? ""):\($0["dirty"] ?? "")" })
        // A name with a comma is taken whole when it is a bitmap name.
        let comma = try Self.json(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1?with=a%2Cb"))
        #expect(comma["merged"] as? [String] == ["c1", "a,b"])
        // In a list it is split: a name with a comma goes in a `with` of its own.
        #expect(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1?with=c2,a%2Cb").status == 400)
        let listed = try Self.json(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1?with=c2,c1&with=a%2Cb"))
        #expect(listed["merged"] as? [String] == ["c1", "c2", "a,b"])
    }

    @Test("a cursor is stale once a backing layer changes; the ETag changes with it")
    func cursorBoundToChain() throws {
        let (f, api) = try Self.fixture()
        defer { f.removeDirectory() }
        let first = Self.get(api, "/v1/images/top.qcow2/checkpoints/c1/extents?limit=1")
        let next = try #require(Self.next(first))
        let etag = try #require(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1").header("ETag"))
        // The base changes (its c1 is enabled and records a write): the top file itself is untouched.
        try f.bitmapEnable("base.qcow2", "c1")
        try f.qemuIO("base.qcow2", ["write 20M 64k"])
        try f.bitmapDisable("base.qcow2", "c1")
        let stale = Self.get(api, next)
        #expect(stale.status == 410, "\(String(decoding: stale.body, as: UTF8.self))")
        let again = Self.get(api, "/v1/images/top.qcow2/checkpoints/c1", [("If-None-Match", etag)])
        #expect(again.status == 200)
        let doc = try Self.json(again)
        let base = (doc["layers"] as? [[String: Any]] ?? []).last
        #expect(base?["dirty_bytes"] as? Int == 4 * 65536, "\(doc)")
    }

    @Test("errors: an unknown checkpoint is 404, an unknown or excessive with= is 400, a bad cursor 400")
    func errors() throws {
        let (f, api) = try Self.fixture()
        defer { f.removeDirectory() }
        let missing = Self.get(api, "/v1/images/top.qcow2/checkpoints/nope")
        #expect(missing.status == 404)
        #expect(try Self.json(missing)["type"] as? String == "urn:qcowscope:problem:checkpoint-not-found")
        #expect(Self.get(api, "/v1/images/nope.qcow2/checkpoints").status == 404)
        let with = Self.get(api, "/v1/images/top.qcow2/checkpoints/c1?with=zz")
        #expect(with.status == 400 && String(decoding: with.body, as: UTF8.self).contains("with"))
        // More than 64 names merged (all of them bitmaps of the chain) is refused.
        for i in 0..<65 { try f.bitmapAdd("top.qcow2", "m\(i)", granularity: 65536) }
        let many = (0..<65).map { "with=m\($0)" }.joined(separator: "&")
        let refused = Self.get(api, "/v1/images/top.qcow2/checkpoints/c1?\(many)")
        #expect(refused.status == 400 && String(decoding: refused.body, as: UTF8.self).contains("at most 64"))
        #expect(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1?\(many.split(separator: "&").prefix(64).joined(separator: "&"))").status == 200)
        #expect(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1/extents?cursor=12-zz").status == 400)
        #expect(Self.get(api, "/v1/images/top.qcow2/checkpoints/c1/extents?start=67108864").status == 400)
        #expect(Self.get(api, "/v1/images/top.qcow2/checkpoints?limit=0").status == 400)
    }
}
