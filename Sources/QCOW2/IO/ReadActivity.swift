import Synchronization

/// What is being read from one file right now: how many operations, and since when the oldest runs.
///
/// A ``FileImageSource`` given one records every `pread` in it; the catalog records the `open` and
/// `fstat` of a lookup. When storage stalls, the daemon names the file offset it is stuck at from here.
public final class ReadActivity: Sendable {
    /// One operation in progress: the offset of a read (nil while opening) and when it began.
    public struct Pending: Sendable, Equatable {
        /// The file offset of the read; nil for an open or fstat.
        public var offset: UInt64?
        /// When it began.
        public var since: ContinuousClock.Instant
    }

    private struct State: Sendable {
        var running = 0
        var oldest: Pending?
    }

    private let state = Mutex(State())

    /// Creates an idle record.
    public init() {}

    /// Records that an operation at `offset` (nil: opening) begins.
    public func begin(_ offset: UInt64?) {
        state.withLock { s in
            if s.running == 0 { s.oldest = Pending(offset: offset, since: .now) }
            s.running += 1
        }
    }

    /// Records that an operation ended.
    public func end() {
        state.withLock { s in
            s.running = max(0, s.running - 1)
            if s.running == 0 { s.oldest = nil }
        }
    }

    /// The oldest operation still in progress, nil when none is.
    public var pending: Pending? { state.withLock { $0.oldest } }
}
