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
}
