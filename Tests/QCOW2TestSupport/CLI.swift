import Foundation

/// Runs the built `qcowscope` executable.
package enum CLI {
    /// The `qcowscope` binary next to the test bundle (``BuiltProducts``).
    package static let binary: String? = BuiltProducts.path(of: "qcowscope").path

    /// Runs `qcowscope ARGS` in the factory's directory (stdout is a pipe, so `--format` defaults to json).
    package static func run(_ factory: QemuImageFactory, _ arguments: [String]) throws -> ToolResult {
        guard let bin = binary else {
            throw QemuToolError.toolNotFound(
                "qcowscope next to the test bundle (\(CommandLine.arguments[0])); run `swift build --build-tests` first")
        }
        return try factory.run(bin, arguments, allowFailure: true, timeout: 60)
    }

    /// JSON text without the whitespace between tokens (strings kept as they are).
    package static func minify(_ s: String) -> String {
        var out: [UInt8] = []
        var inString = false
        var escaped = false
        for b in s.utf8 {
            if inString {
                out.append(b)
                if escaped {
                    escaped = false
                } else if b == UInt8(ascii: "\\") {
                    escaped = true
                } else if b == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if b == 0x20 || b == 0x0a || b == 0x0d || b == 0x09 {
                continue
            } else {
                if b == UInt8(ascii: "\"") { inString = true }
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
