import Glibc
import MicroHTTPD
import QCOW2API
import Synchronization

/// The access log's writer: requests hand over a ``Record`` (no formatting, no system call) and one
/// thread of its own formats the lines and writes them in batches.
///
/// The buffer is bounded (``capacity`` records): when the writer falls behind (a full disk, a stalled
/// pipe), further records are dropped and counted (``dropped``, `qcowscope_access_log_dropped_lines_total`),
/// and no request ever waits for the log. `--access-log off|stderr|FILE` picks the destination; a FILE is
/// opened `O_APPEND` and opened again on SIGHUP (``reopen()``), for logrotate.
final class AccessLogWriter: Sendable {
    /// Where the lines go.
    enum Destination: Sendable, Equatable {
        case off
        case stderr
        case file(String)

        /// `off`, `stderr` or a path (absolute, or relative to the working directory).
        init?(_ text: String) {
            switch text {
            case "off": self = .off
            case "stderr", "-": self = .stderr
            case "": return nil
            default: self = .file(text)
            }
        }
    }

    /// One answered request, as the HTTP thread knows it.
    struct Record: Sendable {
        var method: String
        var path: Substring
        var status: Int
        var bytes: Int
        var micros: Int64
        /// The client's numeric address, or "" with `address` set (its text is made by the writer).
        var remote: String
        var address: ClientAddress? = nil
        var token: String?
        var uid: UInt32?
        var certificate: String?
    }

    /// Records held at most while the writer catches up.
    static let capacity = 16_384
    /// How long the writer sleeps when there is nothing to write.
    static let idleMicroseconds: UInt32 = 10_000

    private struct State {
        var pending: [Record] = []
        var dropped: UInt64 = 0
        var stopped = false
        var drained = true
    }

    private let state = Mutex(State())
    private let fd: Atomic<Int32>
    private let destination: Destination
    private let thread = IOExecutor(threads: 1, maxThreads: 1, stuckAfter: .seconds(86_400), maxQueued: 1)

    /// Opens the destination (a FILE is created with mode 0640 when missing) and starts the writer.
    ///
    /// - Throws: ``StartupError`` naming the file and the errno when it cannot be opened.
    init(_ destination: Destination) throws(StartupError) {
        self.destination = destination
        switch destination {
        case .off: fd = Atomic(-1)
        case .stderr: fd = Atomic(STDERR_FILENO)
        case .file(let path):
            let opened = Self.open(path)
            guard opened >= 0 else {
                throw StartupError("access log '\(path)': \(String(cString: strerror(errno)))")
            }
            fd = Atomic(opened)
        }
        guard destination != .off else { return }
        _ = thread.submit { [self] in self.run() }
    }

    private static func open(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0o640)
    }

    /// Whether lines are written at all.
    var isOn: Bool { destination != .off }

    /// Records dropped because the buffer was full.
    var dropped: UInt64 { state.withLock { $0.dropped } }

    /// Hands one record to the writer, or counts it as dropped when the buffer is full. Never blocks
    /// beyond the buffer's lock.
    func append(_ record: Record) {
        guard isOn else { return }
        state.withLock { s in
            if s.pending.count >= Self.capacity || s.stopped {
                s.dropped &+= 1
            } else {
                s.pending.append(record)
                s.drained = false
            }
        }
    }

    /// Opens the FILE again (after logrotate moved it); stderr and off are left as they are.
    func reopen() {
        guard case .file(let path) = destination else { return }
        let opened = Self.open(path)
        guard opened >= 0 else { return }
        let old = fd.exchange(opened, ordering: .acquiringAndReleasing)
        if old > 2 { close(old) }
    }

    /// Writes what is buffered and stops the writer; waits at most `timeout` for the write (a stalled
    /// destination is abandoned, like a stalled read).
    func stop(timeout: Duration = .seconds(2)) {
        guard isOn else { return }
        state.withLock { $0.stopped = true }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline, !state.withLock({ $0.drained && $0.pending.isEmpty }) {
            usleep(Self.idleMicroseconds)
        }
    }

    /// The writer's loop: takes the whole buffer, formats it into one block, writes it.
    private func run() {
        var formatter = AccessLogFormatter()
        while true {
            let (batch, stopped) = state.withLock { s -> ([Record], Bool) in
                let taken = s.pending
                s.pending.removeAll(keepingCapacity: true)
                if taken.isEmpty { s.drained = true }
                return (taken, s.stopped)
            }
            if batch.isEmpty {
                if stopped { return }
                usleep(Self.idleMicroseconds)
                continue
            }
            var block: [UInt8] = []
            block.reserveCapacity(batch.count * 120)
            // One clock reading per batch: its lines are written now.
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            for r in batch { formatter.append(r, to: &block, at: now.tv_sec) }
            Self.writeAll(fd.load(ordering: .acquiring), block)
            state.withLock { s in if s.pending.isEmpty { s.drained = true } }
        }
    }

    /// Writes all of `bytes`, retrying short writes and EINTR; gives up on other errors (a full disk
    /// loses the lines, never a request).
    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        guard fd >= 0 else { return }
        var done = 0
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < raw.count {
                let n = write(fd, base + done, raw.count - done)
                if n > 0 {
                    done += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }
}

/// Formats access-log records in swift-log's stream layout, so that the daemon's other lines and these
/// read alike: `2026-12-04T03:04:40+0000 info qcowscoped: cert=… remote=… token=… uid=… [qcowscoped] GET /v1/images 200 812B 95us`.
struct AccessLogFormatter {
    private var second: time_t = -1
    private var stamp: [UInt8] = []
    /// The text of recent client addresses (few clients make most requests).
    private var addresses: [ClientAddress: String] = [:]

    /// Appends the line of `r` to `out`.
    mutating func append(_ r: AccessLogWriter.Record, to out: inout [UInt8], at seconds: time_t) {
        if seconds != second {
            second = seconds
            var t = seconds
            var parts = tm()
            localtime_r(&t, &parts)
            var buffer = [CChar](repeating: 0, count: 64)
            let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
            stamp = buffer.prefix(n).map { UInt8(bitPattern: $0) }
        }
        out += stamp
        out += " info qcowscoped:".utf8
        // swift-log prints metadata sorted by key.
        if let c = r.certificate { out += " cert=\(AccessLog.printable(c))".utf8 }
        out += " remote=".utf8
        if let a = r.address {
            if let text = addresses[a] {
                out += text.utf8
            } else {
                let text = a.text
                if addresses.count >= 1024 { addresses.removeAll(keepingCapacity: true) }
                addresses[a] = text
                out += text.utf8
            }
        } else {
            out += r.remote.utf8
        }
        if let t = r.token {
            out += " token=".utf8
            out += t.utf8
        }
        if let u = r.uid {
            out += " uid=".utf8
            Self.decimal(Int64(u), to: &out)
        }
        out += " [qcowscoped] ".utf8
        Self.printable(Substring(r.method).utf8, to: &out)
        out.append(0x20)
        Self.printable(r.path.utf8, to: &out)
        out.append(0x20)
        Self.decimal(Int64(r.status), to: &out)
        out.append(0x20)
        Self.decimal(Int64(r.bytes), to: &out)
        out += "B ".utf8
        Self.decimal(r.micros, to: &out)
        out += "us\n".utf8
    }

    /// Appends `bytes` as ``AccessLog/printable(_:)`` writes them: control bytes and backslashes as `\xNN`.
    static func printable(_ bytes: Substring.UTF8View, to out: inout [UInt8]) {
        // Almost always nothing to escape: one scan, one copy.
        if bytes.allSatisfy({ $0 >= 0x20 && $0 != 0x7f && $0 != 0x5c }) {
            out += bytes
            return
        }
        let hex = Array("0123456789ABCDEF".utf8)
        for b in bytes {
            if b >= 0x20 && b != 0x7f && b != 0x5c {
                out.append(b)
            } else {
                out += [0x5c, 0x78, hex[Int(b >> 4)], hex[Int(b & 15)]]
            }
        }
    }

    /// Appends `value` in decimal (a minus sign first when negative).
    static func decimal(_ value: Int64, to out: inout [UInt8]) {
        var v = value.magnitude
        if value < 0 { out.append(0x2d) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[n] = UInt8(0x30 + v % 10)
                v /= 10
                n += 1
            } while v > 0
            while n > 0 {
                n -= 1
                out.append(d[n])
            }
        }
    }
}
