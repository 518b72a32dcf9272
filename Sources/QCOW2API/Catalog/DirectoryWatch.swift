import CSystemShim
import Glibc
import Synchronization

/// Changes to the entries of the images directory, from inotify: a stamp per name that changes with
/// every event about it, so a cached parse can be trusted without a system call on the file.
///
/// The kernel queues an inotify event inside the syscall that changed the file (a `write`, a
/// `truncate`, a `rename` into the directory, a `chmod`), before that syscall returns; ``stamp(of:)``
/// first reads every queued event (one non-blocking `read` of the inotify descriptor, which never
/// waits on storage). So a stamp read after a change always differs from one read before it, and a
/// parse validated under the old stamp is not served again. The watch covers the directory's own
/// entries, not subdirectories. It is made only on local filesystems: inotify sees nothing of what
/// another host does to an NFS, CIFS, Ceph or FUSE file, so there ``ImageCatalog`` revalidates with
/// `fstat` on every request as before.
final class DirectoryWatch: Sendable {
    /// What a name's stamp is made of: the watch's epoch (bumped when events may have been lost) and
    /// the events seen for the name.
    struct Stamp: Sendable, Hashable {
        var epoch: UInt64
        var events: UInt64
    }

    private struct State {
        var epoch: UInt64 = 1
        var events: [String: UInt64] = [:]
        /// Events about any name since the epoch began.
        var total: UInt64 = 0
        /// Batches (``stamp(of:batch:)``) whose requests already saw a drain made while they were served.
        var drainedBatches = [UInt64](repeating: 0, count: 16)
        var nextBatchSlot = 0
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
    }

    /// Names with their own counter at most; past it the counters start again under a new epoch.
    static let maxNames = 65_536

    private let fd: Int32
    private let state = Mutex(State())

    /// Filesystem magic numbers (statfs `f_type`) where other hosts or a userspace server change files
    /// behind inotify's back: NFS, SMB/CIFS, Ceph, FUSE, 9p, AFS, GFS2, OCFS2, Lustre, GPFS.
    static let remoteFilesystems: Set<Int> = [
        0x6969, 0xFF53_4D42, 0xFE53_4D42, 0x517B, 0x00C3_6400, 0x6573_5546, 0x0102_1997, 0x5346_414F,
        0x0116_1970, 0x7461_636F, 0x0BD0_0BD0, 0x4750_4653,
    ]

    /// A watch of the directory open as `dirfd`, or nil where it cannot be trusted or made (a remote or
    /// FUSE filesystem, no inotify, the per-user watch limit reached).
    init?(dirfd: Int32) {
        let type = css_filesystem_type(dirfd)
        guard type >= 0, !Self.remoteFilesystems.contains(type) else { return nil }
        // The same directory as the descriptor, whatever its path became since.
        let fd = css_watch_directory(dirfd)
        guard fd >= 0 else { return nil }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// The stamp of `name` now, after every event queued so far was read.
    ///
    /// With `batch` (a server's event-loop pass, see `HotRequest.batch`), the queue is read only once
    /// per batch: a request of a pass was sent before the pass began serving (unless pipelined behind
    /// another on its connection), so a write that completed before its client sent it was queued
    /// before the first drain made while serving the pass.
    func stamp(of name: String, batch: UInt64? = nil) -> Stamp {
        state.withLock { s in
            drainOnce(&s, batch: batch)
            return Stamp(epoch: s.epoch, events: s.events[name] ?? 0)
        }
    }

    /// The stamp of the whole directory now: it changes with every event about any name. `batch` as
    /// for ``stamp(of:batch:)``.
    func stamp(batch: UInt64? = nil) -> Stamp {
        state.withLock { s in
            drainOnce(&s, batch: batch)
            return Stamp(epoch: s.epoch, events: s.total)
        }
    }

    /// Drains the queue, or, with `batch`, only when no drain was made for that batch yet.
    private func drainOnce(_ s: inout State, batch: UInt64?) {
        guard let batch else { return drain(&s) }
        guard !s.drainedBatches.contains(batch) else { return }
        drain(&s)
        s.drainedBatches[s.nextBatchSlot] = batch
        s.nextBatchSlot = (s.nextBatchSlot + 1) % s.drainedBatches.count
    }

    /// Reads every queued event (never waits) and counts it for its name.
    private func drain(_ s: inout State) {
        while true {
            let n = unsafe s.buffer.withUnsafeMutableBytes { unsafe read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else {
                // EAGAIN: nothing more queued. Any other error: trust nothing cached from now on.
                if n < 0 && errno != EAGAIN && errno != EINTR { s.epoch &+= 1 }
                if n < 0 && errno == EINTR { continue }
                return
            }
            var at = 0
            let header = 16  // wd, mask, cookie, len: four 32-bit fields
            while at + header <= n {
                let mask = UInt32(s.buffer[at + 4]) | UInt32(s.buffer[at + 5]) << 8 | UInt32(s.buffer[at + 6]) << 16
                    | UInt32(s.buffer[at + 7]) << 24
                let len = Int(s.buffer[at + 12]) | Int(s.buffer[at + 13]) << 8 | Int(s.buffer[at + 14]) << 16
                    | Int(s.buffer[at + 15]) << 24
                let nameStart = at + header
                let nameEnd = min(n, nameStart + max(0, len))
                at = nameEnd
                if css_inotify_mask_is_global(mask) != 0 || len == 0 {
                    // Events were lost, or the directory itself changed: nothing cached is trusted.
                    s.epoch &+= 1
                    continue
                }
                var end = nameStart
                while end < nameEnd && s.buffer[end] != 0 { end += 1 }
                let name = String(decoding: s.buffer[nameStart..<end], as: UTF8.self)
                if s.events.count >= Self.maxNames && s.events[name] == nil {
                    s.events.removeAll(keepingCapacity: true)
                    s.epoch &+= 1
                }
                s.events[name, default: 0] &+= 1
                s.total &+= 1
            }
        }
    }
}
