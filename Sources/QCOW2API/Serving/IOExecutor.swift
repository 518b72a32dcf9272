#if canImport(Glibc)
    import Glibc
#endif
import CSystemShim
import Dispatch
import Synchronization

/// The threads that do every file read and every parse, so that the threads answering HTTP never block.
///
/// A fixed set of worker threads (``threads``) takes jobs in order. A worker stuck longer than
/// ``stuckAfter`` (storage that stalls) no longer counts: another thread is started in its place, up
/// to ``maxThreads`` in all, so images that stall cannot take the capacity that other images need.
/// Stuck threads are abandoned when the process exits, never waited for. Jobs beyond ``maxQueued``
/// are refused (the caller answers 503). Workers run at a lower CPU priority (nice +5) than the
/// threads answering `/healthz`, `/metrics` and cached documents.
public final class IOExecutor: Sendable {
    /// One queued piece of work.
    private struct Job: Sendable {
        let work: @Sendable () -> Void
    }

    private struct State: Sendable {
        var queue: [Job] = []
        var head = 0
        var threads = 0
        var idle = 0
        /// When each busy worker took its current job, by worker number.
        var busySince: [Int: ContinuousClock.Instant] = [:]
        /// Workers started so far (numbers them).
        var started = 0
    }

    /// Workers kept for work that is not stuck.
    public let threads: Int
    /// The most workers there may be, stuck ones included.
    public let maxThreads: Int
    /// After how long a busy worker counts as stuck.
    public let stuckAfter: Duration
    /// The most jobs waiting for a worker.
    public let maxQueued: Int

    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)

    /// Twice the CPUs this process may run on (its affinity mask), at least 2 and at most 64: enough
    /// workers to overlap reads, few enough that cached answers do not pay for switching between them
    /// (measured: 2 workers answer a cached document 1.3 to 1.4 times as fast as 8 on one CPU).
    public static var defaultThreads: Int { min(64, max(2, 2 * Int(css_affinity_cpu_count()))) }

    /// Creates the executor; workers start on demand.
    ///
    /// - Parameters:
    ///   - threads: workers for normal work (at least 1).
    ///   - maxThreads: the cap, stuck workers included (at least `threads`).
    ///   - stuckAfter: when a busy worker is replaced.
    ///   - maxQueued: jobs waiting at most.
    public init(threads: Int = 8, maxThreads: Int = 64, stuckAfter: Duration = .seconds(2), maxQueued: Int = 10_000) {
        self.threads = max(1, threads)
        self.maxThreads = max(self.threads, maxThreads)
        self.stuckAfter = stuckAfter
        self.maxQueued = max(1, maxQueued)
    }

    /// Queues `work`; false when the queue is full (nothing is run).
    @discardableResult
    public func submit(_ work: @escaping @Sendable () -> Void) -> Bool {
        let now = ContinuousClock.now
        let spawn = state.withLock { s -> Bool? in
            guard s.queue.count - s.head < maxQueued else { return nil }
            s.queue.append(Job(work: work))
            let stuck = s.busySince.values.filter { now - $0 >= stuckAfter }.count
            let pending = s.queue.count - s.head
            // A new worker when the job would wait: none idle, and the workers that are not stuck are
            // fewer than `threads` (or all are stuck), within the cap.
            guard pending > s.idle, s.threads - stuck < threads, s.threads < maxThreads else { return false }
            s.threads += 1
            return true
        }
        guard let spawn else { return false }
        if spawn { startWorker() }
        available.signal()
        return true
    }

    /// Runs `work` on a worker and waits for it until `timeout` has passed.
    ///
    /// - Returns: the result, or nil when the timeout passed first or the queue is full (the work may
    ///   still run later; it must not need the caller).
    public func run<T: Sendable>(timeout: Duration, _ work: @escaping @Sendable () -> T) -> T? {
        let box = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        guard submit({
            let v = work()
            box.withLock { $0 = v }
            done.signal()
        }) else { return nil }
        guard done.wait(timeout: .now() + Self.interval(timeout)) == .success else { return nil }
        return box.withLock { $0 }
    }

    /// Runs `work` for every item on the workers, in parallel, and waits until all are done or
    /// `timeout` has passed; items not done by then are nil (and are skipped if not started yet).
    public func map<Item: Sendable, T: Sendable>(
        _ items: [Item], timeout: Duration, _ work: @escaping @Sendable (Item) -> T
    ) -> [T?] {
        if items.isEmpty { return [] }
        let g = Gather<T>(count: items.count)
        for (i, item) in items.enumerated() {
            let accepted = submit {
                if !g.cancelled.load(ordering: .acquiring) {
                    let v = work(item)
                    g.results.withLock { $0[i] = v }
                }
                if g.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { g.done.signal() }
            }
            if !accepted, g.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { g.done.signal() }
        }
        _ = g.done.wait(timeout: .now() + Self.interval(timeout))
        g.cancelled.store(true, ordering: .releasing)
        return g.results.withLock { $0 }
    }

    /// Workers started, workers idle, workers stuck, and jobs waiting.
    public var load: (threads: Int, idle: Int, stuck: Int, queued: Int) {
        let now = ContinuousClock.now
        return state.withLock { s in
            (s.threads, s.idle, s.busySince.values.filter { now - $0 >= stuckAfter }.count, s.queue.count - s.head)
        }
    }

    private static func interval(_ d: Duration) -> DispatchTimeInterval {
        let c = d.components
        let ms = max(0, c.seconds) &* 1000 &+ Int64(c.attoseconds / 1_000_000_000_000_000)
        return .milliseconds(Int(clamping: ms))
    }

    private func startWorker() {
        let box = unsafe Unmanaged.passRetained(WorkerStart(executor: self, number: state.withLock { s in
            s.started += 1
            return s.started
        }))
        var attributes = pthread_attr_t()
        unsafe pthread_attr_init(&attributes)
        unsafe pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = unsafe pthread_create(&thread, &attributes, { raw in
            guard let raw = unsafe raw else { return nil }
            let start = unsafe Unmanaged<WorkerStart>.fromOpaque(raw).takeRetainedValue()
            start.executor.work(number: start.number)
            return nil
        }, unsafe box.toOpaque())
        unsafe pthread_attr_destroy(&attributes)
        if rc != 0 {
            unsafe box.release()
            state.withLock { $0.threads -= 1 }
        }
    }

    /// One worker's loop: takes jobs for ever.
    private func work(number: Int) {
        _ = css_lower_thread_priority(5)
        while true {
            state.withLock { $0.idle += 1 }
            available.wait()
            let job = state.withLock { s -> Job? in
                s.idle -= 1
                guard s.head < s.queue.count else { return nil }
                let j = s.queue[s.head]
                s.head += 1
                if s.head > 1024 && s.head * 2 > s.queue.count {
                    s.queue.removeFirst(s.head)
                    s.head = 0
                }
                s.busySince[number] = .now
                return j
            }
            guard let job else { continue }
            job.work()
            _ = state.withLock { $0.busySince.removeValue(forKey: number) }
        }
    }
}

/// The results of one ``IOExecutor/map(_:timeout:_:)``, filled in by the workers.
private final class Gather<T: Sendable>: Sendable {
    let results: Mutex<[T?]>
    let remaining: Atomic<Int>
    let cancelled = Atomic<Bool>(false)
    let done = DispatchSemaphore(value: 0)
    init(count: Int) {
        results = Mutex([T?](repeating: nil, count: count))
        remaining = Atomic(count)
    }
}

/// What a new worker thread is given: its executor and number.
private final class WorkerStart: Sendable {
    let executor: IOExecutor
    let number: Int
    init(executor: IOExecutor, number: Int) {
        self.executor = executor
        self.number = number
    }
}
