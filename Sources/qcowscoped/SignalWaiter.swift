import Glibc

/// Synchronous signal handling: block SIGTERM and SIGINT in every thread, then wait for one in the main thread.
enum SignalWaiter {
    /// The signals that stop the daemon.
    private static var terminationSignals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }

    /// Blocks SIGTERM and SIGINT in the calling thread (and threads created later) and ignores SIGPIPE.
    ///
    /// Call it first thing in `main.swift`, before any thread starts.
    static func blockTerminationSignals() {
        var set = terminationSignals
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Waits until SIGTERM or SIGINT arrives (`sigwait`) and returns its name.
    static func waitForTermination() -> String {
        var set = terminationSignals
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received == SIGINT ? "SIGINT" : "SIGTERM"
    }
}
