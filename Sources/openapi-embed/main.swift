// Build tool: writes a Swift file holding the bytes of a text file as a raw string literal.
// Usage: openapi-embed INPUT OUTPUT
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

let args = CommandLine.arguments
guard args.count == 3, let bytes = readAll(args[1]) else {
    fail("usage: openapi-embed INPUT OUTPUT (input must be readable)")
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
guard let out = fopen(args[2], "wb") else {
    fail("openapi-embed: cannot write \(args[2])")
}
let data = Array(source.utf8)
fwrite(data, 1, data.count, out)
fclose(out)
