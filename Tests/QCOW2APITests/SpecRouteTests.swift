import Foundation
import QCOW2API
import Testing

/// The paths of `api/openapi.yaml`, read with a small line-based parse (no YAML dependency).
///
/// The spec is hand-written in block style: `paths:` at column 0, each path key at two spaces,
/// its operations (`get:`, `head:`) and `parameters:` at four. Flow-style or anchored paths
/// would not be seen here, and the test then fails, which is the point: keep the layout simple.
struct OpenAPIPaths {
    /// Path template → the keys directly under it (`get`, `head`, `parameters`, ...), in file order.
    var paths: [(path: String, keys: [String])] = []

    static var specURL: URL {
        // Tests/QCOW2APITests/SpecRouteTests.swift → repository root → api/openapi.yaml
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("api/openapi.yaml")
    }

    init(yaml: String) {
        var inPaths = false
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw
            let trimmed = line.drop { $0 == " " }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let indent = line.count - trimmed.count
            if indent == 0 {
                inPaths = line.hasPrefix("paths:")
                continue
            }
            guard inPaths, let colon = trimmed.firstIndex(of: ":") else { continue }
            var key = String(trimmed[..<colon])
            if key.count >= 2, let q = key.first, q == "\"" || q == "'", key.last == q {
                key = String(key.dropFirst().dropLast())
            }
            if indent == 2 {
                paths.append((key, []))
            } else if indent == 4, !paths.isEmpty {
                paths[paths.count - 1].keys.append(key)
            }
        }
    }

    static func load() throws -> OpenAPIPaths {
        OpenAPIPaths(yaml: try String(contentsOf: specURL, encoding: .utf8))
    }
}

@Suite("api/openapi.yaml matches the router")
struct SpecRouteTests {
    static let httpMethods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace", "query"]

    @Test("the spec exists, is OpenAPI 3.1, and its paths are exactly the documented routes of RouteTable.all")
    func sameRoutes() throws {
        let text = try String(contentsOf: OpenAPIPaths.specURL, encoding: .utf8)
        #expect(text.hasPrefix("openapi: 3.1."), "api/openapi.yaml must start with `openapi: 3.1.x`")
        let spec = OpenAPIPaths(yaml: text)
        let documented = spec.paths.map(\.path)
        #expect(Set(documented).count == documented.count, "a path is listed twice in api/openapi.yaml")
        let inCode = Set(RouteTable.all.filter(\.documented).map(\.pattern))
        let inSpec = Set(documented)
        #expect(inCode.subtracting(inSpec).isEmpty, "routes in RouteTable.all but not in api/openapi.yaml: \(inCode.subtracting(inSpec).sorted())")
        #expect(inSpec.subtracting(inCode).isEmpty, "paths in api/openapi.yaml but not in RouteTable.all: \(inSpec.subtracting(inCode).sorted())")
    }

    @Test("every path documents exactly GET and HEAD")
    func getAndHead() throws {
        let spec = try OpenAPIPaths.load()
        #expect(!spec.paths.isEmpty, "no paths found under `paths:` in api/openapi.yaml")
        for (path, keys) in spec.paths {
            let methods = Set(keys.filter { SpecRouteTests.httpMethods.contains($0) })
            #expect(methods == ["get", "head"], "\(path): documents \(methods.sorted()), expected [get, head]")
        }
    }

    @Test("the line parser reads block-style paths")
    func parser() {
        let yaml = """
            openapi: 3.1.0
            paths:
              /a:
                get:
                  operationId: a
                head: {operationId: headA}
              "/b/{x}":
                parameters: []
                get: {}
            components:
              schemas:
                X: {}
            """
        let p = OpenAPIPaths(yaml: yaml)
        #expect(p.paths.map(\.path) == ["/a", "/b/{x}"])
        #expect(p.paths.map(\.keys) == [["get", "head"], ["parameters", "get"]])
    }
}
