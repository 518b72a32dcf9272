import Glibc

/// Synchronous signal handling: block SIGTERM, SIGINT and SIGHUP in every thread, then wait for them in the main
/// thread.
enum SignalWaiter {
    /// What the main thread was woken for.
    enum Event: Equatable {
        /// SIGTERM or SIGINT (its name): stop.
        case terminate(String)
        /// SIGHUP: reload the TLS certificate and the token.
        case reload
        /// Nothing arrived within the timeout.
        case timeout
    }

    /// The signals the daemon handles itself.
    private static var handledSignals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGHUP)
        return set
    }

    /// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and threads created later) and ignores SIGPIPE.
    ///
    /// Call it first thing in `main.swift`, before any thread starts.
    static func blockTerminationSignals() {
        var set = handledSignals
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Waits up to `timeout` for SIGTERM, SIGINT or SIGHUP (`sigtimedwait`).
    static func next(timeout: Duration) -> Event {
        var set = handledSignals
        let (seconds, attoseconds) = timeout.components
        var limit = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        while true {
            let received = sigtimedwait(&set, nil, &limit)
            if received == SIGHUP { return .reload }
            if received == SIGINT { return .terminate("SIGINT") }
            if received == SIGTERM { return .terminate("SIGTERM") }
            if received < 0 && errno == EAGAIN { return .timeout }
            // EINTR or an unexpected value: wait again (the timeout restarts, which only delays housekeeping).
        }
    }
}
