/// A bitmap's exact dirty byte count, or the reason it is not known.
public struct DirtyCount: Sendable, Hashable {
    /// Exact dirty bytes (guest bytes whose bit is set, clipped to the disk), nil when not counted.
    public var bytes: UInt64?
    /// Why `bytes` is nil.
    public var reason: String?

    /// Creates a count.
    public init(bytes: UInt64?, reason: String?) {
        self.bytes = bytes
        self.reason = reason
    }
}
