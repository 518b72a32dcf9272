/// How a refcount check may spend memory and time, and whom it tells about its progress.
public struct CheckOptions: Sendable {
    /// Bytes of counters the check may allocate (2 per host cluster); an image that needs more is not
    /// checked and the report says so.
    public var memoryLimit: UInt64 = CheckOptions.defaultMemoryLimit
    /// Problems kept in the report (all are counted).
    public var maxProblems: Int = 1000
    /// Called with (bytes read so far, bytes the check expects to read) after each table read.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    /// Called with the bytes of each read before it is made: the scrubber sleeps there to keep its rate.
    public var pace: (@Sendable (UInt64) -> Void)?
    /// Asked before each table read: `true` stops the check (the report is then incomplete).
    public var shouldStop: (@Sendable () -> Bool)?

    /// 256 MiB: enough for a file of 128M clusters (8 TiB with 64 KiB clusters).
    public static let defaultMemoryLimit: UInt64 = 256 << 20

    /// The defaults.
    public init() {}
}
