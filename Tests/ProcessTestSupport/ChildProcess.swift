import CSpawnShim
import Foundation

/// A child process started with `posix_spawn`: the one way the tests start tools.
///
/// Foundation's `Process.run()` crashed the test binary in CI (memmove inside Foundation, twice, while
/// several tests launched tools at once), so no test uses `Process`. This type spawns with an empty
/// signal mask (test threads may block SIGTERM and children would inherit that), close-on-exec pipes,
/// and optional working directory and environment; it reaps its child exactly once.
package final class ChildProcess: @unchecked Sendable {
    /// Where a standard stream of the child goes.
    package enum Stream: Sendable {
        /// `/dev/null`.
        case null
        /// A file, created or truncated, written in append mode (stdout and stderr may share one).
        case file(String)
        /// A pipe to this process (``write(_:)`` for input, ``run(_:_:environment:directory:timeout:)`` for output).
        case pipe
    }

    /// What a finished child left.
    package struct Result: Sendable {
        /// Exit status, or the signal number when ``signaled``.
        package let status: Int32
        /// Whether a signal ended the child.
        package let signaled: Bool
        /// Standard output (UTF-8, lossy).
        package let stdout: String
        /// Standard error (UTF-8, lossy).
        package let stderr: String
    }

    /// Why a child could not be started.
    package struct Failure: Error, CustomStringConvertible {
        package let description: String
    }

    /// A child that ran past its timeout (it was killed).
    package struct TimedOut: Error, CustomStringConvertible {
        /// The timeout in seconds.
        package let seconds: Double
        package var description: String { "timed out after \(seconds) s" }
    }

    /// The child's process id.
    package let pid: Int32
    private let lock = NSLock()
    private var reaped: (status: Int32, signaled: Bool)?
    private var inputFD: Int32
    private var outputFDs: [Int32]

    /// Spawns `executable` (an absolute path) with `arguments` (not including argv[0]).
    ///
    /// - Parameters:
    ///   - environment: The child's whole environment; nil passes this process's.
    ///   - directory: The child's working directory; nil keeps this process's.
    ///   - stdin, stdout, stderr: Where each stream goes.
    ///   - descriptors: Extra descriptors to pass, as child number -> open descriptor here.
    package init(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        directory: String? = nil, stdin: Stream = .null, stdout: Stream = .null, stderr: Stream = .null,
        descriptors: [Int32: Int32] = [:]
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var parentEnds: [Int32] = []
        var childEnds: [Int32] = []
        defer { for fd in childEnds { close(fd) } }
        var input: Int32 = -1
        var outputs: [Int32] = []
        for (number, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, number, "/dev/null", number == 0 ? O_RDONLY : O_WRONLY, 0)
            case .file(let path):
                posix_spawn_file_actions_addopen(
                    &actions, number, path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
            case .pipe:
                var fds: [Int32] = [-1, -1]
                guard cspawn_pipe_cloexec(&fds) == 0 else {
                    for fd in parentEnds { close(fd) }
                    throw Failure(description: "pipe2: \(String(cString: strerror(errno)))")
                }
                let (mine, theirs) = number == 0 ? (fds[1], fds[0]) : (fds[0], fds[1])
                parentEnds.append(mine)
                childEnds.append(theirs)
                posix_spawn_file_actions_adddup2(&actions, theirs, number)
                if number == 0 { input = mine } else { outputs.append(mine) }
            }
        }
        for (number, fd) in descriptors.sorted(by: { $0.key < $1.key }) {
            posix_spawn_file_actions_adddup2(&actions, fd, number)
        }
        if let directory { cspawn_addchdir(&actions, directory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let variables = environment ?? ProcessInfo.processInfo.environment
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            for fd in parentEnds { close(fd) }
            throw Failure(description: "posix_spawn \(executable): \(String(cString: strerror(result)))")
        }
        pid = child
        inputFD = input
        outputFDs = outputs
    }

    deinit {
        if reapedStatus() == nil {
            Glibc.kill(pid, SIGKILL)
            _ = wait()
        }
        if inputFD >= 0 { close(inputFD) }
        for fd in outputFDs { close(fd) }
    }

    /// The absolute path of `tool` on `PATH` (or `/usr/bin`, `/usr/sbin`), or `tool` itself when it has a slash.
    package static func locate(_ tool: String) -> String? {
        if tool.contains("/") { return access(tool, X_OK) == 0 ? tool : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/sbin", "/bin"]
        return directories.map { "\($0)/\(tool)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs `executable` to completion with stdin from /dev/null, collecting stdout and stderr.
    ///
    /// After `timeout` seconds the child gets SIGKILL and this throws ``TimedOut``.
    package static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        directory: String? = nil, timeout: Double = 120
    ) throws -> Result {
        let child = try ChildProcess(
            executable, arguments, environment: environment, directory: directory, stdout: .pipe, stderr: .pipe)
        let deadline = Date().addingTimeInterval(timeout)
        let (out, err) = child.collect(until: deadline)
        // The pipes end when the child exits, a moment before it can be reaped.
        guard let status = child.wait(timeout: max(0, deadline.timeIntervalSinceNow)) else {
            child.kill()
            _ = child.wait()
            throw TimedOut(seconds: timeout)
        }
        return Result(
            status: status.status, signaled: status.signaled,
            stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    /// Whether the child still runs.
    package var isRunning: Bool { reapedStatus() == nil }

    /// Sends `signal` (SIGKILL by default) unless the child was already reaped.
    package func kill(_ signal: Int32 = SIGKILL) {
        lock.withLock { if reaped == nil { _ = Glibc.kill(pid, signal) } }
    }

    /// Waits for the child to end.
    @discardableResult
    package func wait() -> (status: Int32, signaled: Bool) {
        while true {
            if let status = reapedStatus() { return status }
            usleep(5_000)
        }
    }

    /// Waits up to `seconds` for the child to end; nil when it still runs.
    package func wait(timeout seconds: Double) -> (status: Int32, signaled: Bool)? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            if let status = reapedStatus() { return status }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// Writes `text` to the child's standard input (a ``Stream/pipe``); false when it cannot.
    @discardableResult
    package func write(_ text: String) -> Bool {
        let fd = lock.withLock { inputFD }
        guard fd >= 0 else { return false }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            bytes = bytes.dropFirst(written)
        }
        return true
    }

    /// Closes the child's standard input, so it sees the end of its input.
    package func closeInput() {
        lock.withLock {
            if inputFD >= 0 { close(inputFD) }
            inputFD = -1
        }
    }

    /// Reads the stdout and stderr pipes until both end, the child has ended and they are drained, or `deadline`.
    private func collect(until deadline: Date) -> ([UInt8], [UInt8]) {
        var buffers: [[UInt8]] = [[], []]
        var open = outputFDs.enumerated().map { (index: $0.offset, fd: $0.element) }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty && Date() < deadline {
            let ended = reapedStatus() != nil
            var polls = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&polls, nfds_t(polls.count), ended ? 0 : 50)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 {
                if ended { break }  // everything the child wrote is read; a leaked write end must not hold us
                continue
            }
            var stillOpen: [(index: Int, fd: Int32)] = []
            for (entry, polled) in zip(open, polls) {
                guard polled.revents != 0 else {
                    stillOpen.append(entry)
                    continue
                }
                let count = chunk.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    buffers[entry.index].append(contentsOf: chunk[0..<count])
                    stillOpen.append(entry)
                } else if count < 0 && errno == EINTR {
                    stillOpen.append(entry)
                }
            }
            open = stillOpen
        }
        return (buffers[0], buffers.count > 1 ? buffers[1] : [])
    }

    /// Reaps the child once (waitpid without blocking, so ``kill(_:)`` is never held up), remembering its
    /// status; nil while it runs.
    private func reapedStatus() -> (status: Int32, signaled: Bool)? {
        lock.withLock {
            if let reaped { return reaped }
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
            guard result == pid else { return nil }
            let signal = status & 0x7F
            reaped = signal == 0 ? ((status >> 8) & 0xFF, false) : (signal, true)
            return reaped
        }
    }
}
