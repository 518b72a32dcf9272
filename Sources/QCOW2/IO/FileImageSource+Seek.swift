#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension FileImageSource {
    /// Asks `lseek(fd, offset, SEEK_SET)` and returns `strerror(errno)` when it fails.
    ///
    /// Only the descriptor's file position moves: every read of this source is a `pread` at an explicit
    /// offset, so the position is never used, and nothing is written.
    public func seekFailure(at offset: UInt64) -> String? {
        guard offset <= UInt64(Int64.max) else { return "offset past 2^63 - 1" }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { return Self.describe(errno) }
        return nil
    }

    /// Linux's `SEEK_DATA` and `SEEK_HOLE` (GNU extensions the Glibc module does not export).
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// `SEEK_DATA`, then `SEEK_HOLE`, at `offset`, read as QEMU's `find_allocation` reads them.
    public func region(at offset: UInt64) -> HostRegion {
        guard offset <= UInt64(Int64.max) else { return .unknown }
        let at = off_t(offset)
        let data = lseek(fd, at, Self.seekData)
        if data < 0 { return errno == ENXIO ? .trailingHole : .unknown }
        if data < at { return .unknown }
        if data > at { return .hole(end: UInt64(data)) }
        let hole = lseek(fd, at, Self.seekHole)
        if hole <= at { return .unknown }
        return .data(end: UInt64(hole))
    }
}
