// Build tool: writes Swift files holding the text of files as raw string literals.
// Usage: openapi-embed INPUT OUTPUT              (api/openapi.yaml → enum OpenAPIDocument)
//        openapi-embed --ui OUTPUT [FILE]...     (the web view's files → enum UIAssets)
import Glibc

func readAll(_ path: String) -> [UInt8]? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

func fail(_ message: String) -> Never {
    let bytes = Array((message + "\n").utf8)
    _ = write(2, bytes, bytes.count)
    exit(1)
}

/// `text` as a multi-line raw string literal with enough `#` that nothing inside ends it.
func rawLiteral(_ text: String, indent: String) -> String {
    var hashes = "#"
    while text.contains("\"\"\"" + hashes) || text.contains("\"" + hashes) { hashes += "#" }
    let body = text.split(separator: "\n", omittingEmptySubsequences: false)
        .map { $0.isEmpty ? "" : indent + $0 }.joined(separator: "\n")
    return "\(hashes)\"\"\"\n\(body)\n\(indent)\"\"\"\(hashes)"
}

func writeFile(_ path: String, _ source: String) {
    guard let out = fopen(path, "wb") else { fail("openapi-embed: cannot write \(path)") }
    let data = Array(source.utf8)
    fwrite(data, 1, data.count, out)
    fclose(out)
}

/// The `Content-Type` of a web view file, by its extension.
func contentType(_ name: String) -> String? {
    guard let dot = name.lastIndex(of: ".") else { return nil }
    switch name[name.index(after: dot)...] {
    case "html": return "text/html; charset=utf-8"
    case "css": return "text/css; charset=utf-8"
    case "js", "mjs": return "text/javascript; charset=utf-8"
    case "svg": return "image/svg+xml"
    case "json", "webmanifest": return "application/json"
    case "txt": return "text/plain; charset=utf-8"
    default: return nil
    }
}

let args = CommandLine.arguments
if args.count >= 3, args[1] == "--ui" {
    var entries: [String] = []
    for path in args.dropFirst(3) {
        let name = String(path.split(separator: "/").last ?? "")
        guard !name.isEmpty, name.utf8.allSatisfy({ c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x2d || c == 0x5f
        }) else { fail("openapi-embed: \(path): file names of the web view are [A-Za-z0-9._-]") }
        guard let type = contentType(name) else { fail("openapi-embed: \(path): unknown file type (html, css, js, svg, json, txt)") }
        guard let bytes = readAll(path) else { fail("openapi-embed: cannot read \(path)") }
        guard let text = String(validating: bytes, as: UTF8.self) else { fail("openapi-embed: \(path) is not UTF-8 text") }
        entries.append("""
                    (
                        name: "\(name)", contentType: "\(type)",
                        text: \(rawLiteral(text, indent: "            "))
                    ),
            """)
    }
    writeFile(args[2], """
        // Generated at build time from Sources/qcowscoped/UI by the openapi-embed tool. Do not edit.

        /// The files of the built-in web view (served under `/ui/`), as in `Sources/qcowscoped/UI` when
        /// the binary was built.
        enum UIAssets {
            /// File name, `Content-Type` and text of every file.
            static let files: [(name: String, contentType: String, text: String)] = [
        \(entries.joined(separator: "\n"))
            ]
        }

        """)
    exit(0)
}

guard args.count == 3, let bytes = readAll(args[1]) else {
    fail("usage: openapi-embed INPUT OUTPUT | openapi-embed --ui OUTPUT FILE... (inputs must be readable)")
}
let text = String(decoding: bytes, as: UTF8.self)
var hashes = "#"
while text.contains("\"\"\"" + hashes) || text.contains("\"" + hashes) { hashes += "#" }
let source = """
    // Generated at build time from api/openapi.yaml by the openapi-embed tool. Do not edit.

    /// The OpenAPI document of the daemon, as in `api/openapi.yaml` when the binary was built.
    enum OpenAPIDocument {
        /// The YAML text.
        static let text: String = \(hashes)\"\"\"
    \(text)
    \"\"\"\(hashes)
    }

    """
writeFile(args[2], source)
