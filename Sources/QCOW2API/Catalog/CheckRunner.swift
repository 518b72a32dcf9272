#if canImport(Glibc)
    import Glibc
#endif
public import QCOW2
import Synchronization

/// Runs the read-only refcount check of images, one computation per image version, and keeps each
/// image's last verdict until the file changes.
///
/// A check runs where ``launch`` puts it (the daemon's check pool; inline when none is set, as in the
/// CLI). Asking for the check of a version whose check is running joins that run (single flight);
/// asking for a version that changed starts a new one. Verdicts are kept by image name, so they
/// outlive the parse cache: the listing and the metrics show the last one.
public final class CheckRunner: Sendable {
    /// One check of one image version: running, then finished.
    public final class Job: Sendable {
        /// The file version checked.
        public let file: FileInfo
        /// Wall-clock time the check started, in seconds since the Epoch.
        public let startedAt: Int64
        /// A number no other job of this process has (at least 2): validators of documents that show
        /// this job's results include it.
        public let serial: UInt64
        private let started = ContinuousClock.now
        private let state = Mutex<State>(.running(done: 0, total: 0))
        private let merged = Once<FindingIndex>()
        private static let counter = Atomic<UInt64>(0)

        enum State {
            case running(done: UInt64, total: UInt64)
            case finished(CheckOutcome)
        }

        init(file: FileInfo) {
            self.file = file
            serial = Job.counter.add(1, ordering: .relaxed).newValue + 1
            startedAt = CheckRunner.wallClock().seconds
        }

        /// The outcome, nil while the check runs.
        public var outcome: CheckOutcome? {
            state.withLock { s in
                if case .finished(let o) = s { return o }
                return nil
            }
        }

        /// Bytes read so far and bytes the check expects to read (both 0 before it starts).
        public var progress: (done: UInt64, total: UInt64) {
            state.withLock { s in
                switch s {
                case .running(let d, let t): (d, t)
                case .finished(let o): (o.report.bytesRead, o.report.bytesRead)
                }
            }
        }

        func report(done: UInt64, total: UInt64) {
            state.withLock { s in
                if case .running = s { s = .running(done: done, total: max(done, total)) }
            }
        }

        func finish(_ report: CheckReport, writerPresent: Bool?) {
            let elapsed = ContinuousClock.now - started
            let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
            let now = CheckRunner.wallClock()
            let o = CheckOutcome(
                report: report, file: file, checkedAt: now.seconds, checkedAtNanoseconds: now.nanoseconds,
                durationMilliseconds: ms, writerPresent: writerPresent, finished: ContinuousClock.now)
            state.withLock { $0 = .finished(o) }
        }

        /// `base` (the image's other findings) with the problems this finished check found, indexed once;
        /// `base` itself while the check runs, or when a writer held the image (its figures are unreliable).
        public func findings(merging base: FindingIndex) -> FindingIndex {
            guard let o = outcome, o.state != "busy", !o.report.problems.isEmpty else { return base }
            return merged.value { FindingIndex(base, adding: o.report.problems) }
        }

        /// Waits until the check finishes or `timeout` passes; the outcome, nil when still running.
        public func wait(_ timeout: Duration) -> CheckOutcome? {
            let deadline = ContinuousClock.now + timeout
            while true {
                if let o = outcome { return o }
                if ContinuousClock.now >= deadline { return nil }
                var ts = timespec(tv_sec: 0, tv_nsec: 5_000_000)
                _ = unsafe nanosleep(&ts, nil)
            }
        }
    }

    /// Where checks run: takes the work and returns whether it was accepted.
    public typealias Launcher = @Sendable (@escaping @Sendable () -> Void) -> Bool

    private struct Settings {
        var launch: Launcher?
        var options = CheckOptions()
        var wait: Duration = .seconds(1)
    }
    private let settings = Mutex(Settings())
    private let jobs = Mutex<[String: Job]>([:])
    /// Bumped whenever a job starts, finishes or is forgotten: documents that show verdicts of several
    /// images at once (the listing) are current only while it stays the same.
    private let changes = Atomic<UInt64>(0)

    /// The count of changes to any image's check state (see `changes`).
    public var changeCount: UInt64 { changes.load(ordering: .acquiring) }

    /// A runner that checks inline with the default options.
    public init() {}

    /// Sets where checks run, their options (memory limit, pacing) and how long a request waits for
    /// one before answering `202 Accepted`.
    public func configure(launch: Launcher?, options: CheckOptions, wait: Duration = .seconds(1)) {
        settings.withLock { $0 = Settings(launch: launch, options: options, wait: wait) }
    }

    /// How long a request waits for a running check before answering that it is running.
    public var wait: Duration { settings.withLock { $0.wait } }

    /// The check of `entry`'s version of image `name`: the finished or running one, or a new one
    /// started now. `writerPresent` is what a lock probe said when the request came.
    ///
    /// Returns nil when the check could not be started (the pool refused it: overloaded).
    ///
    /// - Parameters:
    ///   - options: the check's options instead of the configured ones (the scrubber's pacing).
    ///   - inline: run on the calling thread instead of the launcher's (the scrubber's own thread).
    ///   - again: check again even when this version has a finished check (a running one is still joined).
    public func job(
        for entry: ImageEntry, named name: String, writerPresent: Bool?, options extra: CheckOptions? = nil,
        inline: Bool = false, again: Bool = false
    ) -> Job? {
        let (job, isNew) = jobs.withLock { jobs -> (Job, Bool) in
            if let j = jobs[name], j.file.sameVersion(as: entry.file), !again || j.outcome == nil { return (j, false) }
            let j = Job(file: entry.file)
            jobs[name] = j
            return (j, true)
        }
        if isNew { changes.add(1, ordering: .acquiringAndReleasing) }
        guard isNew else { return job }
        let (launch, base) = settings.withLock { ($0.launch, $0.options) }
        var configured = extra ?? base
        let outer = configured.progress
        // A strong capture: the closure lives as long as the check, which the job does not hold (no cycle).
        configured.progress = { done, total in
            job.report(done: done, total: total)
            outer?(done, total)
        }
        let options = configured
        let work: @Sendable () -> Void = {
            let report = entry.watchingFailures { ImageCheck.run(entry.image, options: options) }
            job.finish(report, writerPresent: writerPresent)
            self.changes.add(1, ordering: .acquiringAndReleasing)
        }
        if let launch, !inline {
            if !launch(work) {
                jobs.withLock { if $0[name] === job { $0[name] = nil } }
                changes.add(1, ordering: .acquiringAndReleasing)
                return nil
            }
        } else {
            work()
        }
        return job
    }

    /// The last finished check of image `name`, whatever version it was for (nil: never checked).
    public func lastOutcome(named name: String) -> CheckOutcome? {
        jobs.withLock { $0[name] }?.outcome
    }

    /// The job of `entry`'s file version of image `name`, if one was started.
    public func job(of entry: ImageEntry, named name: String) -> Job? {
        guard let j = jobs.withLock({ $0[name] }), j.file.sameVersion(as: entry.file) else { return nil }
        return j
    }

    /// The job of image `name`, running or finished, whatever version it is for.
    public func currentJob(named name: String) -> Job? {
        jobs.withLock { $0[name] }
    }

    /// Forgets images no longer in the directory (keeps the verdicts of `names`).
    public func retain(_ names: Set<String>) {
        let forgot = jobs.withLock { jobs -> Bool in
            let before = jobs.count
            jobs = jobs.filter { names.contains($0.key) }
            return jobs.count != before
        }
        if forgot { changes.add(1, ordering: .acquiringAndReleasing) }
    }

    /// Wall-clock time now.
    static func wallClock() -> (seconds: Int64, nanoseconds: Int64) {
        var ts = timespec()
        _ = unsafe clock_gettime(CLOCK_REALTIME, &ts)
        return (Int64(ts.tv_sec), Int64(ts.tv_nsec))
    }
}
