public import QCOW2

/// A finished check: the report, the file version it is for, and when and how it ran.
public struct CheckOutcome: Sendable {
    /// What the check found.
    public var report: CheckReport
    /// The file version checked.
    public var file: FileInfo
    /// When the check finished, in seconds since the Epoch.
    public var checkedAt: Int64
    /// The nanoseconds of ``checkedAt``.
    public var checkedAtNanoseconds: Int64
    /// How long the check ran.
    public var durationMilliseconds: Int64
    /// Whether a writer held the image when the check was asked for (nil: unknown).
    public var writerPresent: Bool?
    /// When the check finished, on the monotonic clock (for ages).
    public var finished: ContinuousClock.Instant

    /// The verdict: `busy` when a writer held the image (its figures are unreliable), else the report's.
    public var state: String {
        writerPresent == true ? "busy" : report.verdict
    }
}
