import QCOW2
import Synchronization

/// Wraps a source and records every read: how many, how many bytes, the largest single read.
final class CountingImageSource: ImageSource {
    let base: any ImageSource
    private let stats = Mutex<(reads: Int, bytes: UInt64, largest: Int)>((0, 0, 0))

    init(_ base: any ImageSource) {
        self.base = base
    }

    var size: UInt64 { base.size }

    func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8] {
        stats.withLock {
            $0.reads += 1
            $0.bytes += UInt64(count)
            $0.largest = max($0.largest, count)
        }
        return try base.read(at: offset, count: count)
    }

    /// Reads and bytes so far.
    var totals: (reads: Int, bytes: UInt64, largest: Int) { stats.withLock { $0 } }

    /// Forgets what was counted.
    func reset() { stats.withLock { $0 = (0, 0, 0) } }
}
