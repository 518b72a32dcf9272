import CSystemShim
import Glibc
import QCOW2
import Synchronization

/// Why a backing or data file was not opened, in words that follow its name.
struct LayerRefusal: Error, ExpressibleByStringInterpolation {
    let why: String
    init(stringLiteral value: String) { why = value }
}

extension ImageCatalog {
    /// The backing chain of `entry`, each layer opened beneath the images directory.
    ///
    /// A layer's backing name is joined to the layer's own directory, textually as QEMU does
    /// (`a/b/mid.qcow2` naming `../../c/base.qcow2` gives `a/b/../../c/base.qcow2`), and opened with
    /// `openat2(RESOLVE_BENEATH)`: a name that climbs out, a symlink out, or an absolute path outside
    /// the directory is never opened. The format is the backing-format extension's, else probed
    /// (qcow2 magic, otherwise raw). External data files are opened the same way.
    public func chain(of entry: ImageEntry) -> ImageChain {
        var findings: [Finding] = []
        var seen: Set<[UInt64]> = []
        let top = entry.image
        var layers: [ImageChain.Layer] = []
        var first = ImageChain.Layer(
            name: entry.file.name, format: "qcow2", source: top.source, image: top, dataFile: nil, locks: nil,
            findingCounts: [:], eagerFindings: entry.eagerFindings, backingPresent: entry.backing?.present, stamp: Self.stamp(entry.file.device, entry.file.inode, entry.file.size, entry.file.mtimeSec, entry.file.mtimeNsec, entry.file.ctimeSec, entry.file.ctimeNsec))
        if let s = top.source as? FileImageSource { seen.insert(Self.identity(s.fd)) }
        beginChainFiles(of: entry.file.name)
        first.dataFile = dataFile(of: top, layerName: entry.file.name, findings: &findings)
        if let d = first.dataFile { noteChainFile(d.name, below: entry.file.name) }
        layers.append(first)
        var complete = true
        while let below = layers.last, let image = below.image, let stored = image.backingFile {
            let name = stored.escaped
            /// The chain ends at `below`'s backing file: a finding about its header field.
            func end(_ rule: Rule, _ message: String) {
                findings.append(
                    Finding(
                        rule, structure: "\(below.name): header", field: "backing_file", value: name,
                        offset: image.header.backingFileOffset, message: message))
                complete = false
            }
            guard layers.count <= ImageChain.depthLimit else {
                end(.b4, "the chain is deeper than \(ImageChain.depthLimit) layers below the image; it is not followed further")
                break
            }
            let opened = openLayer(stored, from: below.name)
            switch opened {
            case .failure(let refusal):
                let why = refusal.why
                let missing = why.hasPrefix("is missing")
                end(missing ? .b1 : .b5, "backing file '\(name)' of \(below.name) \(why)")
                layers[layers.count - 1].backingPresent = missing ? false : nil
            case .success(let (path, source)):
                noteChainFile(path, below: entry.file.name)
                layers[layers.count - 1].backingPresent = true
                let id = Self.identity(source.fd)
                if seen.contains(id) {
                    end(.b3, "backing file '\(name)' of \(below.name) is \(path), already in the chain: the chain loops")
                    break
                }
                seen.insert(id)
                switch layer(path, source, format: image.backingFormat?.utf8) {
                case .failure(let refusal):
                    end(.b5, "backing file '\(name)' of \(below.name) (\(path)) cannot be used: \(refusal.why)")
                case .success(var l):
                    if let image = l.image { l.dataFile = dataFile(of: image, layerName: path, findings: &findings) }
                    if let d = l.dataFile { noteChainFile(d.name, below: entry.file.name) }
                    layers.append(l)
                    continue
                }
            }
            break
        }
        return ImageChain(layers: layers, complete: complete, findings: findings)
    }

    /// The allocation totals of `chain`, computed once per chain version (single flight: concurrent
    /// requests wait for the one walk). Past the walk's budget the totals are nil and the reason says so;
    /// a failed read is not kept (the next request walks again).
    public func allocation(of chain: ImageChain) -> AllocationAnswer {
        let key = chain.version
        let once = allocations.withLock { cache -> Once<AllocationAnswer> in
            if let o = cache[key] { return o }
            if cache.count >= 1024 { cache.removeAll() }
            let o = Once<AllocationAnswer>()
            cache[key] = o
            return o
        }
        let answer = once.value {
            let map = chain.guestMap { looksPreallocated($0) }
            do throws(QCOW2Error) {
                guard let totals = try map.totals(l2Budget: AllocationAnswer.l2Budget) else {
                    return AllocationAnswer(
                        totals: nil,
                        reason: "the walk needs more than \(AllocationAnswer.l2Budget) L2 entries (the image budget); page through /map instead",
                        failed: false)
                }
                return AllocationAnswer(totals: totals, reason: nil, failed: false)
            } catch {
                return AllocationAnswer(totals: nil, reason: error.description, failed: true)
            }
        }
        if answer.failed { _ = allocations.withLock { $0.removeValue(forKey: key) } }
        return answer
    }

    /// Names checked at most by ``checkpointsNotReady(of:)`` (the first, in ``ChainBitmaps/names`` order).
    public static let notReadyNameLimit = 4096

    /// Chains with at most this many bitmaps in all layers have their not-ready count computed when a
    /// metrics scrape asks (``checkpointsNotReady(of:computingUpTo:)``); larger ones have none there.
    public static let notReadyScrapeBitmaps = 64

    /// The count of ``checkpointsNotReady(of:)`` when it is known for this chain version, or when it is
    /// cheap: the chain has at most `bitmapLimit` bitmaps. Nil otherwise (nothing is read).
    ///
    /// A metrics scrape asks for every image: judging 65,535 bitmaps (their tables and refcounts) there
    /// would keep the I/O workers from the requests of other images for seconds.
    public func checkpointsNotReady(of chain: ImageChain, computingUpTo bitmapLimit: Int) -> Int? {
        if let known = notReadyOnce(chain).ifComputed { return known }
        var total = 0
        for layer in chain.layers {
            total &+= layer.image?.bitmaps.count ?? 0
            if total > bitmapLimit { return nil }
        }
        return checkpointsNotReady(of: chain)
    }

    private func notReadyOnce(_ chain: ImageChain) -> Once<Int> {
        let key = chain.version
        return notReady.withLock { cache -> Once<Int> in
            if let o = cache[key] { return o }
            if cache.count >= 1024 { cache.removeAll() }
            let o = Once<Int>()
            cache[key] = o
            return o
        }
    }

    /// How many of the chain's bitmap names are not ready for an incremental backup, judged from the
    /// files alone (no lock probe: K8 is not counted), computed once per chain version.
    public func checkpointsNotReady(of chain: ImageChain) -> Int {
        notReadyOnce(chain).value {
            let bitmaps = chain.bitmaps
            var count = 0
            for n in bitmaps.names.prefix(Self.notReadyNameLimit) {
                let r = CheckpointReadiness(
                    n, in: bitmaps, layerNames: chain.layerNames, writerPresent: nil, complete: chain.complete)
                if !r.ready { count += 1 }
            }
            return count
        }
    }

    /// QEMU's metadata-preallocation heuristic for a qcow2 layer, computed once per file version.
    public func looksPreallocated(_ layer: ImageChain.Layer) -> Bool {
        guard let image = layer.image else { return false }
        if let known = preallocation.withLock({ $0[layer.stamp] }) { return known }
        let verdict = image.looksMetadataPreallocated()
        preallocation.withLock { cache in
            if cache.count >= 4096 { cache.removeAll() }
            cache[layer.stamp] = verdict
        }
        return verdict
    }

    /// A digest of a file's identity: device, inode, size, modification and change times.
    static func stamp(
        _ device: UInt64, _ inode: UInt64, _ size: UInt64, _ mSec: Int64, _ mNsec: Int64, _ cSec: Int64, _ cNsec: Int64
    ) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in [device, inode, size, UInt64(bitPattern: mSec), UInt64(bitPattern: mNsec), UInt64(bitPattern: cSec), UInt64(bitPattern: cNsec)] {
            h = (h ^ v) &* 0x100_0000_01b3
        }
        return h
    }

    /// The device and inode of `fd`, for loop detection.
    private static func identity(_ fd: Int32) -> [UInt64] {
        var st = Glibc.stat()
        guard unsafe fstat(fd, &st) == 0 else { return [UInt64(bitPattern: Int64(fd))] }
        return [UInt64(st.st_dev), UInt64(st.st_ino)]
    }

    /// Opens the backing or data file `stored`, named by the layer `from`, beneath the directory.
    ///
    /// - Returns: its path relative to the directory and its source, or why not ("is missing: …",
    ///   "is not followed: …", "cannot be opened: …").
    func openLayer(_ stored: ByteString, from layerName: String) -> Result<(String, FileImageSource), LayerRefusal> {
        // QEMU uses the name up to its first NUL (H21 reports one).
        guard let text = stored.beforeNUL.utf8, !text.isEmpty else {
            return .failure("is not followed: the name is empty or not UTF-8 text")
        }
        if text.hasPrefix("json:") || text.contains("://") {
            return .failure("is not followed: it is a protocol or JSON description, not a file name")
        }
        var path: String
        if text.hasPrefix("/") {
            let roots = [canonicalPath, self.path].compactMap { $0 }.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
            guard let root = roots.first(where: { text.hasPrefix($0) }) else {
                return .failure("is not followed: the absolute path is outside the images directory")
            }
            path = String(text.dropFirst(root.count))
        } else {
            // QEMU's bdrv_make_absolute_filename: everything up to the last `/` of the naming layer.
            let dir = layerName.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            path = dir.isEmpty ? text : dir + "/" + text
        }
        guard path.utf8.count <= 4096 else { return .failure("is not followed: the path is too long") }
        var fd: Int32 = -1
        if useOpenat2.load(ordering: .relaxed) {
            fd = unsafe css_openat2_beneath(dirfd, path)
        } else if path.contains("/") {
            return .failure("is not followed: it names a subdirectory, which this kernel cannot open safely (no openat2)")
        } else {
            fd = unsafe css_openat_nofollow(dirfd, path)
        }
        guard fd >= 0 else {
            let e = errno
            switch e {
            case ENOENT, ENOTDIR: return .failure("is missing: looked for \(path) in the images directory")
            case EXDEV, ELOOP: return .failure("is not followed: \(path) leads outside the images directory")
            default: return unsafe .failure("cannot be opened (\(path)): \(String(cString: strerror(e)))")
            }
        }
        do {
            let source = try FileImageSource(fd: fd, ownsDescriptor: true, activity: activity(named: path))
            return .success((path, source))
        } catch {
            close(fd)
            return .failure("cannot be used: \(path) is not a regular file")
        }
    }

    /// A backing layer from its opened file: qcow2 or raw, by the stated format or by probing.
    private func layer(_ path: String, _ source: FileImageSource, format: String?) -> Result<ImageChain.Layer, LayerRefusal> {
        let magic = (try? source.read(at: 0, count: min(4, Int(clamping: source.size)))) ?? []
        let isQCOW2 = magic == [0x51, 0x46, 0x49, 0xfb]
        let chosen = format ?? (isQCOW2 ? "qcow2" : "raw")
        var st = Glibc.stat()
        _ = unsafe fstat(source.fd, &st)
        let h = Self.stamp(
            UInt64(st.st_dev), UInt64(st.st_ino), UInt64(clamping: st.st_size), Int64(st.st_mtim.tv_sec),
            Int64(st.st_mtim.tv_nsec), Int64(st.st_ctim.tv_sec), Int64(st.st_ctim.tv_nsec))
        let locks = LockState.probe(fd: source.fd)
        switch chosen {
        case "raw":
            return .success(
                ImageChain.Layer(
                    name: path, format: "raw", source: source, image: nil, dataFile: nil, locks: locks, findingCounts: [:],
                    backingPresent: nil, stamp: h))
        case "qcow2":
            do throws(QCOW2Error) {
                let image = try QCOW2Image(source: source)
                var counts: [Finding.Severity: Int] = [:]
                let eager = ImageValidator.findings(image)
                for f in eager { counts[f.severity, default: 0] += 1 }
                return .success(
                    ImageChain.Layer(
                        name: path, format: "qcow2", source: source, image: image, dataFile: nil, locks: locks,
                        findingCounts: counts, eagerFindings: eager, backingPresent: nil, stamp: h))
            } catch {
                return .failure("it does not parse as qcow2: \(error.message)")
            }
        default:
            return .failure("its format '\(chosen.prefix(32))' is neither qcow2 nor raw")
        }
    }

    /// The external data file of `image`, opened beneath the directory; a B6 finding when it cannot be.
    private func dataFile(of image: QCOW2Image, layerName: String, findings: inout [Finding]) -> (name: String, source: any ImageSource)? {
        guard let stored = image.dataFile else { return nil }
        switch openLayer(stored, from: layerName) {
        case .success(let (path, source)): return (path, source)
        case .failure(let refusal):
            let why = refusal.why
            findings.append(
                Finding(
                    .b6, structure: "\(layerName): data_file", field: "data_file", value: stored.escaped, offset: nil,
                    message: "data file '\(stored.escaped)' of \(layerName) \(why)"))
            return nil
        }
    }
}
