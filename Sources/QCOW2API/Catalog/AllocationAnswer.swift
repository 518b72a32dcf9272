public import QCOW2

/// The allocation totals of one chain version, or why they are not known.
public struct AllocationAnswer: Sendable {
    /// L2 entries one walk may read: 32M entries (256 MiB of L2 tables, a 2 TiB disk of 64 KiB clusters).
    public static let l2Budget: UInt64 = 1 << 25

    /// The totals; nil past the budget or after a failed read.
    public var totals: AllocationTotals?
    /// Why ``totals`` is nil.
    public var reason: String?
    /// A read failed: the answer is not kept.
    var failed: Bool
}
