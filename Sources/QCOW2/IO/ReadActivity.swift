import Synchronization

/// What is being read from one file right now: how many operations, and since when the oldest runs.
///
/// A ``FileImageSource`` given one records every `pread` in it; the catalog records the `open` and
/// `fstat` of a lookup. When storage stalls, the daemon names the file offset it is stuck at from here;
/// when it fails, the count of failures tells what must not be cached and feeds the metrics.
public final class ReadActivity: Sendable {
    /// One operation in progress: the offset of a read (nil while opening) and when it began.
    public struct Pending: Sendable, Equatable {
        /// The file offset of the read; nil for an open or fstat.
        public var offset: UInt64?
        /// When it began.
        public var since: ContinuousClock.Instant
    }

    private struct State: Sendable {
        var next = 0
        var running: [Int: Pending] = [:]
        var lastFailure: QCOW2Error?
    }

    private let state = Mutex(State())
    private let failures = Atomic<Int>(0)

    /// Creates an idle record.
    public init() {}

    /// Records that an operation at `offset` (nil: opening) begins; pass the token to ``end(_:)``.
    public func begin(_ offset: UInt64?) -> Int {
        state.withLock { s in
            s.next &+= 1
            s.running[s.next] = Pending(offset: offset, since: .now)
            return s.next
        }
    }

    /// Records that the operation of `token` ended.
    public func end(_ token: Int) {
        _ = state.withLock { $0.running.removeValue(forKey: token) }
    }

    /// Records a failed operation (an errno, or a read that ended early) and what it was.
    public func failed(_ error: QCOW2Error) {
        state.withLock { $0.lastFailure = error }
        failures.add(1, ordering: .releasing)
    }

    /// The most recent failed operation, nil when none failed.
    public var lastFailure: QCOW2Error? { state.withLock { $0.lastFailure } }

    /// Failed operations since the record was made: anything computed while this grew saw a failure
    /// of the storage and must not be kept.
    public var failureCount: Int { failures.load(ordering: .acquiring) }

    /// The oldest operation still in progress, nil when none is.
    public var pending: Pending? { state.withLock { $0.running.values.min { $0.since < $1.since } } }
}
