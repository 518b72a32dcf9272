import Synchronization

/// A source that serves small reads from a few cached windows of the one it wraps, for passes that read
/// many small structures close together.
///
/// Checking every bitmap of an image reads one small table, one refcount table entry and one refcount
/// block entry per bitmap: 196,605 `pread`s of 2 or 8 bytes for QEMU's 65,535 bitmaps, each a round
/// trip on network or FUSE storage. Through this source, a read of at most ``smallRead`` bytes loads
/// the aligned ``window`` around it (clipped to the file) and later small reads in that window cost no
/// I/O; the last ``windows`` windows are kept. Larger reads, and small ones whose window cannot be
/// read, go to the wrapped source as they are, so errors name the same offsets as without it.
public final class ReadAheadSource: ImageSource {
    /// Window size in bytes (a power of two).
    public static let window: UInt64 = 64 * 1024
    /// Windows kept, least recently used dropped first.
    public static let windows = 8
    /// Reads up to this many bytes go through a window.
    public static let smallRead = 4096

    private struct Cached {
        let start: UInt64
        let bytes: [UInt8]
    }

    private let base: any ImageSource
    private let cache = Mutex<[Cached]>([])

    /// Wraps `base`.
    public init(_ base: any ImageSource) {
        self.base = base
    }

    /// The wrapped source's size.
    public var size: UInt64 { base.size }

    /// The wrapped source's allocated bytes.
    public var allocatedBytes: UInt64 { base.allocatedBytes }

    /// The wrapped source's answer.
    public func seekFailure(at offset: UInt64) -> String? { base.seekFailure(at: offset) }

    /// The wrapped source's answer.
    public func region(at offset: UInt64) -> HostRegion { base.region(at: offset) }

    /// `count` bytes at `offset`: from a window when the read is small and its window is readable.
    public func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8] {
        guard count > 0, count <= Self.smallRead, let end = offset +? UInt64(count), end <= size else {
            return try base.read(at: offset, count: count)
        }
        let start = offset & ~(Self.window - 1)
        if let hit = slice(start: start, offset: offset, end: end) { return hit }
        // The read may straddle two windows: load the one it starts in, and serve it if that covers it.
        let length = min(Self.window, size - start)
        guard let bytes = try? base.read(at: start, count: Int(length)) else {
            return try base.read(at: offset, count: count)
        }
        cache.withLock { c in
            c.append(Cached(start: start, bytes: bytes))
            if c.count > Self.windows { c.removeFirst() }
        }
        if end <= start + length { return Array(bytes[Int(offset - start)..<Int(end - start)]) }
        return try base.read(at: offset, count: count)
    }

    /// The bytes `offset..<end` from the cached window at `start`, nil when it is not cached or too short.
    private func slice(start: UInt64, offset: UInt64, end: UInt64) -> [UInt8]? {
        cache.withLock { c in
            guard let i = c.lastIndex(where: { $0.start == start }) else { return nil }
            let w = c[i]
            guard end - start <= UInt64(w.bytes.count) else { return nil }
            if i != c.count - 1 {
                c.remove(at: i)
                c.append(w)
            }
            return Array(w.bytes[Int(offset - start)..<Int(end - start)])
        }
    }
}
