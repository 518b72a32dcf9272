#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Unbuffered-by-libc output to file descriptors 1 and 2, with our own buffering for stdout.
///
/// `write(2)` is used directly (no `FILE *`), so nothing global and mutable is touched from Swift.
struct StandardOutput {
    private var buffer: [UInt8] = []

    /// Appends `s`, writing out whenever 64 KiB have gathered.
    mutating func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    /// Writes everything buffered to file descriptor 1.
    mutating func flush() {
        Terminal.writeAll(1, buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Small helpers around the process's standard streams.
enum Terminal {
    /// Writes all of `bytes` to `fd`, retrying on EINTR and short writes; gives up on other errors.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var done = 0
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            while done < raw.count {
                let n = Glibc.write(fd, base + done, raw.count - done)
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

    /// Prints `text` to stdout at once.
    static func print(_ text: String) {
        writeAll(1, Array(text.utf8))
    }

    /// Prints one line to stderr, prefixed with `qcowscope: `.
    static func error(_ line: String) {
        writeAll(2, Array(("qcowscope: " + line + "\n").utf8))
    }

    /// Whether standard output is a terminal.
    static var stdoutIsTerminal: Bool { isatty(1) == 1 }
}
