import Foundation

/// The one way tests find the executables the build made: next to the test bundle.
///
/// SwiftPM puts every product of one build in one directory (`swift build --show-bin-path`), the test
/// bundle among them, as swift-argument-parser's test helpers assume. An environment variable
/// `<NAME>_BINARY` (e.g. `QCOWSCOPED_BINARY`) points at another build instead.
package enum BuiltProducts {
    /// The directories searched, in order: the running executable's, the first argument's, the bundle's.
    static var directories: [URL] {
        var dirs: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        if let first = CommandLine.arguments.first {
            dirs.append(URL(fileURLWithPath: first).resolvingSymlinksInPath().deletingLastPathComponent())
        }
        let bundle = Bundle.main.bundleURL.resolvingSymlinksInPath()
        dirs += [bundle, bundle.deletingLastPathComponent()]
        return dirs
    }

    /// The path of executable `name`, or nil with the places searched.
    package static func path(of name: String) -> (path: String?, searched: [String]) {
        let variable = name.uppercased().replacingOccurrences(of: "-", with: "_") + "_BINARY"
        if let override = ProcessInfo.processInfo.environment[variable] {
            return (access(override, X_OK) == 0 ? override : nil, ["\(variable)=\(override)"])
        }
        let candidates = directories.map { $0.appendingPathComponent(name).path }
        var isDirectory: ObjCBool = false
        let found = candidates.first {
            FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && !isDirectory.boolValue
                && access($0, X_OK) == 0
        }
        return (found, candidates)
    }
}
