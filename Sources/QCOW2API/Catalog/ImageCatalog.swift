#if canImport(Glibc)
    import Glibc
#endif
import CSystemShim
public import QCOW2
import Synchronization

/// The configured images directory: safe lookups by name, listing, and a bounded cache of parsed images.
///
/// Every open goes through `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the
/// directory's descriptor (falling back to `O_NOFOLLOW` where the kernel lacks openat2), with
/// `O_RDONLY | O_CLOEXEC | O_NONBLOCK`: no name can reach a file outside the directory, a FIFO
/// cannot block the open, and nothing is ever opened for writing or locked (QEMU's locks are only
/// tested, with `F_OFD_GETLK`: see ``LockState``).
public final class ImageCatalog: Sendable {
    /// Why a lookup failed.
    public enum LookupError: Error, Sendable {
        /// No such image, or the name cannot name a file in the directory.
        case notFound(String)
        /// The file exists but is not readable as qcow2 (open error or parse error).
        case unreadable(QCOW2Error)
    }

    let dirfd: Int32
    /// The directory path as configured (for messages only).
    public let path: String
    /// The directory's canonical path (`realpath`), for matching absolute backing names; nil if unknown.
    let canonicalPath: String?
    private let capacity: Int
    /// One cached parse: the file version it is for, and the single flight computing it.
    private final class Slot: Sendable {
        let file: FileInfo
        let result: Once<Result<ImageEntry, LookupError>>
        /// The directory watch's stamps of the file's name (and of its backing file's, when it has one in
        /// the directory) taken before the lookup that last confirmed this version; nil: not servable
        /// without a lookup (no watch, a symlink or a second link, a backing file elsewhere).
        let validated = Mutex<(own: DirectoryWatch.Stamp, backing: DirectoryWatch.Stamp?)?>(nil)
        init(file: FileInfo) {
            self.file = file
            result = Once()
        }
        init(file: FileInfo, result: Result<ImageEntry, LookupError>) {
            self.file = file
            self.result = Once(value: result)
        }
        /// Whether its entry computed something from a failed read: parse again instead of reusing it.
        var tainted: Bool {
            if case .success(let e)? = result.ifComputed { return e.isTainted }
            return false
        }
    }
    private struct CacheState {
        var entries: [String: Slot] = [:]
        /// When each entry was last used (a tick of ``clock``): O(1) per hit, where a list scan was O(n)
        /// under the lock (1,000 images scraped at once waited on it).
        var uses: [String: UInt64] = [:]
        var clock: UInt64 = 0
        var magic: [String: (FileInfo, Bool)] = [:]
        /// The sorted directory listing and the directory's (mtime, ctime) when it was read.
        var listing: (stamp: [Int], names: [String])?
    }
    private let cache = Mutex(CacheState())
    /// What is being read from each image now (open, fstat and every pread), by name.
    private let activities = Mutex<[String: ReadActivity]>([:])
    let useOpenat2 = Atomic<Bool>(true)
    /// QEMU's metadata-preallocation verdict per layer identity (see ``looksPreallocated(_:)``).
    let preallocation = Mutex<[UInt64: Bool]>([:])
    /// Allocation totals per chain version, each computed once (see ``allocation(of:)``).
    let allocations = Mutex<[UInt64: Once<AllocationAnswer>]>([:])
    /// Checkpoint names not ready per chain version (see ``checkpointsNotReady(of:)``).
    let notReady = Mutex<[UInt64: Once<Int>]>([:])
    /// The files opened below each image the last time its chain was followed (backing layers and data
    /// files), by image name: a stall on one of them stalls the image's chain answers (``stall(named:after:chain:)``).
    let chainFiles = Mutex<[String: [String]]>([:])
    /// The refcount checks of the images and their last verdicts.
    public let checks = CheckRunner()
    private let hits = Atomic<Int>(0)
    private let misses = Atomic<Int>(0)
    /// inotify on the directory, on local filesystems (see ``freshEntry(named:)``); nil elsewhere.
    let watch: DirectoryWatch?
    private let fresh = Atomic<Int>(0)

    /// Whether answers may come from parsed images without a system call on the file (inotify watches
    /// the directory): false on NFS, CIFS, Ceph, FUSE and the like, and when disabled.
    public var watchesChanges: Bool { watch != nil }

    /// Lookups answered by ``freshEntry(named:)`` since start.
    public var freshHits: Int { fresh.load(ordering: .relaxed) }

    /// Lookups answered from the cache of parsed images, since start (read by the daemon's metrics).
    public var cacheHits: Int { hits.load(ordering: .relaxed) }
    /// Lookups that had to parse the file (new, changed or evicted; parse failures included), since start.
    public var cacheMisses: Int { misses.load(ordering: .relaxed) }

    /// Opens the directory.
    ///
    /// - Parameters:
    ///   - path: the images directory.
    ///   - cacheCapacity: parsed images kept (least recently used ones are dropped).
    /// - Throws: ``QCOW2Error`` of kind `io` naming the errno when the directory cannot be opened.
    ///   - watchChanges: watch the directory with inotify, so that cached parses are served without a
    ///     system call on the file (only on local filesystems; never for symlinks or hard-linked files).
    public init(path: String, cacheCapacity: Int = 256, watchChanges: Bool = true) throws(QCOW2Error) {
        let fd = unsafe css_open_directory(path)
        guard fd >= 0 else {
            let e = errno
            throw QCOW2Error(.io, structure: "images_directory", value: path, message: unsafe "cannot open directory: \(String(cString: strerror(e)))")
        }
        self.dirfd = fd
        self.path = path
        watch = watchChanges ? DirectoryWatch(dirfd: fd) : nil
        if let r = unsafe realpath(path, nil) {
            canonicalPath = unsafe String(cString: r)
            unsafe free(r)
        } else {
            canonicalPath = nil
        }
        self.capacity = max(1, min(cacheCapacity, Self.descriptorBudget()))
    }

    deinit {
        close(dirfd)
    }

    /// Parsed images that may stay open at once under the process's descriptor limit: a quarter of
    /// `RLIMIT_NOFILE` after 32 kept for sockets and the rest, at least 4 (each cached image holds one
    /// descriptor; connections, lookups in progress and the listing need the others).
    static func descriptorBudget() -> Int {
        var limit = rlimit()
        guard unsafe getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else {
            return Int.max
        }
        let soft = Int(clamping: limit.rlim_cur)
        return max(4, (soft - 32) / 4)
    }

    /// Whether `name` is a single path component that may name a file here.
    public static func isValidName(_ name: [UInt8]) -> Bool {
        !name.isEmpty && name.count <= 255 && !name.contains(0x2f) && !name.contains(0) && name != [0x2e]
            && name != [0x2e, 0x2e]
    }

    /// Opens `name` safely beneath the directory; returns the descriptor and its stat.
    private func openBeneath(_ name: String) throws(LookupError) -> (Int32, FileInfo) {
        guard ImageCatalog.isValidName(Array(name.utf8)) else { throw .notFound(name) }
        var fd: Int32 = -1
        if useOpenat2.load(ordering: .relaxed) {
            fd = unsafe css_openat2_beneath(dirfd, name)
            if fd < 0 && (errno == ENOSYS || errno == EPERM) {
                // No openat2 (old kernel, or a seccomp filter): fall back for good.
                useOpenat2.store(false, ordering: .relaxed)
            }
        }
        if !useOpenat2.load(ordering: .relaxed) {
            fd = unsafe css_openat_nofollow(dirfd, name)
        }
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR || e == EXDEV || e == ELOOP || e == EINVAL || e == ENAMETOOLONG {
                throw .notFound(name)
            }
            if e == EMFILE || e == ENFILE {
                // The daemon's own limit, not the image's fault: a 503 to retry, nothing cached.
                throw .unreadable(
                    QCOW2Error(
                        .io, structure: "file", value: FileImageSource.errnoName(e),
                        message: "cannot open now: the daemon has too many files open (\(FileImageSource.errnoName(e))); retry"))
            }
            throw .unreadable(QCOW2Error(.io, structure: "file", value: name, message: unsafe "cannot open: \(String(cString: strerror(e)))"))
        }
        var st = Glibc.stat()
        guard unsafe fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw .notFound(name)
        }
        let info = FileInfo(
            name: name, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: UInt64(clamping: st.st_size),
            allocatedBytes: UInt64(clamping: st.st_blocks) &* 512, mtimeSec: Int64(st.st_mtim.tv_sec),
            mtimeNsec: Int64(st.st_mtim.tv_nsec), ctimeSec: Int64(st.st_ctim.tv_sec),
            ctimeNsec: Int64(st.st_ctim.tv_nsec))
        return (fd, info)
    }

    /// The record of reads in progress on the image called `name`.
    public func activity(named name: String) -> ReadActivity {
        activities.withLock { a in
            if let r = a[name] { return r }
            // Names come from requests and the listing; past this many, idle records are dropped.
            if a.count >= 65_536 { a = a.filter { $0.value.pending != nil } }
            let r = ReadActivity()
            a[name] = r
            return r
        }
    }

    /// The oldest operation on `name` still running after `threshold`: the image is stalled. Nil when none.
    public func stall(named name: String, after threshold: Duration) -> ReadActivity.Pending? {
        guard let p = activities.withLock({ $0[name] })?.pending, ContinuousClock.now - p.since >= threshold else {
            return nil
        }
        return p
    }

    /// `name`, then, when `chain`, the files last opened below it (its backing layers and data files).
    private func watchedFiles(_ name: String, chain: Bool) -> [String] {
        chain ? [name] + chainFiles.withLock { $0[name] ?? [] } : [name]
    }

    /// The oldest operation still running after `threshold` on `name` or, when `chain`, on a file last
    /// opened below it, with the name of the file it is on. Nil when none.
    public func stall(named name: String, after threshold: Duration, chain: Bool) -> (file: String, pending: ReadActivity.Pending)? {
        for file in watchedFiles(name, chain: chain) {
            if let p = stall(named: file, after: threshold) { return (file, p) }
        }
        return nil
    }

    /// The oldest operation in progress on `name` or, when `chain`, on a file last opened below it,
    /// with the name of the file it is on. Nil when nothing is being read.
    public func pendingRead(named name: String, chain: Bool) -> (file: String, pending: ReadActivity.Pending)? {
        let found = watchedFiles(name, chain: chain).compactMap { f in
            activities.withLock { $0[f] }?.pending.map { (file: f, pending: $0) }
        }
        return found.min { $0.pending.since < $1.pending.since }
    }

    /// Starts a new record of the files opened below `image` (its chain is being followed again).
    func beginChainFiles(of image: String) {
        chainFiles.withLock { c in
            // Names come from image files; past this many images, the records start over.
            if c.count >= 65_536 && c[image] == nil { c = [:] }
            c[image] = []
        }
    }

    /// Records that `file` was opened below `image` while following its chain.
    func noteChainFile(_ file: String, below image: String) {
        chainFiles.withLock { c in
            guard var list = c[image], !list.contains(file), list.count <= 2 * ImageChain.depthLimit + 2 else { return }
            list.append(file)
            c[image] = list
        }
    }

    /// The parsed image called `name`, from the cache when the file has not changed.
    ///
    /// - Throws: ``LookupError/notFound(_:)`` or ``LookupError/unreadable(_:)``.
    public func image(named name: String) throws(LookupError) -> ImageEntry {
        try lookup(named: name, probeLocks: false).entry
    }

    /// The parsed image called `name` and, when `probeLocks`, QEMU's lock state on it.
    ///
    /// The locks are probed on the descriptor this lookup opens (`F_OFD_GETLK`, no lock taken)
    /// on every call, never cached: a writer can appear or leave without the file changing.
    /// A miss parses under a single flight per name and file version: concurrent requests for a
    /// changed file wait for one parse. A parse error is kept for that version (the file is not
    /// parsed again until it changes), an I/O error is not.
    ///
    /// - Throws: ``LookupError/notFound(_:)`` or ``LookupError/unreadable(_:)``.
    public func lookup(named name: String, probeLocks: Bool) throws(LookupError) -> (entry: ImageEntry, locks: LockState?) {
        // Taken before the file is opened: any change after this point changes the stamp.
        let before = watch?.stamp(of: name)
        let activity = activity(named: name)
        let token = activity.begin(nil)
        let opened = Result { () throws(LookupError) in try openBeneath(name) }
        activity.end(token)
        let (fd, info) = try opened.get()
        let soleName = unsafe before != nil && css_is_sole_name(dirfd, name, info.inode) != 0
        let locks = probeLocks ? LockState.probe(fd: fd) : nil
        let slot = cache.withLock { state -> Slot in
            state.clock &+= 1
            if let s = state.entries[name], s.file.sameVersion(as: info), !(s.tainted) {
                state.uses[name] = state.clock
                return s
            }
            let s = Slot(file: info)
            state.entries[name] = s
            state.uses[name] = state.clock
            if state.entries.count > capacity {
                // Drop the least recently used eighth at once: the sort is paid once per capacity/8 misses.
                let excess = state.entries.count - capacity + max(1, capacity / 8)
                for (old, _) in state.uses.sorted(by: { $0.value < $1.value }).prefix(excess) where old != name {
                    state.entries[old] = nil
                    state.uses[old] = nil
                }
            }
            return s
        }
        var parsed = false
        let result = slot.result.value {
            parsed = true
            do throws(QCOW2Error) {
                let source = try FileImageSource(fd: fd, ownsDescriptor: true, activity: activity)
                let image = try QCOW2Image(source: source)
                return .success(ImageEntry(file: info, image: image, backing: image.backingFile.map(backingCheck)))
            } catch {
                return .failure(.unreadable(error))
            }
        }
        if parsed {
            misses.add(1, ordering: .relaxed)
        } else {
            close(fd)
            hits.add(1, ordering: .relaxed)
        }
        switch result {
        case .success(let entry):
            guard let stored = entry.image.backingFile else {
                slot.validated.withLock { $0 = soleName ? before.map { ($0, nil) } : nil }
                return (entry, locks)
            }
            // A backing file in the directory itself is watched too; one elsewhere is looked up each time.
            let backingName = entry.backing?.lookedFor.flatMap { $0.contains("/") ? nil : $0 }
            let backingBefore = soleName ? backingName.flatMap { watch?.stamp(of: $0) } : nil
            let check = backingCheck(stored)
            if check == entry.backing {
                slot.validated.withLock { v in
                    v = soleName && (entry.backing?.lookedFor == nil || backingBefore != nil) ? before.map { ($0, backingBefore) } : nil
                }
                return (entry, locks)
            }
            // The backing file appeared, vanished or changed since this entry was made: the same parse
            // gets a new entry (new findings, new ETags), and the cache keeps it.
            let renewed = ImageEntry(file: entry.file, image: entry.image, backing: check)
            cache.withLock { state in
                if state.entries[name] === slot {
                    let s = Slot(file: info, result: .success(renewed))
                    state.entries[name] = s
                }
            }
            return (renewed, locks)
        case .failure(let error):
            if case .unreadable(let e) = error, e.kind == .io {
                // Nothing is cached from a failed read: the next request tries again.
                cache.withLock { state in
                    if state.entries[name] === slot {
                        state.entries[name] = nil
                        state.uses[name] = nil
                    }
                }
            }
            throw error
        }
    }

    /// The parsed image called `name` when it is known unchanged without touching the file: parsed by an
    /// earlier lookup, and no inotify event about its name (or its backing file's) since. Nil otherwise
    /// (no watch, not cached, changed, tainted by a failed read, a symlink or second link): then use
    /// ``lookup(named:probeLocks:)``. Never blocks on storage: one non-blocking read of the inotify queue.
    public func freshEntry(named name: String, batch: UInt64? = nil) -> ImageEntry? {
        guard let watch, let slot = cache.withLock({ $0.entries[name] }), case .success(let entry)? = slot.result.ifComputed,
            !entry.isTainted, let v = slot.validated.withLock({ $0 })
        else { return nil }
        guard watch.stamp(of: name, batch: batch) == v.own else { return nil }
        if let b = v.backing {
            guard let backingName = entry.backing?.lookedFor, watch.stamp(of: backingName, batch: batch) == b else { return nil }
        } else if entry.backing?.lookedFor != nil {
            return nil
        }
        fresh.add(1, ordering: .relaxed)
        return entry
    }

    /// Whether inotify saw the file `entry` was parsed from change (a write, a truncation, a rename over
    /// it) since it was looked up, or the catalog holds another version of it now. False where no
    /// watch exists (there the caller has only the file's size to go by).
    public func hasChanged(since entry: ImageEntry) -> Bool {
        guard let watch else { return false }
        let name = entry.file.name
        guard let slot = cache.withLock({ $0.entries[name] }), case .success(let cached)? = slot.result.ifComputed, cached === entry,
            let v = slot.validated.withLock({ $0 })
        else { return true }
        return watch.stamp(of: name) != v.own
    }

    /// Looks for the backing file `stored` beneath the directory, as QEMU would next to the overlay.
    ///
    /// A relative name is opened beneath the directory (symlinks that stay inside are followed); an
    /// absolute name only when it starts with the directory's canonical path. Protocol and `json:`
    /// names, names that are not UTF-8, and names that leave the directory are not followed.
    public func backingCheck(_ stored: ByteString) -> BackingFileCheck {
        func notFollowed(_ why: String) -> BackingFileCheck {
            BackingFileCheck(stored: stored, lookedFor: nil, state: .notFollowed(why), stamp: 1)
        }
        // QEMU uses the name up to its first NUL (H21 reports one).
        guard let text = stored.beforeNUL.utf8, !text.isEmpty else {
            return notFollowed("the name is empty or not UTF-8 text")
        }
        if text.hasPrefix("json:") || text.contains("://") {
            return notFollowed("it is a protocol or JSON description, not a file name")
        }
        var relative = Substring(text)
        if text.hasPrefix("/") {
            // The directory as configured or as its canonical path; the rest must stay beneath it.
            let roots = [canonicalPath, path].compactMap { $0 }.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
            guard let root = roots.first(where: { text.hasPrefix($0) }) else {
                return notFollowed("the absolute path is outside the images directory \(path)")
            }
            relative = text.dropFirst(root.count)
        }
        let name = String(relative)
        let shown = (path.hasSuffix("/") ? path : path + "/") + name
        var fd: Int32 = -1
        if useOpenat2.load(ordering: .relaxed) {
            fd = unsafe css_openat2_beneath(dirfd, name)
        } else if name.contains("/") {
            return notFollowed("it names a subdirectory, which this kernel cannot open safely (no openat2)")
        } else {
            fd = unsafe css_openat_nofollow(dirfd, name)
        }
        guard fd >= 0 else {
            let e = errno
            switch e {
            case ENOENT, ENOTDIR:
                return BackingFileCheck(stored: stored, lookedFor: shown, state: .missing, stamp: 2)
            case EXDEV, ELOOP:
                return notFollowed("it leads outside the images directory \(path)")
            default:
                let why = unsafe String(cString: strerror(e))
                return BackingFileCheck(stored: stored, lookedFor: shown, state: .failed(why), stamp: 3)
            }
        }
        defer { close(fd) }
        var st = Glibc.stat()
        guard unsafe fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            return BackingFileCheck(stored: stored, lookedFor: shown, state: .missing, stamp: 2)
        }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in [UInt64(st.st_dev), UInt64(st.st_ino), UInt64(clamping: st.st_size), UInt64(bitPattern: Int64(st.st_mtim.tv_sec)),
            UInt64(bitPattern: Int64(st.st_mtim.tv_nsec)), UInt64(bitPattern: Int64(st.st_ctim.tv_sec)), UInt64(bitPattern: Int64(st.st_ctim.tv_nsec))] {
            h = (h ^ v) &* 0x100_0000_01b3
        }
        return BackingFileCheck(stored: stored, lookedFor: shown, state: .present, stamp: h | 4)
    }

    /// The file's identity without parsing, for conditional requests on unreadable files.
    public func fileInfo(named name: String) throws(LookupError) -> FileInfo {
        let (fd, info) = try openBeneath(name)
        close(fd)
        return info
    }

    /// Names of the directory entries, sorted by their bytes (not yet filtered).
    ///
    /// The sorted listing is kept until the directory itself changes (its mtime or ctime: an entry
    /// added, removed or renamed), so paging through 10,000 images does not re-read and re-sort them.
    ///
    /// - Throws: ``QCOW2Error`` of kind `io` when the directory cannot be read now (no descriptor left,
    ///   or the storage fails): never an empty listing that is not true.
    /// The stamp of the whole directory (any name created, changed, renamed or removed changes it); nil
    /// where inotify does not watch it. Never blocks on storage.
    func directoryStamp(batch: UInt64? = nil) -> DirectoryWatch.Stamp? {
        watch?.stamp(batch: batch)
    }

    public func names() throws(QCOW2Error) -> [String] {
        var st = Glibc.stat()
        let stamp: [Int]? =
            unsafe fstat(dirfd, &st) == 0
            ? [st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, Int(st.st_size)] : nil
        if let stamp, let cached = cache.withLock({ $0.listing }), cached.stamp == stamp { return cached.names }
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = unsafe fdopendir(dup) else {
            let e = errno
            if dup >= 0 { close(dup) }
            throw QCOW2Error(
                .io, structure: "images_directory", value: FileImageSource.errnoName(e),
                message: "cannot read the images directory now: \(FileImageSource.errnoName(e)); retry")
        }
        defer { unsafe closedir(dir) }
        unsafe rewinddir(dir)
        var out: [(bytes: [UInt8], name: String)] = []
        while let ent = unsafe readdir(dir) {
            let name = unsafe withUnsafeBytes(of: ent.pointee.d_name) { raw -> [UInt8] in
                unsafe Array(raw.prefix { $0 != 0 })
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            // Names that are not valid UTF-8 cannot be asked for over HTTP by their text; skip them.
            guard let s = ByteString(name).utf8 else { continue }
            out.append((name, s))
        }
        let sorted = out.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }.map(\.name)
        if let stamp { cache.withLock { $0.listing = (stamp, sorted) } }
        return sorted
    }

    /// Whether `name` is an image: a regular file whose name ends in `.qcow2` (any case), or whose
    /// first bytes are the qcow2 magic `QFI\xfb` (read once per file version).
    ///
    /// Damaged images (empty, zeroed header, a raw file named `.qcow2`) are images too: they are
    /// listed with `status: "unreadable"`, so a dashboard shows the image that needs attention most.
    public func isImage(_ name: String) -> Bool {
        // Parsed and unchanged since (inotify): an image, known without opening it again.
        if ImageCatalog.hasImageSuffix(name), freshEntry(named: name) != nil { return true }
        guard let (fd, info) = try? openBeneath(name) else { return false }
        defer { close(fd) }
        if ImageCatalog.hasImageSuffix(name) { return true }
        if let cached = cache.withLock({ $0.magic[name] }), cached.0.sameVersion(as: info) { return cached.1 }
        var magic = [UInt8](repeating: 0, count: 4)
        let activity = activity(named: name)
        let token = activity.begin(0)
        let n = unsafe magic.withUnsafeMutableBytes { unsafe pread(fd, $0.baseAddress, 4, 0) }
        activity.end(token)
        let ok = n == 4 && magic == [0x51, 0x46, 0x49, 0xfb]
        cache.withLock { state in
            if state.magic.count > 100_000 { state.magic.removeAll() }
            state.magic[name] = (info, ok)
        }
        return ok
    }

    /// Whether a name ends in `.qcow2`, compared without case.
    public static func hasImageSuffix(_ name: String) -> Bool {
        let suffix = Array(".qcow2".utf8)
        let bytes = Array(name.utf8)
        guard bytes.count > suffix.count else { return false }
        return zip(bytes.suffix(suffix.count), suffix).allSatisfy { a, b in
            (a >= 0x41 && a <= 0x5a ? a + 0x20 : a) == b
        }
    }
}
