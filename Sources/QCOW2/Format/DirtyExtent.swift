/// A run of guest bytes that a bitmap marks all dirty or all clean (ovirt-imageio's extent shape).
public struct DirtyExtent: Sendable, Hashable {
    /// First guest byte.
    public var start: UInt64
    /// Length in bytes.
    public var length: UInt64
    /// Whether the bitmap marks these bytes as changed.
    public var dirty: Bool

    /// Creates an extent.
    public init(start: UInt64, length: UInt64, dirty: Bool) {
        self.start = start
        self.length = length
        self.dirty = dirty
    }
}
