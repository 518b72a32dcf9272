import Foundation
import QCOW2TestSupport
import Glibc

/// Why a ``DaemonHarness`` step failed; the description says what to do about it.
struct DaemonHarnessError: Error, CustomStringConvertible {
    /// What went wrong, with the daemon's stderr when useful.
    var description: String
}

/// A `qcowscoped` process started for a test, with its stderr captured in a file.
///
/// The binary is looked up next to the test bundle: `swift build --build-tests` and `swift test` build
/// every product of the package into the same directory as `qcowscopePackageTests.xctest`. Set
/// `QCOWSCOPED_BINARY` to use another binary. With `swift test --skip-build` the binary may be stale.
final class DaemonHarness {
    /// The daemon's process id, or 0 once it was reaped.
    private(set) var pid: pid_t
    /// The bound port read from the `listening on` line (0 when the daemon was not waited for).
    private(set) var port: UInt16 = 0
    /// Scratch directory holding the captured output.
    let directory: String
    /// Exit status once the process was reaped.
    private(set) var exitStatus: Int32?

    /// The path of the `qcowscoped` executable to test.
    ///
    /// - Throws: ``DaemonHarnessError`` naming the places searched and the command that builds it.
    static func binaryPath() throws -> String {
        let (found, candidates) = BuiltProducts.path(of: "qcowscoped")
        if let found { return found }
        throw DaemonHarnessError(
            description: "qcowscoped binary not found (looked at \(candidates.joined(separator: ", "))). "
                + "Build it first, e.g. `swift build --build-tests` (builds every product), "
                + "or set QCOWSCOPED_BINARY.")
    }

    /// Makes a new empty directory under the temporary directory.
    static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/qcowscoped-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let base = buffer.baseAddress, mkdtemp(base) != nil else { return nil }
            return String(cString: base)
        }
        guard let made else {
            throw DaemonHarnessError(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        return made
    }

    /// Starts the daemon and, when `waitForPort` is set, waits until it logs its first bound IPv4 address.
    ///
    /// - Parameters:
    ///   - arguments: command-line arguments; `--listen 127.0.0.1:0` is appended when `addListen` is set.
    ///   - addListen: whether to append `--listen 127.0.0.1:0`.
    ///   - waitForPort: whether to wait (up to `timeout` seconds) for the `listening on` line.
    init(_ arguments: [String], addListen: Bool = true, waitForPort: Bool = true, timeout: Double = 15) throws {
        let binary = try Self.binaryPath()
        directory = try Self.makeTemporaryDirectory()
        let fullArguments = [binary] + arguments + (addListen ? ["--listen", "127.0.0.1:0"] : [])
        pid = try Self.spawn(
            fullArguments, stdout: directory + "/stdout", stderr: directory + "/stderr")
        guard waitForPort else { return }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = Self.listeningPort(in: stderr) {
                port = found
                return
            }
            if reap(blocking: false) {
                throw DaemonHarnessError(
                    description:
                        "qcowscoped exited with status \(exitStatus ?? -1) before listening; stderr:\n\(stderr)")
            }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        _ = reap(blocking: true)
        throw DaemonHarnessError(
            description: "qcowscoped did not log a listening address within \(timeout) s; stderr:\n\(stderr)")
    }

    deinit {
        if pid != 0 {
            kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Everything the daemon wrote to stderr so far.
    var stderr: String {
        // Plain open/read: FoundationEssentials' String(contentsOfFile:) leaks under ASan in 6.3.
        let fd = open(directory + "/stderr", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether the process is still running (reaps it if it exited).
    var isRunning: Bool { pid != 0 && !reap(blocking: false) }

    /// Sends `signal` and waits up to `timeout` seconds for the process to exit.
    ///
    /// - Returns: the exit status (`exit` code), or 128 + signal number if a signal killed it.
    /// - Throws: ``DaemonHarnessError`` if it did not exit in time (it is then killed).
    @discardableResult
    func terminate(signal: Int32 = SIGTERM, timeout: Double = 15) throws -> Int32 {
        if pid != 0 { kill(pid, signal) }
        return try waitForExit(timeout: timeout)
    }

    /// Waits up to `timeout` seconds for the process to exit on its own.
    func waitForExit(timeout: Double = 15) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if pid == 0 || reap(blocking: false) { return exitStatus ?? -1 }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        _ = reap(blocking: true)
        throw DaemonHarnessError(description: "qcowscoped did not exit within \(timeout) s; stderr:\n\(stderr)")
    }

    /// Runs the daemon to completion (for start-up failures) and returns its exit status and stderr.
    static func runToExit(_ arguments: [String], timeout: Double = 15) throws -> (status: Int32, stderr: String) {
        let harness = try DaemonHarness(arguments, addListen: false, waitForPort: false)
        let status = try harness.waitForExit(timeout: timeout)
        return (status, harness.stderr)
    }

    /// Collects the exit status if the process ended; returns whether it did.
    private func reap(blocking: Bool) -> Bool {
        guard pid != 0 else { return true }
        var status: Int32 = 0
        let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
        guard result == pid else { return false }
        let signal = status & 0x7F
        exitStatus = signal == 0 ? (status >> 8) & 0xFF : 128 + signal
        pid = 0
        return true
    }

    /// The port of the first `listening on http://127.0.0.1:PORT` line in `log`.
    private static func listeningPort(in log: String) -> UInt16? {
        let marker = "listening on http://127.0.0.1:"
        guard let range = log.range(of: marker) else { return nil }
        let digits = log[range.upperBound...].prefix { $0.isNumber }
        guard log[range.upperBound...].dropFirst(digits.count).first?.isNewline == true else { return nil }
        return UInt16(digits)
    }

    /// `posix_spawn` with stdin from /dev/null and stdout/stderr into files.
    private static func spawn(_ arguments: [String], stdout: String, stderr: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
        guard result == 0 else {
            throw DaemonHarnessError(
                description: "posix_spawn \(arguments[0]) failed: \(String(cString: strerror(result)))")
        }
        return pid
    }
}
