import Foundation
import QCOW2
import QCOW2API
import QCOW2TestSupport
import Testing

/// A directory of real and crafted images, shared by the router tests.
final class APIFixture: Sendable {
    let factory: QemuImageFactory
    let api: API

    init() throws {
        let f = try QemuImageFactory(prefix: "qcowscope-api-")
        factory = f
        try f.create("plain.qcow2", size: 64 << 20, options: ["cluster_size=512"])
        try f.bitmapAdd("plain.qcow2", "pages", granularity: 512)
        try f.bitmapAdd("plain.qcow2", "coarse", granularity: 65536, disabled: true)
        try f.write("plain.qcow2", offset: 0, length: 65536)
        try f.write("plain.qcow2", offset: 40 << 20, length: 4096)
        try f.create("snaps.qcow2", size: 4 << 20, options: ["cluster_size=512"])
        try f.snapshotCreate("snaps.qcow2", "one")
        try f.snapshotCreate("snaps.qcow2", "two")
        try f.writeFile("slash.qcow2", bytes: CraftedImages.nameWithSlash.bytes)
        try f.writeFile("notutf8.qcow2", bytes: CraftedImages.nameNotUTF8.bytes)
        try f.writeFile("d5.qcow2", bytes: CraftedImages.d5.bytes)
        try f.writeFile("notes.txt", bytes: Array("not an image\n".utf8))
        try f.writeFile("short.qcow2", bytes: [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3])
        try FileManager.default.createSymbolicLink(atPath: f.path("outside.qcow2"), withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: f.path("inside.qcow2"), withDestinationPath: "plain.qcow2")
        try FileManager.default.createDirectory(atPath: f.path("subdir.qcow2"), withIntermediateDirectories: false)
        guard mkfifo(f.path("fifo.qcow2"), 0o644) == 0 else { throw QemuToolError.unexpectedOutput(command: "mkfifo", detail: "\(errno)") }
        api = API(catalog: try ImageCatalog(path: f.directory), openAPI: Array("openapi: 3.1.0\n".utf8))
    }

    static let shared = Result { try APIFixture() }

    func get(_ target: String, method: String = "GET", headers: [(name: String, value: String)] = []) -> Response {
        api.handle(TestRequest(method: method, target: target, headers: headers))
    }

    func json(_ target: String) throws -> [String: Any] {
        let r = get(target)
        guard let o = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
            throw QemuToolError.unexpectedOutput(command: target, detail: String(decoding: r.body, as: UTF8.self))
        }
        return o
    }
}

@Suite("API router (no socket)")
struct RouterTests {
    var fx: APIFixture { get throws { try APIFixture.shared.get() } }

    @Test func healthz() throws {
        let r = try fx.get("/healthz")
        #expect(r.status == 200 && String(decoding: r.body, as: UTF8.self) == "{\"status\":\"ok\"}\n")
        #expect(r.header("Content-Type") == "application/json")
    }

    @Test("listing: only qcow2 regular files, sorted, symlink inside served, outside/FIFO/dir skipped")
    func listing() throws {
        let o = try fx.json("/v1/images")
        let names = (o["images"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(names == ["d5.qcow2", "inside.qcow2", "notutf8.qcow2", "plain.qcow2", "short.qcow2", "slash.qcow2", "snaps.qcow2"])
        let items = o["images"] as? [[String: Any]] ?? []
        let byName = Dictionary(uniqueKeysWithValues: items.map { ($0["name"] as? String ?? "", $0) })
        #expect(byName["plain.qcow2"]?["status"] as? String == "ok")
        #expect(byName["plain.qcow2"]?["bitmaps"] as? Int == 2)
        #expect(byName["d5.qcow2"]?["status"] as? String == "findings")
        #expect(byName["short.qcow2"]?["status"] as? String == "unreadable")
        #expect((byName["short.qcow2"]?["error"] as? [String: Any])?["kind"] as? String == "truncated")
        #expect(o["next"] is NSNull)
    }

    @Test("listing pagination walks every image exactly once, with Link rel=next")
    func listingPages() throws {
        var cursor: String? = nil
        var seen: [String] = []
        for _ in 0..<20 {
            let target = "/v1/images?limit=2" + (cursor.map { "&cursor=" + PercentEncoding.encode($0) } ?? "")
            let r = try fx.get(target)
            #expect(r.status == 200)
            let o = try fx.json(target)
            seen += (o["images"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            cursor = o["next"] as? String
            #expect((r.header("Link") != nil) == (cursor != nil))
            if cursor == nil { break }
        }
        #expect(seen == ["d5.qcow2", "inside.qcow2", "notutf8.qcow2", "plain.qcow2", "short.qcow2", "slash.qcow2", "snaps.qcow2"])
    }

    @Test("every image view answers 200 with its document", arguments: ["", "/header", "/extensions", "/bitmaps", "/snapshots", "/findings"])
    func views(_ suffix: String) throws {
        let r = try fx.get("/v1/images/plain.qcow2" + suffix)
        #expect(r.status == 200, "\(String(decoding: r.body, as: UTF8.self))")
        #expect(r.header("ETag")?.hasPrefix("\"") == true && r.header("Cache-Control") == "no-cache")
        #expect((try? JSONSerialization.jsonObject(with: Data(r.body))) != nil)
    }

    @Test func summaryInQemuVocabulary() throws {
        let o = try fx.json("/v1/images/plain.qcow2")
        #expect(o["virtual_size"] as? Int == 64 << 20 && o["cluster_size"] as? Int == 512 && o["compat"] as? String == "1.1")
        let bitmaps = o["bitmaps"] as? [[String: Any]] ?? []
        #expect(bitmaps.map { $0["name"] as? String } == ["pages", "coarse"])
        #expect(bitmaps.first?["flags"] as? [String] == ["auto"])
        #expect((o["finding_counts"] as? [String: Int])?["error"] == 0)
    }

    @Test("table pages walked to the end equal the whole table")
    func tableWalk() throws {
        let whole = try fx.json("/v1/images/plain.qcow2/bitmaps/pages/table?limit=4096")
        let all = whole["entries"] as? [[String: Any]] ?? []
        #expect(whole["total"] as? Int == 32 && all.count == 32)
        #expect(all.first?["type"] as? String == "serialized")
        var offset = 0
        var walked: [[String: Any]] = []
        while true {
            let o = try fx.json("/v1/images/plain.qcow2/bitmaps/pages/table?offset=\(offset)&limit=5")
            walked += o["entries"] as? [[String: Any]] ?? []
            guard let next = o["next"] as? Int else { break }
            offset = next
        }
        #expect(walked.count == all.count)
        #expect(zip(walked, all).allSatisfy { NSDictionary(dictionary: $0) == NSDictionary(dictionary: $1) })
        let r = try fx.get("/v1/images/plain.qcow2/bitmaps/pages/table?offset=30&limit=5")
        #expect(r.header("Link") == nil)
        #expect(try fx.get("/v1/images/plain.qcow2/bitmaps/pages/table?limit=5").header("Link")?.contains("offset=5") == true)
    }

    @Test("bad query parameters are 400 naming the parameter and range", arguments: [
        "/v1/images?limit=0", "/v1/images?limit=1001", "/v1/images?limit=abc", "/v1/images?limit=-1",
        "/v1/images/plain.qcow2/bitmaps/pages/table?offset=32", "/v1/images/plain.qcow2/bitmaps/pages/table?limit=4097",
        "/v1/images/plain.qcow2/bitmaps/pages/table?offset=1e3", "/v1/images/plain.qcow2/bitmaps?limit=0",
        "/v1/images/plain.qcow2/bitmaps?cursor=3", "/v1/images/plain.qcow2/snapshots?limit=99999",
        "/v1/images/plain.qcow2/bitmaps/pages/table?offset=99999999999999999999999", "/v1/images?limit=%zz",
    ])
    func badQuery(_ target: String) throws {
        let r = try fx.get(target)
        #expect(r.status == 400, "\(target): \(r.status)")
        #expect(r.header("Content-Type") == "application/problem+json")
        let o = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        #expect(o?["status"] as? Int == 400 && (o?["detail"] as? String)?.isEmpty == false && o?["instance"] as? String != nil)
    }

    @Test("traversal and impossible names never reach a file outside: 404", arguments: [
        "/v1/images/..", "/v1/images/%2e%2e", "/v1/images/..%2F..%2Fetc%2Fpasswd", "/v1/images/%2Fetc%2Fpasswd",
        "/v1/images/outside.qcow2", "/v1/images/plain.qcow2%00", "/v1/images/.", "/v1/images/subdir.qcow2",
        "/v1/images/fifo.qcow2", "/v1/images/nope.qcow2", "/v1/images/%2E%2E/header", "/v1/images//header",
    ])
    func traversal(_ target: String) throws {
        let r = try fx.get(target)
        #expect(r.status == 404, "\(target): \(r.status) \(String(decoding: r.body, as: UTF8.self))")
        #expect(!String(decoding: r.body, as: UTF8.self).contains("root:"))
    }

    @Test func symlinkInsideIsServed() throws {
        #expect(try fx.get("/v1/images/inside.qcow2/header").status == 200)
    }

    @Test("unreadable files are 422 with the parser's error")
    func unreadable() throws {
        for t in ["/v1/images/notes.txt", "/v1/images/short.qcow2/bitmaps"] {
            let r = try fx.get(t)
            #expect(r.status == 422)
            let o = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
            #expect((o?["error"] as? [String: Any])?["structure"] as? String == "header")
        }
    }

    @Test("other methods are 405 with Allow", arguments: ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    func methods(_ m: String) throws {
        let r = try fx.get("/v1/images/plain.qcow2", method: m)
        #expect(r.status == 405 && r.header("Allow") == "GET, HEAD")
    }

    @Test("unknown paths and bitmaps are 404 problems")
    func notFound() throws {
        for t in ["/", "/v2/images", "/v1/images/plain.qcow2/nope", "/v1/images/plain.qcow2/bitmaps/nope",
            "/v1/images/plain.qcow2/bitmaps/nope/table", "/v1/images/plain.qcow2/bitmaps/pages/table/x"] {
            let r = try fx.get(t)
            #expect(r.status == 404 && r.header("Content-Type") == "application/problem+json", "\(t)")
        }
    }

    @Test("any bitmap name is reachable: '/', invalid UTF-8")
    func bitmapNames() throws {
        let slash = try fx.json("/v1/images/slash.qcow2/bitmaps")
        let name = try #require((slash["bitmaps"] as? [[String: Any]])?.first?["name_hex"] as? String)
        let bytes = stride(from: 0, to: name.count, by: 2).map { i -> UInt8 in
            UInt8(name[name.index(name.startIndex, offsetBy: i)..<name.index(name.startIndex, offsetBy: i + 2)], radix: 16) ?? 0
        }
        #expect(bytes.contains(0x2f))
        #expect(try fx.get("/v1/images/slash.qcow2/bitmaps/" + PercentEncoding.encode(bytes)).status == 200)
        #expect(try fx.get("/v1/images/slash.qcow2/bitmaps/" + PercentEncoding.encode(bytes) + "/table").status == 200)
        let r = try fx.get("/v1/images/notutf8.qcow2/bitmaps/%FF%FE")
        #expect(r.status == 200)
        let o = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        #expect(o?["name"] as? String == "\\xff\\xfe" && o?["name_hex"] as? String == "fffe")
    }

    @Test("ETag: stable, 304 on If-None-Match, changes with the file and the answer")
    func etags() throws {
        // Its own directory: this test changes files, the shared fixture must not change under other tests.
        let f = try QemuImageFactory(prefix: "qcowscope-etag-")
        defer { f.removeDirectory() }
        let api = API(catalog: try ImageCatalog(path: f.directory))
        func get(_ t: String, headers: [(name: String, value: String)] = []) -> Response {
            api.handle(TestRequest(method: "GET", target: t, headers: headers))
        }
        try f.create("etag.qcow2", size: 1 << 20, options: ["cluster_size=512"])
        let a = get("/v1/images/etag.qcow2/bitmaps")
        let b = get("/v1/images/etag.qcow2/bitmaps")
        let tag = try #require(a.header("ETag"))
        #expect(b.header("ETag") == tag)
        #expect(get("/v1/images/etag.qcow2/header").header("ETag") != tag)
        let nm = get("/v1/images/etag.qcow2/bitmaps", headers: [("If-None-Match", tag)])
        #expect(nm.status == 304 && nm.body.isEmpty && nm.header("ETag") == tag)
        #expect(get("/v1/images/etag.qcow2/bitmaps", headers: [("If-None-Match", "W/" + tag)]).status == 304)
        #expect(get("/v1/images/etag.qcow2/bitmaps", headers: [("If-None-Match", "\"other\", " + tag)]).status == 304)
        try f.bitmapAdd("etag.qcow2", "new")
        let c = get("/v1/images/etag.qcow2/bitmaps", headers: [("If-None-Match", tag)])
        #expect(c.status == 200 && c.header("ETag") != tag)
        let o = try JSONSerialization.jsonObject(with: Data(c.body)) as? [String: Any]
        #expect((o?["bitmaps"] as? [[String: Any]])?.first?["name"] as? String == "new")
    }

    @Test("bitmaps list paginates with cursor, extension on every page")
    func bitmapPages() throws {
        let p1 = try fx.json("/v1/images/plain.qcow2/bitmaps?limit=1")
        #expect((p1["bitmaps"] as? [[String: Any]])?.first?["name"] as? String == "pages")
        #expect(p1["next"] as? String == "1" && p1["extension"] is [String: Any])
        let p2 = try fx.json("/v1/images/plain.qcow2/bitmaps?limit=1&cursor=1")
        #expect((p2["bitmaps"] as? [[String: Any]])?.first?["name"] as? String == "coarse")
        #expect(p2["next"] is NSNull && p2["extension"] is [String: Any])
    }

    @Test func snapshots() throws {
        let o = try fx.json("/v1/images/snaps.qcow2/snapshots")
        let s = o["snapshots"] as? [[String: Any]] ?? []
        #expect(s.map { $0["name"] as? String } == ["one", "two"])
        #expect((o["findings"] as? [Any])?.isEmpty == true)
    }

    @Test("findings carry code, severity, structure, field, value, offset")
    func findings() throws {
        let o = try fx.json("/v1/images/d5.qcow2/findings")
        let f = try #require((o["findings"] as? [[String: Any]])?.first { $0["code"] as? String == "D5" })
        #expect(f["severity"] as? String == "error" && f["field"] as? String == "granularity_bits")
        #expect(f["offset"] as? Int != nil && (f["message"] as? String)?.isEmpty == false)
    }

    @Test("/v1/rules is the registry: every rule once, in order, with its meaning and what to do; ETag and 304")
    func rulesServed() throws {
        let r = try fx.get("/v1/rules")
        #expect(r.status == 200 && r.header("Content-Type") == "application/json")
        let o = try fx.json("/v1/rules")
        let rules = try #require(o["rules"] as? [[String: Any]])
        #expect(rules.map { $0["code"] as? String } == Rule.all.map(\.code))
        for (rule, served) in zip(Rule.all, rules) {
            #expect(served["summary"] as? String == rule.summary && served["action"] as? String == rule.action)
            #expect(served["severity"] as? String == rule.severity.rawValue)
            #expect(served["structure"] as? String == rule.structure.rawValue)
        }
        let t1 = try #require(rules.first { $0["code"] as? String == "T1" })
        #expect(t1["not_checked_severity"] as? String == Rule.t1.notCheckedSeverity?.rawValue)
        let tag = try #require(r.header("ETag"))
        // The API's ETag form: 16 hex digits in quotes.
        #expect(tag.count == 18 && tag.hasPrefix("\"") && tag.hasSuffix("\"") && tag.dropFirst().dropLast().allSatisfy(\.isHexDigit), "\(tag)")
        #expect(try fx.get("/v1/rules", headers: [("If-None-Match", tag)]).status == 304)
    }

    @Test func openAPIServed() throws {
        let r = try fx.get("/v1/openapi.yaml")
        #expect(r.status == 200 && r.header("Content-Type") == "application/yaml")
    }
}
