import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// Ends the CLI when storage stops answering: no command hangs on a stalled file.
///
/// Armed once per run with the `--io-timeout` seconds (default 30); when they pass before the command
/// finished, one line on stderr names the file (and what is stalled, when known) and the process exits
/// with status 1. Reads stuck in the kernel are abandoned with the process, as a hung NFS mount lets
/// a killed process go.
enum Watchdog {
    /// Default seconds a command may take.
    static let defaultSeconds = 30.0

    /// Starts the timer for `file`; `stalled` says what is stuck (nil: unknown) when it fires.
    ///
    /// With `server` (`--server`), the line names the server: it is the daemon that did not answer.
    static func arm(
        seconds: Double, file: String, server: String? = nil, stalled: @escaping @Sendable () -> String? = { nil }
    ) {
        guard seconds.isFinite, seconds > 0 else { return }
        let ms = Int(min(seconds, 86_400) * 1000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) {
            var line = "\(file): storage did not answer within \(seconds) s (--io-timeout)"
            if let server { line = "\(server): \(file): the server did not answer within \(seconds) s (--io-timeout)" }
            if let what = stalled() { line += ": \(what)" }
            Terminal.error(line)
            _exit(1)
        }
    }
}
