/// How the API keeps file work off the threads that answer HTTP: where it runs, and how long it may take.
///
/// With a policy (the daemon), every answer that reads a file runs on ``executor`` and is answered
/// within ``timeout`` whatever the storage does: past it the request gets `504 io-timeout`; an image
/// with an operation running longer than ``stallAfter`` gets `503 image-stalled` at once, so a stalled
/// image costs its own answers only. Without one (tests, the CLI) the API reads inline.
public struct IOPolicy: Sendable {
    /// Where file work runs: reads, parses, one image's documents.
    public var executor: IOExecutor
    /// Where answers over many images (the listing, `/metrics`) run: they hand each image to
    /// ``executor`` and wait for them, so they must not wait on a worker of the pool they feed.
    public var coordinator: IOExecutor
    /// The deadline of each answer that reads a file.
    public var timeout: Duration
    /// After how long a running operation makes its image stalled.
    public var stallAfter: Duration
    /// The one timer behind every answer's deadline.
    public var deadlines: Deadlines

    /// Creates a policy; `stallAfter` defaults to the smaller of one second and half the timeout.
    public init(executor: IOExecutor, coordinator: IOExecutor? = nil, timeout: Duration, stallAfter: Duration? = nil) {
        self.executor = executor
        self.coordinator = coordinator ?? IOExecutor(threads: 4, maxThreads: 16, stuckAfter: timeout)
        self.timeout = timeout
        self.stallAfter = stallAfter ?? min(.seconds(1), timeout / 2)
        self.deadlines = Deadlines()
    }

    /// The part of ``timeout`` a listing waits for its images, so it answers (marking the slow ones
    /// `stalled`) before its own deadline.
    public var listingWait: Duration { timeout / 2 }
}
