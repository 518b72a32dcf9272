import CSystemShim
#if canImport(Glibc)
    import Glibc
#endif
public import QCOW2
import Synchronization

/// Keeps every image's check verdict current in the background: new and changed images first, then
/// verdicts that were `busy` (a writer held the image), then the oldest ones.
///
/// Its checks run on a worker of their own at idle I/O priority (`ioprio_set`, idle class) and the
/// lowest CPU priority (nice 19), read at most ``Settings/rate`` bytes of metadata per second, skip images whose storage
/// is stalled (a check stuck in a read is left behind after ``Settings/stallTimeout``), and never run on
/// the threads that answer requests. A request for a check the scrubber
/// is running joins it (one computation per image version).
public final class Scrubber: Sendable {
    /// How the scrubber paces itself.
    public struct Settings: Sendable {
        /// Bytes of metadata read per second at most; 0 for no limit.
        public var rate: UInt64 = Settings.defaultRate
        /// How long to rest when every verdict is current.
        public var idle: Duration = .seconds(2)
        /// Age after which a verdict of an unchanged file is checked again.
        public var recheckAfter: Duration = .seconds(3600)
        /// Age after which a `busy` verdict (a writer held the image) is checked again.
        public var busyRecheckAfter: Duration = .seconds(60)
        /// How long a check may go without a read returning before the scrubber moves on (stalled storage).
        public var stallTimeout: Duration = .seconds(30)
        /// The checks' options (memory limit); pacing and stopping are the scrubber's.
        public var options = CheckOptions()

        /// 32 MiB/s of metadata: a 1 TiB image of 64 KiB clusters (160 MiB of tables) in about 5 s.
        public static let defaultRate: UInt64 = 32 << 20

        /// The defaults.
        public init() {}
    }

    /// What the scrubber has done.
    public struct Stats: Sendable {
        /// Images in the directory at the last pass.
        public var images = 0
        /// Images whose verdict is for their current file version.
        public var current = 0
        /// Checks the scrubber ran, since start.
        public var checks = 0
        /// Metadata bytes its checks read, since start.
        public var bytesRead: UInt64 = 0
        /// The image being checked now, nil when resting.
        public var checking: String?
        /// Passes over the directory completed, since start.
        public var passes = 0
        /// Whether its checks got the idle I/O class (false where `ioprio_set` is refused).
        public var idleIOPriority = false
        /// Checks left to a stalled read (the scrubber went on without them), since start.
        public var abandoned = 0
    }

    private let catalog: ImageCatalog
    private let settings: Settings
    private let state = Mutex(Stats())
    private let stopped = Atomic<Bool>(false)
    private let thread = IOExecutor(threads: 1, maxThreads: 1, stuckAfter: .seconds(86_400), maxQueued: 1)
    /// Where the checks run: one at a time; a worker stuck on a stalled read is replaced (up to 4).
    private let workers = IOExecutor(threads: 1, maxThreads: 4, stuckAfter: .seconds(30), maxQueued: 1)

    /// A scrubber of `catalog`'s images; call ``start()`` to run it.
    public init(catalog: ImageCatalog, settings: Settings = Settings()) {
        self.catalog = catalog
        self.settings = settings
    }

    /// Starts the background thread (once).
    public func start() {
        _ = thread.submit { [self] in
            // The pass itself (listing, lookups, pacing) yields the CPU as its checks do.
            _ = unsafe css_lower_thread_priority(19)
            while !stopped.load(ordering: .relaxed) { pass() }
        }
    }

    /// Stops after the check in progress (which is cut short at its next table read).
    public func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    /// A snapshot of what the scrubber has done.
    public var stats: Stats { state.withLock { $0 } }

    /// One pass: every image that needs a check, most urgent first; then a rest when none did.
    private func pass() {
        let names = ((try? catalog.names()) ?? []).filter { catalog.isImage($0) }
        catalog.checks.retain(Set(names))
        let now = ContinuousClock.now
        var due: [(rank: Int, age: Duration, name: String)] = []
        var current = 0
        for name in names {
            if stopped.load(ordering: .relaxed) { return }
            if catalog.stall(named: name, after: .seconds(1)) != nil { continue }
            guard let info = try? catalog.fileInfo(named: name) else { continue }
            guard let job = catalog.checks.currentJob(named: name), job.file.sameVersion(as: info) else {
                due.append((0, .zero, name))
                continue
            }
            guard let outcome = job.outcome else { continue }  // running (a request asked for it)
            current += 1
            let age = now - outcome.finished
            if outcome.state == "busy" && age >= settings.busyRecheckAfter {
                due.append((1, age, name))
            } else if age >= settings.recheckAfter {
                due.append((2, age, name))
            }
        }
        state.withLock {
            $0.images = names.count
            $0.current = current
        }
        due.sort { $0.rank != $1.rank ? $0.rank < $1.rank : $0.age > $1.age }
        for d in due {
            if stopped.load(ordering: .relaxed) { return }
            check(d.name, again: d.rank > 0)
        }
        state.withLock { $0.passes += 1 }
        if due.isEmpty { rest(settings.idle) }
    }

    /// Checks one image on a worker of its own, paced to the rate; gives up waiting (and leaves the
    /// worker to its read) when no read returned for ``Settings/stallTimeout``: a stalled image costs
    /// the scrubber that image only.
    private func check(_ name: String, again: Bool) {
        state.withLock { $0.checking = name }
        defer { state.withLock { $0.checking = nil } }
        let pacer = Pacer(rate: settings.rate)
        var paced = settings.options
        paced.pace = { pacer.take($0) }
        paced.shouldStop = { [self] in self.stopped.load(ordering: .relaxed) }
        let options = paced
        let finished = Atomic<Bool>(false)
        let result = Mutex<(CheckOutcome?, Bool)>((nil, false))
        let submitted = workers.submit { [self] in
            defer { finished.store(true, ordering: .releasing) }
            let idle = css_ioprio_idle_thread() == 0
            // The lowest CPU priority too (nice 19): on a busy core it yields to the threads that answer.
            _ = css_lower_thread_priority(19)
            guard let (entry, locks) = try? catalog.lookup(named: name, probeLocks: true) else { return }
            let job = catalog.checks.job(
                for: entry, named: name, writerPresent: locks?.writerPresent, options: options, inline: true, again: again)
            result.withLock { $0 = (job?.outcome, idle) }
        }
        guard submitted else { return }
        while !finished.load(ordering: .acquiring) {
            if stopped.load(ordering: .relaxed) { return }
            if ContinuousClock.now - pacer.lastRead > settings.stallTimeout {
                state.withLock { $0.abandoned += 1 }
                return
            }
            var ts = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            _ = unsafe nanosleep(&ts, nil)
        }
        let (outcome, idle) = result.withLock { $0 }
        guard let o = outcome else { return }
        state.withLock {
            $0.idleIOPriority = idle
            $0.checks += 1
            $0.bytesRead &+= o.report.bytesRead
            $0.current += again ? 0 : 1
        }
    }

    private func rest(_ d: Duration) {
        let end = ContinuousClock.now + d
        while !stopped.load(ordering: .relaxed) && ContinuousClock.now < end {
            var ts = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            _ = unsafe nanosleep(&ts, nil)
        }
    }
}

/// Sleeps so that the bytes taken since it was made never exceed `rate` per second; remembers when
/// the last read was asked for.
private final class Pacer: Sendable {
    private let rate: UInt64
    private let start = ContinuousClock.now
    private let taken = Atomic<UInt64>(0)
    private let last = Mutex<ContinuousClock.Instant>(ContinuousClock.now)

    init(rate: UInt64) { self.rate = rate }

    /// When the check last asked for a read (after its pacing sleep).
    var lastRead: ContinuousClock.Instant { last.withLock { $0 } }

    func take(_ bytes: UInt64) {
        defer { last.withLock { $0 = ContinuousClock.now } }
        guard rate > 0 else { return }
        let total = taken.add(bytes, ordering: .relaxed).newValue
        // In floating point: a rate from the configuration may be any size, the arithmetic never traps.
        let due = start + .seconds(Double(total) / Double(rate))
        let wait = due - ContinuousClock.now
        guard wait > .zero else { return }
        let c = wait.components
        var ts = timespec(tv_sec: Int(c.seconds), tv_nsec: Int(c.attoseconds / 1_000_000_000))
        _ = unsafe nanosleep(&ts, nil)
    }
}
