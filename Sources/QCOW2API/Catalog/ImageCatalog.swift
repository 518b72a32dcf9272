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

    /// A parsed image with its file identity.
    public final class Entry: Sendable {
        /// The file's identity when it was parsed.
        public let file: FileInfo
        /// The parsed image (its source keeps the descriptor open).
        public let image: QCOW2Image
        /// Every finding, computed on first use and kept with the entry.
        private let allFindings = Mutex<[Finding]?>(nil)

        init(file: FileInfo, image: QCOW2Image) {
            self.file = file
            self.image = image
        }

        private let dirty = Mutex<[Int: DirtyCount]>([:])
        private let dirtyBudget = Mutex<UInt64>(ImageCatalog.dirtyImageBudget)

        /// The exact dirty byte count of a bitmap, or why there is none; computed once per file version.
        public func dirtyCount(_ bitmap: BitmapDirectoryEntry) -> DirtyCount {
            if let c = dirty.withLock({ $0[bitmap.index] }) { return c }
            let c: DirtyCount
            // One budget per image and file version: many bitmaps pointing at big tables cannot make a
            // summary or a bitmap list read without end.
            // Up to dirtyCountBudget of data for one bitmap, plus its table, within what the image has left.
            let allowance = dirtyBudget.withLock { min($0, ImageCatalog.dirtyCountBudget + UInt64(bitmap.tableSize) * 8) }
            var spent: UInt64 = 0
            do {
                if allowance < UInt64(bitmap.tableSize) * 8 || allowance == 0 {
                    c = DirtyCount(bytes: nil, reason: "the image's budget for counting dirty bytes (\(ImageCatalog.dirtyImageBudget >> 20) MiB of bitmap metadata and data) is spent; use the extents endpoint")
                } else if let bytes = try image.dirtyBytes(bitmap, budget: allowance, spent: &spent) {
                    c = DirtyCount(bytes: bytes, reason: nil)
                } else {
                    c = DirtyCount(bytes: nil, reason: "bitmap data larger than \(ImageCatalog.dirtyCountBudget >> 20) MiB: too large to count here; use the extents endpoint")
                }
            } catch {
                c = DirtyCount(bytes: nil, reason: "cannot read the bitmap data: \(error.description)")
            }
            dirtyBudget.withLock { $0 -= min($0, max(spent, UInt64(bitmap.tableSize) * 8)) }
            dirty.withLock { $0[bitmap.index] = c }
            return c
        }

        /// Rendered response bodies of this file version, by the view key their ETag hashes (path,
        /// query and lock state): a cached answer is not rebuilt or re-serialized. Bounded per entry.
        private let rendered = Mutex<(bytes: Int, bodies: [String: Rendered])>((0, [:]))

        /// A rendered answer: the body and the headers that go with it (`Link`).
        public struct Rendered: Sendable {
            /// The serialized body.
            public var body: [UInt8]
            /// Headers besides `Content-Type`, `ETag` and `Cache-Control`.
            public var headers: [(name: String, value: String)]

            /// Creates a rendered answer.
            public init(body: [UInt8], headers: [(name: String, value: String)]) {
                self.body = body
                self.headers = headers
            }
        }

        /// Bodies larger than this are never kept.
        public static let renderedMaxBody = 32 << 10
        /// Bytes of rendered bodies kept at most per entry (file version).
        public static let renderedBudget = 96 << 10
        /// Rendered bodies kept at most per entry.
        public static let renderedMaxCount = 32
        /// Bytes of rendered bodies kept at most by all entries of the process together.
        public static let renderedProcessBudget = 4 << 20
        /// Bytes of rendered bodies kept now by all entries.
        static let renderedTotal = Atomic<Int>(0)

        deinit {
            let bytes = rendered.withLock { $0.bytes }
            Entry.renderedTotal.subtract(bytes, ordering: .relaxed)
        }

        /// The rendered answer stored under `key`, if any.
        public func rendered(_ key: String) -> Rendered? {
            rendered.withLock { $0.bodies[key] }
        }

        /// Keeps `value` under `key` when it is small enough; drops every kept body when the entry's budget is full.
        public func storeRendered(_ key: String, _ value: Rendered) {
            let size = value.body.count + key.utf8.count
            guard value.body.count <= Entry.renderedMaxBody else { return }
            rendered.withLock { state in
                if state.bodies[key] != nil { return }
                if state.bytes + size > Entry.renderedBudget || state.bodies.count >= Entry.renderedMaxCount {
                    Entry.renderedTotal.subtract(state.bytes, ordering: .relaxed)
                    state = (0, [:])
                }
                // The process-wide budget: when it is spent, answers are rendered each time again.
                guard Entry.renderedTotal.add(size, ordering: .relaxed).newValue <= Entry.renderedProcessBudget else {
                    Entry.renderedTotal.subtract(size, ordering: .relaxed)
                    return
                }
                state.bodies[key] = value
                state.bytes += size
            }
        }

        /// Every finding of the image (header, directory, tables, snapshots), computed once per file version.
        public func findings() -> [Finding] {
            if let f = allFindings.withLock({ $0 }) { return f }
            let f = image.allFindings()
            allFindings.withLock { $0 = f }
            return f
        }
    }

    /// Bytes of bitmap data read at most to count one bitmap's dirty bytes.
    public static let dirtyCountBudget: UInt64 = 32 << 20
    /// Bytes read at most to count dirty bytes over all bitmaps of one image version.
    public static let dirtyImageBudget: UInt64 = 256 << 20

    /// A bitmap's dirty byte count, or the reason it is not known.
    public struct DirtyCount: Sendable, Hashable {
        /// Exact dirty bytes (guest bytes whose bit is set, clipped to the disk), nil when not counted.
        public var bytes: UInt64?
        /// Why `bytes` is nil.
        public var reason: String?
    }

    private let dirfd: Int32
    /// The directory path as configured (for messages only).
    public let path: String
    private let capacity: Int
    private struct CacheState {
        var entries: [String: Entry] = [:]
        var order: [String] = []
        var magic: [String: (FileInfo, Bool)] = [:]
        /// The sorted directory listing and the directory's (mtime, ctime) when it was read.
        var listing: (stamp: [Int], names: [String])?
    }
    private let cache = Mutex(CacheState())
    private let useOpenat2 = Atomic<Bool>(true)
    private let hits = Atomic<Int>(0)
    private let misses = Atomic<Int>(0)

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
    public init(path: String, cacheCapacity: Int = 256) throws(QCOW2Error) {
        let fd = css_open_directory(path)
        guard fd >= 0 else {
            let e = errno
            throw QCOW2Error(.io, structure: "images_directory", value: path, message: "cannot open directory: \(String(cString: strerror(e)))")
        }
        self.dirfd = fd
        self.path = path
        self.capacity = max(1, cacheCapacity)
    }

    deinit {
        close(dirfd)
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
            fd = css_openat2_beneath(dirfd, name)
            if fd < 0 && (errno == ENOSYS || errno == EPERM) {
                // No openat2 (old kernel, or a seccomp filter): fall back for good.
                useOpenat2.store(false, ordering: .relaxed)
            }
        }
        if !useOpenat2.load(ordering: .relaxed) {
            fd = css_openat_nofollow(dirfd, name)
        }
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR || e == EXDEV || e == ELOOP || e == EINVAL || e == ENAMETOOLONG {
                throw .notFound(name)
            }
            throw .unreadable(QCOW2Error(.io, structure: "file", value: name, message: "cannot open: \(String(cString: strerror(e)))"))
        }
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
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

    /// The parsed image called `name`, from the cache when the file has not changed.
    ///
    /// - Throws: ``LookupError/notFound(_:)`` or ``LookupError/unreadable(_:)``.
    public func image(named name: String) throws(LookupError) -> Entry {
        try lookup(named: name, probeLocks: false).entry
    }

    /// The parsed image called `name` and, when `probeLocks`, QEMU's lock state on it.
    ///
    /// The locks are probed on the descriptor this lookup opens (`F_OFD_GETLK`, no lock taken)
    /// on every call, never cached: a writer can appear or leave without the file changing.
    ///
    /// - Throws: ``LookupError/notFound(_:)`` or ``LookupError/unreadable(_:)``.
    public func lookup(named name: String, probeLocks: Bool) throws(LookupError) -> (entry: Entry, locks: LockState?) {
        let (fd, info) = try openBeneath(name)
        let locks = probeLocks ? LockState.probe(fd: fd) : nil
        if let hit = cache.withLock({ state -> Entry? in
            guard let e = state.entries[name], e.file.sameVersion(as: info) else { return nil }
            if let i = state.order.lastIndex(of: name) { state.order.remove(at: i) }
            state.order.append(name)
            return e
        }) {
            close(fd)
            hits.add(1, ordering: .relaxed)
            return (hit, locks)
        }
        misses.add(1, ordering: .relaxed)
        let image: QCOW2Image
        do {
            let source = try FileImageSource(fd: fd, ownsDescriptor: true)
            image = try QCOW2Image(source: source)
        } catch {
            throw .unreadable(error)
        }
        let entry = Entry(file: info, image: image)
        cache.withLock { state in
            if state.entries.updateValue(entry, forKey: name) != nil, let i = state.order.firstIndex(of: name) {
                state.order.remove(at: i)
            }
            state.order.append(name)
            while state.order.count > capacity {
                let old = state.order.removeFirst()
                state.entries[old] = nil
            }
        }
        return (entry, locks)
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
    public func names() -> [String] {
        var st = Glibc.stat()
        let stamp: [Int]? =
            fstat(dirfd, &st) == 0
            ? [st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, Int(st.st_size)] : nil
        if let stamp, let cached = cache.withLock({ $0.listing }), cached.stamp == stamp { return cached.names }
        let dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = fdopendir(dup) else {
            if dup >= 0 { close(dup) }
            return []
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var out: [(bytes: [UInt8], name: String)] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw -> [UInt8] in
                Array(raw.prefix { $0 != 0 })
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

    /// Whether `name` is a regular file starting with `QFI\xfb` (cached per file version).
    public func isQCOW2(_ name: String) -> Bool {
        guard let (fd, info) = try? openBeneath(name) else { return false }
        defer { close(fd) }
        if let cached = cache.withLock({ $0.magic[name] }), cached.0.sameVersion(as: info) { return cached.1 }
        var magic = [UInt8](repeating: 0, count: 4)
        let n = magic.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4, 0) }
        let ok = n == 4 && magic == [0x51, 0x46, 0x49, 0xfb]
        cache.withLock { state in
            if state.magic.count > 100_000 { state.magic.removeAll() }
            state.magic[name] = (info, ok)
        }
        return ok
    }
}
