import Foundation
import ProcessTestSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error from running qemu-img, qemu-io or another helper tool.
package enum QemuToolError: Error, CustomStringConvertible {
    /// The executable was not found on `PATH` or in `/usr/bin`.
    case toolNotFound(String)
    /// `mkdtemp` failed with the given `errno`.
    case temporaryDirectoryFailed(Int32)
    /// The process could not be launched.
    case launchFailed(command: String, reason: String)
    /// The process exited with a non-zero status or was killed by a signal.
    case failed(command: String, status: Int32, signaled: Bool, stdout: String, stderr: String)
    /// The process ran longer than the timeout and was killed.
    case timedOut(command: String, seconds: Double)
    /// The tool's output was not what the caller expected.
    case unexpectedOutput(command: String, detail: String)

    /// A one-line description including the command and the tool's stderr.
    package var description: String {
        switch self {
        case .toolNotFound(let name):
            return "tool not found: \(name)"
        case .temporaryDirectoryFailed(let code):
            return "mkdtemp failed: errno \(code)"
        case .launchFailed(let command, let reason):
            return "could not launch \(command): \(reason)"
        case .failed(let command, let status, let signaled, let stdout, let stderr):
            let how = signaled ? "killed by signal \(status)" : "exit status \(status)"
            let detail = stderr.isEmpty ? stdout : stderr
            return "\(command): \(how): \(detail.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .timedOut(let command, let seconds):
            return "\(command): timed out after \(seconds) s"
        case .unexpectedOutput(let command, let detail):
            return "\(command): \(detail)"
        }
    }
}

/// The outcome of one tool run.
package struct ToolResult: Sendable {
    /// Exit status, or the signal number when ``signaled`` is true.
    package var status: Int32
    /// Whether the process was terminated by a signal.
    package var signaled: Bool
    /// Everything the process wrote to standard output, decoded as UTF-8 (lossy).
    package var stdout: String
    /// Everything the process wrote to standard error, decoded as UTF-8 (lossy).
    package var stderr: String
}

/// Makes real QCOW2 images at test time with qemu-img and qemu-io, in a private temporary directory.
///
/// Each factory owns a fresh directory made with `mkdtemp(3)`; tools run with that directory as
/// their working directory and `LC_ALL=C`, so relative names such as a backing file or an
/// external data file resolve inside it. Every run has a timeout, and any non-zero exit throws
/// ``QemuToolError/failed(command:status:signaled:stdout:stderr:)`` carrying stderr.
///
/// ```swift
/// let factory = try QemuImageFactory()
/// defer { factory.removeDirectory() }
/// let path = try factory.create("a.qcow2", size: 1 << 20, options: ["cluster_size=512"])
/// try factory.bitmapAdd(path, "b0")
/// try factory.write(path, pattern: 0xab, offset: 0, length: 4096)
/// let info = try factory.infoJSON(path)
/// ```
package final class QemuImageFactory: Sendable {
    /// Absolute path of the temporary directory holding the images.
    package let directory: String
    /// Default timeout in seconds for each tool run.
    package let timeout: Double

    /// Creates a fresh temporary directory (`$TMPDIR` or `/tmp`, `prefix` + six random characters).
    ///
    /// - Parameters:
    ///   - prefix: Directory name prefix.
    ///   - timeout: Default per-run timeout in seconds.
    /// - Throws: ``QemuToolError/temporaryDirectoryFailed(_:)``.
    package init(prefix: String = "qcowscope-", timeout: Double = 30) throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let address = buffer.baseAddress else { return false }
            return mkdtemp(address) != nil
        }
        guard made else { throw QemuToolError.temporaryDirectoryFailed(errno) }
        self.directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.timeout = timeout
    }

    /// Deletes the temporary directory and everything in it.
    package func removeDirectory() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The absolute path of `name` inside ``directory`` (absolute names are returned unchanged).
    package func path(_ name: String) -> String {
        name.hasPrefix("/") ? name : "\(directory)/\(name)"
    }

    // MARK: Running tools

    /// Runs a tool found on `PATH` with ``directory`` as the working directory.
    ///
    /// - Parameters:
    ///   - tool: Executable name (e.g. `"qemu-img"`) or absolute path.
    ///   - arguments: Arguments, passed without a shell.
    ///   - allowFailure: Return instead of throwing when the status is non-zero or a signal killed it.
    ///   - timeout: Override of the default timeout in seconds.
    /// - Returns: Status and captured output.
    /// - Throws: ``QemuToolError`` on launch failure, timeout, or (unless allowed) a failed run.
    @discardableResult
    package func run(
        _ tool: String, _ arguments: [String], allowFailure: Bool = false, timeout: Double? = nil
    ) throws -> ToolResult {
        let executable = try Self.locate(tool)
        let command = ([tool] + arguments).joined(separator: " ")
        var environment = ProcessInfo.processInfo.environment
        environment["LC_ALL"] = "C"
        let result: ToolResult
        do {
            let child = try ChildProcess.run(
                executable, arguments, environment: environment, directory: directory, timeout: timeout ?? self.timeout)
            result = ToolResult(status: child.status, signaled: child.signaled, stdout: child.stdout, stderr: child.stderr)
        } catch let error as ChildProcess.TimedOut {
            throw QemuToolError.timedOut(command: command, seconds: error.seconds)
        } catch {
            throw QemuToolError.launchFailed(command: command, reason: "\(error)")
        }
        if !allowFailure && (result.status != 0 || result.signaled) {
            throw QemuToolError.failed(
                command: command, status: result.status, signaled: result.signaled,
                stdout: result.stdout, stderr: result.stderr)
        }
        return result
    }

    /// Runs `qemu-img` with the given arguments and returns its result.
    @discardableResult
    package func qemuImg(_ arguments: [String], allowFailure: Bool = false) throws -> ToolResult {
        try run("qemu-img", arguments, allowFailure: allowFailure)
    }

    /// Runs `qemu-io -f qcow2` with one `-c` per command on `image` and returns its result.
    ///
    /// - Parameters:
    ///   - image: Image name or path.
    ///   - commands: qemu-io commands such as `"write -P 0xab 0 4k"`.
    ///   - extraArguments: Arguments placed before the commands (e.g. `--object ...`, `--image-opts`);
    ///     when it contains `--image-opts`, `image` is passed verbatim and `-f qcow2` is omitted.
    ///   - allowFailure: Return instead of throwing on a non-zero status or signal.
    @discardableResult
    package func qemuIO(
        _ image: String, _ commands: [String], extraArguments: [String] = [], allowFailure: Bool = false
    ) throws -> ToolResult {
        let imageOpts = extraArguments.contains("--image-opts")
        var arguments = imageOpts ? extraArguments : ["-f", "qcow2"] + extraArguments
        for command in commands { arguments += ["-c", command] }
        arguments.append(imageOpts ? image : path(image))
        return try run("qemu-io", arguments, allowFailure: allowFailure)
    }

    // MARK: Images

    /// Creates a qcow2 image with `qemu-img create -f qcow2`.
    ///
    /// - Parameters:
    ///   - name: File name inside ``directory`` (or an absolute path).
    ///   - size: Virtual size in bytes.
    ///   - options: `-o` options such as `"cluster_size=512"`, joined with commas.
    ///   - backing: Backing file name; `-b NAME -F backingFormat` is added.
    ///   - backingFormat: Format of the backing file.
    ///   - extraArguments: Arguments inserted before the file name (e.g. `--object ...`).
    /// - Returns: The absolute path of the new image.
    /// - Throws: ``QemuToolError``.
    @discardableResult
    package func create(
        _ name: String, size: UInt64, options: [String] = [], backing: String? = nil,
        backingFormat: String = "qcow2", extraArguments: [String] = []
    ) throws -> String {
        var arguments = ["create", "-q", "-f", "qcow2"]
        if !options.isEmpty { arguments += ["-o", options.joined(separator: ",")] }
        if let backing { arguments += ["-b", backing, "-F", backingFormat] }
        arguments += extraArguments
        arguments += [path(name), String(size)]
        try qemuImg(arguments)
        return path(name)
    }

    /// Adds a persistent bitmap: `qemu-img bitmap --add [-g G] [--disable] IMAGE NAME`.
    package func bitmapAdd(_ image: String, _ name: String, granularity: UInt64? = nil, disabled: Bool = false) throws {
        var arguments = ["bitmap", "--add"]
        if let granularity { arguments += ["-g", String(granularity)] }
        if disabled { arguments.append("--disable") }
        try qemuImg(arguments + ["-f", "qcow2", path(image), name])
    }

    /// Removes a bitmap: `qemu-img bitmap --remove`.
    package func bitmapRemove(_ image: String, _ name: String) throws {
        try qemuImg(["bitmap", "--remove", "-f", "qcow2", path(image), name])
    }

    /// Enables a bitmap (sets `auto`): `qemu-img bitmap --enable`.
    package func bitmapEnable(_ image: String, _ name: String) throws {
        try qemuImg(["bitmap", "--enable", "-f", "qcow2", path(image), name])
    }

    /// Disables a bitmap (clears `auto`): `qemu-img bitmap --disable`.
    package func bitmapDisable(_ image: String, _ name: String) throws {
        try qemuImg(["bitmap", "--disable", "-f", "qcow2", path(image), name])
    }

    /// Clears every bit of a bitmap: `qemu-img bitmap --clear`.
    package func bitmapClear(_ image: String, _ name: String) throws {
        try qemuImg(["bitmap", "--clear", "-f", "qcow2", path(image), name])
    }

    /// Writes guest data with `qemu-io -f qcow2 -c 'write [-P PATTERN] OFF LEN'` (marks enabled bitmaps).
    ///
    /// - Parameters:
    ///   - image: Image name or path.
    ///   - pattern: Fill byte; `nil` uses qemu-io's default pattern (0xcd), as iotest 303 does.
    ///   - offset: Guest offset in bytes.
    ///   - length: Length in bytes.
    ///   - compressed: Use `write -c` (offset and length must be cluster aligned).
    package func write(
        _ image: String, pattern: UInt8? = 0xab, offset: UInt64, length: UInt64, compressed: Bool = false
    ) throws {
        var command = "write"
        if compressed { command += " -c" }
        if let pattern { command += " -P 0x" + String(pattern, radix: 16) }
        command += " \(offset) \(length)"
        try qemuIO(image, [command])
    }

    /// Writes zeroes with `qemu-io -c 'write -z OFF LEN'`.
    package func writeZeroes(_ image: String, offset: UInt64, length: UInt64) throws {
        try qemuIO(image, ["write -z \(offset) \(length)"])
    }

    /// Creates an internal snapshot: `qemu-img snapshot -c NAME IMAGE`.
    package func snapshotCreate(_ image: String, _ name: String) throws {
        try qemuImg(["snapshot", "-c", name, path(image)])
    }

    /// Simulates a crash: runs `qemu-io` with the commands, then `sigraise 9`, and requires that it died.
    ///
    /// - Parameters:
    ///   - image: Image name or path.
    ///   - commands: Commands run before the crash, e.g. a write.
    /// - Throws: ``QemuToolError/unexpectedOutput(command:detail:)`` if qemu-io exited normally.
    package func crash(_ image: String, after commands: [String]) throws {
        let result = try qemuIO(image, commands + ["sigraise 9"], allowFailure: true)
        guard result.signaled && result.status == SIGKILL else {
            throw QemuToolError.unexpectedOutput(
                command: "qemu-io \(image)",
                detail: "expected death by SIGKILL, got status \(result.status) signaled \(result.signaled): \(result.stderr)")
        }
    }

    /// Crashes qemu-io after a write so that every loaded bitmap stays flagged `in-use`, and verifies it.
    ///
    /// - Parameters:
    ///   - image: Image name or path; it must already have at least one bitmap.
    ///   - pattern: Fill byte of the write.
    ///   - offset: Guest offset of the write.
    ///   - length: Length of the write.
    /// - Throws: ``QemuToolError/unexpectedOutput(command:detail:)`` if `qemu-img info` shows no in-use bitmap.
    package func crashWithInUseBitmap(_ image: String, pattern: UInt8 = 0xee, offset: UInt64 = 0, length: UInt64 = 4096)
        throws
    {
        try crash(image, after: ["write -P 0x\(String(pattern, radix: 16)) \(offset) \(length)"])
        let info = try infoJSON(image)
        let specific = (info["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let bitmaps = specific?["bitmaps"] as? [[String: Any]] ?? []
        let inUse = bitmaps.contains { ($0["flags"] as? [String])?.contains("in-use") == true }
        guard inUse else {
            throw QemuToolError.unexpectedOutput(
                command: "qemu-img info \(image)", detail: "no bitmap is flagged in-use after the crash")
        }
    }

    // MARK: Inspection

    /// Parses `qemu-img info --output=json IMAGE`.
    ///
    /// - Parameters:
    ///   - image: Image name or path.
    ///   - extraArguments: Arguments before the file name (e.g. `["--backing-chain"]` is not supported here,
    ///     as it returns an array; use ``qemuImg(_:allowFailure:)`` for that).
    /// - Returns: The top-level JSON object.
    /// - Throws: ``QemuToolError``.
    package func infoJSON(_ image: String, extraArguments: [String] = []) throws -> [String: Any] {
        let result = try qemuImg(["info", "--output=json"] + extraArguments + [path(image)])
        return try Self.parseObject(result.stdout, command: "qemu-img info \(image)")
    }

    /// Runs `qemu-img check --output=json IMAGE`, which exits 0 (clean), 2 (corruptions) or 3 (leaks).
    ///
    /// - Returns: The exit status and the parsed JSON object.
    /// - Throws: ``QemuToolError`` when the status is not 0, 2 or 3 or the output is not JSON.
    package func checkJSON(_ image: String) throws -> (status: Int32, report: [String: Any]) {
        let command = "qemu-img check \(image)"
        let result = try qemuImg(["check", "--output=json", path(image)], allowFailure: true)
        guard !result.signaled, [0, 2, 3].contains(result.status) else {
            throw QemuToolError.failed(
                command: command, status: result.status, signaled: result.signaled,
                stdout: result.stdout, stderr: result.stderr)
        }
        return (result.status, try Self.parseObject(result.stdout, command: command))
    }

    /// The lowercase hex SHA-256 of a file, computed by `sha256sum`.
    package func sha256(_ file: String) throws -> String {
        let result = try run("sha256sum", [path(file)])
        guard let digest = result.stdout.split(separator: " ").first, digest.count == 64 else {
            throw QemuToolError.unexpectedOutput(command: "sha256sum \(file)", detail: result.stdout)
        }
        return String(digest)
    }

    /// Writes `bytes` to `name` inside ``directory`` (e.g. a ``CraftedImage``) and returns the path.
    @discardableResult
    package func writeFile(_ name: String, bytes: [UInt8]) throws -> String {
        let target = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: target))
        return target
    }

    // MARK: Helpers

    /// Parses a JSON object, throwing ``QemuToolError/unexpectedOutput(command:detail:)`` otherwise.
    static func parseObject(_ text: String, command: String) throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw QemuToolError.unexpectedOutput(command: command, detail: "not a JSON object: \(text.prefix(200))")
        }
        return object
    }

    /// Finds an executable on `PATH` (then `/usr/bin`, `/usr/local/bin`).
    package static func locate(_ tool: String) throws -> String {
        if tool.hasPrefix("/") { return tool }
        guard let found = ChildProcess.locate(tool) else { throw QemuToolError.toolNotFound(tool) }
        return found
    }

    /// Whether qemu-img and qemu-io are installed (use it to skip tests that need them).
    package static var toolsAvailable: Bool {
        (try? locate("qemu-img")) != nil && (try? locate("qemu-io")) != nil
    }
}
