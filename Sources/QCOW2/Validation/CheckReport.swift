/// What a read-only refcount and cluster check found: `qemu-img check`'s figures and the problems behind them.
///
/// The figures are those of `qemu-img check --output=json` (QEMU 7.2, `qcow2_co_check_locked`) on the
/// same bytes: ``corruptions`` and ``leaks`` count clusters and entries the way QEMU does (a stale
/// refcount on a data cluster with the copied flag counts twice), ``checkErrors`` counts what could not
/// be read. Nothing is ever repaired.
public struct CheckReport: Sendable, Hashable {
    /// Internal errors: refcounts or tables that could not be read (`check-errors`).
    public var checkErrors: UInt64 = 0
    /// Corruptions: references without a refcount, bad entries, wrong copied flags (`corruptions`).
    public var corruptions: UInt64 = 0
    /// Leaked clusters: a refcount above the references found (`leaks`).
    public var leaks: UInt64 = 0
    /// Always 0: the check never repairs (`corruptions-fixed`).
    public var corruptionsFixed: UInt64 { 0 }
    /// Always 0: the check never repairs (`leaks-fixed`).
    public var leaksFixed: UInt64 { 0 }
    /// One past the highest cluster with a stored or found refcount, in bytes (`image-end-offset`).
    public var imageEndOffset: UInt64 = 0
    /// Guest clusters of the virtual disk (`total-clusters`).
    public var totalClusters: UInt64 = 0
    /// Active L2 entries that are allocated, compressed or preallocated zero (`allocated-clusters`).
    public var allocatedClusters: UInt64 = 0
    /// Allocated entries that do not follow the previous one in the file (`fragmented-clusters`).
    public var fragmentedClusters: UInt64 = 0
    /// Compressed active L2 entries (`compressed-clusters`).
    public var compressedClusters: UInt64 = 0

    /// The problems found, in the order found, at most ``CheckOptions/maxProblems``.
    public var problems: [Finding] = []
    /// Problems found beyond those kept in ``problems``.
    public var problemsOmitted: UInt64 = 0
    /// How many problems of each rule code were found (kept or not).
    public var problemCounts: [String: UInt64] = [:]

    /// Why the check stopped before the end, `nil` when it ran to completion. `qemu-img check` prints
    /// no result at all in these cases (it fails with `Check failed: ...`); the figures here are what was
    /// counted up to that point.
    public var incomplete: String?
    /// Why `qemu-img` would refuse to open the image for a check, when it would (the check still runs).
    public var qemuRefuses: [String] = []
    /// Metadata bytes read.
    public var bytesRead: UInt64 = 0

    /// Creates an empty report.
    public init() {}

    /// The result in one word: `corrupt` (corruptions), `error` (internal errors or an unfinished
    /// check), `leaks` (leaks only) or `clean`.
    public var verdict: String {
        if corruptions > 0 { return "corrupt" }
        if checkErrors > 0 || incomplete != nil { return "error" }
        if leaks > 0 { return "leaks" }
        return "clean"
    }

    /// `qemu-img check`'s exit status for these figures: 1 check errors, 2 corruptions, 3 leaks only, 0 clean.
    public var exitStatus: Int32 {
        if checkErrors > 0 || incomplete != nil { return 1 }
        if corruptions > 0 { return 2 }
        if leaks > 0 { return 3 }
        return 0
    }
}
