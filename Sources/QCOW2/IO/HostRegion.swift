/// What the file system says about the bytes of a file at one offset: data, or a hole, up to `end`.
///
/// The answer `SEEK_DATA`/`SEEK_HOLE` give, as QEMU's file-posix driver reads it
/// (`find_allocation`). Sources without a descriptor hold data everywhere.
public enum HostRegion: Sendable, Hashable {
    /// Data from the offset asked up to `end` (exclusive).
    case data(end: UInt64)
    /// A hole from the offset asked up to `end`, where data starts again.
    case hole(end: UInt64)
    /// A hole from the offset asked to the end of the file (`ENXIO`: no data after it).
    case trailingHole
    /// The file system cannot tell (an error, or a file that changed while asked): treat as data.
    case unknown
}
