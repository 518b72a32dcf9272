/// The read-only refcount and cluster check: what `qemu-img check` (QEMU 7.2) counts, on the same bytes.
///
/// It follows `qcow2_co_check_locked` step by step (qemu-check-map.md §1): the snapshot table is read
/// first, then every reference is counted into one compact counter per host cluster in QEMU's order
/// (header, active L1 and L2 tables, snapshots, snapshot table, refcount table, crypto header,
/// bitmaps, refcount blocks), then each counter is compared with the refcount stored in the image.
/// The copied-flag check runs during the walk of the active tables, against the stored refcounts read
/// beforehand, so every L2 table and refcount block is read once. Memory: 2 bytes per host cluster
/// (``ClusterCounts``) plus one table at a time. Nothing is written and nothing is repaired.
///
/// Where QEMU would refuse to open the image, the check still runs and ``CheckReport/qemuRefuses``
/// says why; where QEMU's check itself would fail (`Check failed: ...`), the report is
/// ``CheckReport/incomplete`` with the figures counted so far.
public struct ImageCheck {
    private let image: QCOW2Image
    private let source: any ImageSource
    private let options: CheckOptions
    private var report = CheckReport()

    private let cs: UInt64
    private let clusterBits: UInt64
    private let fileLength: UInt64
    /// Host clusters of the file, `ceil(file_len / cs)`.
    private var clusters = 0
    private var refcountBits: UInt64 = 16
    private var refcountMax: UInt64 = 0xffff
    /// log2 of the refcounts one block holds.
    private var blockShift: UInt64 = 0
    private let extendedL2: Bool
    private let hasDataFile: Bool

    /// The refcount table entries that lie inside the file (the others are zero).
    private var reftable: [UInt64] = []
    /// Entries the refcount table has (`refcount_table_clusters * cluster_size / 8`).
    private var reftableEntries: UInt64 = 0
    /// The refcounts stored in the image, for clusters `0...clusters`.
    private var stored = ClusterCounts(count: 0)
    /// Refcount table indices whose block cannot be read (unaligned, or a read failed).
    private var unreadableBlocks: Set<Int> = []
    /// Refcount blocks read for clusters past the end of the file (copied-flag checks there).
    private var blockCache: [Int: [UInt8]] = [:]
    /// The references found, for clusters `0...clusters`; ``foundCount`` of them are in use.
    private var found = ClusterCounts(count: 0)
    private var foundCount = 0
    /// Counter pages each of ``stored`` and ``found`` may allocate (``CheckOptions/memoryLimit``).
    private var pageLimit = 0
    /// Set by ``count(_:_:_:offset:)`` when a counter page could not be allocated; checked after each table.
    private var memoryExceeded = false

    private struct Snapshot {
        var l1Offset: UInt64
        var l1Size: UInt32
        var label: String
    }
    private var snapshots: [Snapshot] = []
    private var snapshotsSize: UInt64 = 0

    private var budget: UInt64
    private var done: UInt64 = 0
    private var expected: UInt64 = 0

    /// Why the check stops early; ``CheckReport/incomplete`` carries the message.
    private struct Stop: Error {
        var message: String
    }

    /// Checks `image` and returns what `qemu-img check` would count.
    public static func run(_ image: QCOW2Image, options: CheckOptions = CheckOptions()) -> CheckReport {
        var check = ImageCheck(image: image, options: options)
        do {
            try check.checkAll()
        } catch {
            check.report.incomplete = error.message
            check.problem(.c9, structure: "check", message: error.message)
        }
        return check.report
    }

    /// Bytes of metadata a check may read: 64 MiB plus 8 times the file, whatever the tables say (tables
    /// shared by snapshots are read once per snapshot; nothing past the end of the file is read).
    public static func readBudget(fileLength: UInt64) -> UInt64 {
        (64 << 20) +? (fileLength *? 8 ?? UInt64.max) ?? UInt64.max
    }

    /// How many of `count` 8-byte entries at `offset` start inside the file (the rest read as zeros).
    static func entriesInFile(at offset: UInt64, count: UInt64, fileLength: UInt64) -> UInt64 {
        guard offset < fileLength else { return 0 }
        return min(count, (fileLength - offset + 7) / 8)
    }

    private init(image: QCOW2Image, options: CheckOptions) {
        self.image = image
        self.source = image.source
        self.options = options
        let h = image.header
        cs = h.clusterSize
        clusterBits = UInt64(h.clusterBits)
        fileLength = image.source.size
        extendedL2 = image.hasExtendedL2
        hasDataFile = h.incompatibleFeatures & Header.externalDataFileBit != 0
        budget = ImageCheck.readBudget(fileLength: image.source.size)
    }

    // MARK: Steps

    private mutating func checkAll() throws(Stop) {
        let h = image.header
        guard (9...21).contains(h.clusterBits) else {
            throw Stop(message: "cluster_bits \(h.clusterBits) is outside 9-21: qemu-img cannot open the image and it is not checked")
        }
        guard let bits = h.refcountBits else {
            throw Stop(message: "refcount_order \(h.refcountOrder) is above 6: qemu-img cannot open the image and it is not checked")
        }
        refcountBits = bits
        refcountMax = bits == 64 ? UInt64.max : (UInt64(1) << bits) - 1
        blockShift = clusterBits + 3 - UInt64(h.refcountOrder)
        noteRefusals()

        try readSnapshotTable()

        let n = fileLength / cs + (fileLength % cs == 0 ? 0 : 1)
        guard n <= UInt64(Int32.max) else {
            report.checkErrors += 1
            throw Stop(message: "the file has \(n) clusters, more than 2^31 - 1: qemu-img check fails with `File too large`")
        }
        clusters = Int(n)
        // Counters come in pages of 64 Ki clusters, two arrays of them: the limit in pages of each.
        pageLimit = Int(clamping: (options.memoryLimit / 2) >> UInt64(ClusterCounts.pageBits))
        let virtual = h.size / 512 * 512
        report.totalClusters = virtual / cs + (virtual % cs == 0 ? 0 : 1)

        try readRefcountTable()
        try readStoredRefcounts()
        try planProgress()
        try countReferences()
        compare()
    }

    /// What makes QEMU refuse to open the image for a check (the check here still runs).
    private mutating func noteRefusals() {
        let h = image.header
        let known: UInt64 = 0x1f
        if h.incompatibleFeatures & ~known != 0 {
            report.qemuRefuses.append("unknown incompatible feature bits \(Hex.string(h.incompatibleFeatures & ~known))")
        }
        if extendedL2 && cs < 16384 { report.qemuRefuses.append("extended L2 entries need clusters of 16 KiB or more") }
        if h.refcountTableOffset % cs != 0 { report.qemuRefuses.append("the refcount table offset is not cluster aligned") }
        if UInt64(h.refcountTableClusters) * cs > Limits.maxRefcountTableBytes {
            report.qemuRefuses.append("the refcount table is larger than 8 MiB")
        }
        if h.l1TableOffset % cs != 0 { report.qemuRefuses.append("the L1 table offset is not cluster aligned") }
        if UInt64(h.l1Size) > Limits.maxL1Bytes / 8 { report.qemuRefuses.append("the active L1 table is larger than 32 MiB") }
        if h.cryptMethod != 0 { report.qemuRefuses.append("the image is encrypted (qemu-img needs its key)") }
        for issue in image.decodeIssues {
            switch issue {
            case .bitmapDirectoryStartsPastEnd, .bitmapDirectoryPastEnd, .bitmapDirectoryEntryUndecodable,
                .tooManyBitmapDirectoryEntries:
                report.qemuRefuses.append("the bitmap directory cannot be loaded")
                return
            default: continue
            }
        }
    }

    /// `qcow2_check_read_snapshot_table`: validates the table pointer, then parses the entries as
    /// QEMU does (zeros past the end of the file); v3 entries with less than 16 bytes of extra data
    /// are corruptions. A table QEMU cannot read stops the check.
    private mutating func readSnapshotTable() throws(Stop) {
        let h = image.header
        let nb = UInt64(h.nbSnapshots)
        let start = h.snapshotsOffset
        guard nb <= Limits.maxSnapshots else {
            report.checkErrors += 1
            problem(.s1, structure: "header", field: "nb_snapshots", value: "\(nb)", offset: 60,
                message: "\(nb) snapshots, more than 65536 (qemu-img: ERROR snapshot table too large)")
            throw Stop(message: "the snapshot table is too large: qemu-img check fails with `File too large`")
        }
        guard start % cs == 0, start <= UInt64(Int64.max) - nb * 40 else {
            report.checkErrors += 1
            problem(.s1, structure: "header", field: "snapshots_offset", value: Hex.string(start), offset: 64,
                message: "the snapshot table offset \(Hex.string(start)) is not cluster aligned (qemu-img: ERROR snapshot table offset invalid)")
            throw Stop(message: "the snapshot table offset is invalid: qemu-img check fails with `Invalid argument`")
        }
        guard nb > 0 else { return }
        var reader = SequentialReader(start: start)
        var pos = start
        for i in 0..<Int(nb) {
            pos = (pos + 7) / 8 * 8
            let entryAt = pos
            let head = try read(&reader, "snapshot[\(i)]", at: pos, count: 40)
            let l1Offset = ByteReader.uint(head, at: 0, width: 8)
            let l1Size = UInt32(ByteReader.uint(head, at: 8, width: 4))
            let idSize = ByteReader.uint(head, at: 12, width: 2)
            let nameSize = ByteReader.uint(head, at: 14, width: 2)
            let extra = ByteReader.uint(head, at: 36, width: 4)
            pos += 40
            guard extra <= Limits.maxSnapshotExtraData else {
                report.checkErrors += 1
                problem(.s4, structure: "snapshot[\(i)]", field: "extra_data_size", value: "\(extra)", offset: pos - 4,
                    message: "\(extra) bytes of extra data, more than 1024 (qemu-img: Too much extra metadata in snapshot table entry \(i))")
                throw Stop(message: "snapshot \(i) has too much extra data: qemu-img check fails reading the snapshot table")
            }
            pos += extra
            let id = try read(&reader, "snapshot[\(i)].id_str", at: pos, count: idSize)
            pos += idSize
            let name = try read(&reader, "snapshot[\(i)].name", at: pos, count: nameSize)
            pos += nameSize
            guard pos - start <= Limits.maxSnapshotTableSize else {
                report.checkErrors += 1
                problem(.s1, structure: "snapshot_table", field: "size", value: "\(pos - start)", offset: start,
                    message: "the snapshot table is larger than 64 MiB (qemu-img: Snapshot table is too big)")
                throw Stop(message: "the snapshot table is larger than 64 MiB: qemu-img check fails reading it")
            }
            let label = "\(ByteString(id).beforeNUL.escaped) (\(ByteString(name).beforeNUL.escaped))"
            snapshots.append(Snapshot(l1Offset: l1Offset, l1Size: l1Size, label: label))
            if h.version >= 3 && extra < 16 {
                problem(.s3, structure: "snapshot[\(i)]", field: "extra_data_size", value: "\(extra)", offset: entryAt + 36,
                    message: "snapshot \(label) has \(extra) bytes of extra data, fewer than 16 (qemu-img: ERROR snapshot table entry \(i) is incomplete)")
                report.corruptions += 1
            }
        }
        snapshotsSize = pos - start
    }

    /// Loads the refcount table, as QEMU keeps it in memory (zeros past the end of the file).
    private mutating func readRefcountTable() throws(Stop) {
        let h = image.header
        let bytes = UInt64(h.refcountTableClusters) * cs
        guard bytes <= Limits.maxRefcountTableBytes else {
            throw Stop(message: "the refcount table is \(bytes) bytes, more than 8 MiB: qemu-img refuses the image (`Reference count table too large`)")
        }
        reftableEntries = bytes / 8
        // Entries past the end of the file read as zeros: only those inside it are kept.
        let present = Self.entriesInFile(at: h.refcountTableOffset, count: bytes / 8, fileLength: fileLength)
        guard present > 0 else { return }
        let raw = try readTable("refcount_table", at: h.refcountTableOffset, count: present * 8)
        reftable = ByteReader.words(raw, count: Int(present), stride: 8)
    }

    /// Reads the stored refcount of every cluster of the file (and the one past it), one block at a time.
    private mutating func readStoredRefcounts() throws(Stop) {
        stored = ClusterCounts(count: clusters + 1, maxPages: pageLimit)
        found = ClusterCounts(count: clusters + 1, maxPages: pageLimit)
        foundCount = clusters
        let perBlock = 1 << Int(blockShift)
        var t = 0
        while t < reftable.count && t * perBlock <= clusters {
            let offset = reftable[t] & 0xffff_ffff_ffff_fe00
            defer { t += 1 }
            if offset == 0 { continue }
            guard offset % cs == 0 else {
                unreadableBlocks.insert(t)
                continue
            }
            let block: [UInt8]
            do throws(Stop) {
                block = try readTable("refcount_block[\(t)]", at: offset, count: cs, abortOnError: false)
            } catch {
                unreadableBlocks.insert(t)
                continue
            }
            let first = t * perBlock
            let last = min(first + perBlock, clusters + 1)
            if refcountBits == 16 {
                for i in first..<last {
                    let k = (i - first) * 2
                    let v = UInt64(block[k]) << 8 | UInt64(block[k + 1])
                    if v != 0, !stored.set(i, v, pageLimit: pageLimit) { throw memoryStop() }
                }
            } else {
                for i in first..<last {
                    let v = decode(block, i - first)
                    if v != 0, !stored.set(i, v, pageLimit: pageLimit) { throw memoryStop() }
                }
            }
        }
    }

    /// Estimates the bytes the walk will read, for progress reports: the active L1 table and the L2
    /// tables it points at, once for it and once for each snapshot (which usually share them).
    private mutating func planProgress() throws(Stop) {
        let h = image.header
        let size = UInt64(h.l1Size)
        var used = size
        let present = h.l1TableOffset < fileLength ? min(size, (fileLength - h.l1TableOffset) / 8) : 0
        if present > 0 && present <= 1 << 16 {
            let raw = try readTable("l1_table", at: h.l1TableOffset, count: present * 8)
            used = (0..<Int(present)).reduce(0) { $0 + (ByteReader.uint(raw, at: $1 * 8, width: 8) != 0 ? 1 : 0) }
        }
        let perTable = size &* 8 &+ used &* cs
        expected = done &+ perTable &* UInt64(snapshots.count + 1)
        options.progress?(done, expected)
    }

    /// `calculate_refcounts`: every reference, in QEMU's order.
    private mutating func countReferences() throws(Stop) {
        let h = image.header
        count(0, cs, "header", offset: 0)
        try walkL1(at: h.l1TableOffset, size: UInt64(h.l1Size), snapshot: nil)
        if hasDataFile && !snapshots.isEmpty {
            problem(.c8, structure: "header", field: "nb_snapshots", value: "\(snapshots.count)", offset: 60,
                message: "\(snapshots.count) snapshots in an image with an external data file (qemu-img: ERROR \(snapshots.count) snapshots in image with data file)")
            report.corruptions += 1
        }
        for (k, s) in snapshots.enumerated() {
            if s.l1Offset % cs != 0 {
                problem(.s2, structure: "snapshot[\(k)]", field: "l1_table_offset", value: Hex.string(s.l1Offset), offset: nil,
                    message: "snapshot \(s.label): L1 table offset \(Hex.string(s.l1Offset)) is not cluster aligned; its clusters are not counted")
                report.corruptions += 1
                continue
            }
            if UInt64(s.l1Size) > Limits.maxL1Bytes / 8 {
                problem(.s6, structure: "snapshot[\(k)]", field: "l1_size", value: "\(s.l1Size)", offset: nil,
                    message: "snapshot \(s.label): L1 table of \(s.l1Size) entries, more than 4194304; its clusters are not counted")
                report.corruptions += 1
                continue
            }
            try walkL1(at: s.l1Offset, size: UInt64(s.l1Size), snapshot: k)
        }
        count(h.snapshotsOffset, snapshotsSize, "snapshot_table", offset: 64)
        count(h.refcountTableOffset, reftableEntries * 8, "refcount_table", offset: 48)
        if h.cryptMethod == 2 {
            for e in image.extensions where e.kind == .cryptoHeader {
                if case .crypto(let offset, let length) = e.payload, length > 0 {
                    count(offset, length, "crypto_header", offset: e.offset)
                }
            }
        }
        try countBitmaps()
        countRefcountBlocks()
        if memoryExceeded { throw memoryStop() }
    }

    /// `check_refcounts_l1` and `check_refcounts_l2` for one L1 table; for the active one (`snapshot`
    /// nil) also the allocation figures and `check_oflag_copied`.
    private mutating func walkL1(at l1Offset: UInt64, size: UInt64, snapshot: Int?) throws(Stop) {
        guard size > 0 else { return }
        let prefix = snapshot.map { "snapshot[\($0)] " } ?? ""
        count(l1Offset, size * 8, prefix + "l1_table", offset: snapshot == nil ? 40 : nil)
        let chunk: UInt64 = 8192
        var first: UInt64 = 0
        // Entries past the end of the file read as zeros, which reference nothing: not read at all.
        let present = Self.entriesInFile(at: l1Offset, count: size, fileLength: fileLength)
        while first < present {
            let n = min(chunk, present - first)
            let raw = try readTable(prefix + "l1_table", at: l1Offset &+ first * 8, count: n * 8)
            let entries = ByteReader.words(raw, count: Int(n), stride: 8)
            for (j, e) in entries.enumerated() where e != 0 {
                let i = first + UInt64(j)
                let at = l1Offset &+ i * 8
                let structure = prefix + "l1_table[\(i)]"
                if e & L1Entry.reservedMask != 0 {
                    problem(.m3, structure: structure, field: "reserved", value: Hex.string(e), offset: at,
                        message: "reserved bits \(Hex.string(e & L1Entry.reservedMask)) are set (qemu-img: ERROR found L1 entry with reserved bits set: \(String(e, radix: 16)))")
                    report.corruptions += 1
                }
                let l2 = e & L1Entry.offsetMask
                count(l2, cs, structure, offset: at)
                if l2 % cs != 0 {
                    problem(.m1, structure: structure, field: "l2_offset", value: Hex.string(l2), offset: at,
                        message: "the L2 table offset \(Hex.string(l2)) is not cluster aligned (qemu-img: ERROR l2_offset=\(String(l2, radix: 16)): Table is not cluster aligned; L1 entry corrupted)")
                    report.corruptions += 1
                }
                var checkCopied = false
                if snapshot == nil && l2 != 0, let r = storedRefcount(l2 / cs) {
                    checkCopied = true
                    if (r == 1) != (e & L1Entry.copiedFlag != 0) {
                        problem(.c3, structure: structure, field: "copied", value: Hex.string(e), offset: at,
                            message: "the copied flag is \(e & L1Entry.copiedFlag != 0 ? "set" : "clear") but the L2 table's refcount is \(r) (qemu-img: ERROR OFLAG_COPIED L2 cluster: l1_index=\(i) l1_entry=\(String(e, radix: 16)) refcount=\(r))")
                        report.corruptions += 1
                    }
                }
                try walkL2(at: l2, l1Index: i, prefix: prefix, active: snapshot == nil, checkCopied: checkCopied)
            }
            first += n
        }
    }

    /// `check_refcounts_l2` for the table at `l2Offset` (read whole, zeros past the end of the file).
    private mutating func walkL2(at l2Offset: UInt64, l1Index: UInt64, prefix: String, active: Bool, checkCopied: Bool) throws(Stop) {
        // A table past the end of the file reads as zeros: no entry in it does anything.
        guard l2Offset < fileLength else { return }
        let table = try readTable(prefix + "l2_table[\(l1Index)]", at: l2Offset, count: cs)
        let entryBytes = extendedL2 ? 16 : 8
        let entries = Int(cs) / entryBytes
        let x = 62 - (clusterBits - 8)
        let compressedOffsetMask = (UInt64(1) << x) - 1
        let sectorMask = (UInt64(1) << (clusterBits - 8)) - 1
        var next: UInt64 = 0
        let words = ByteReader.words(table, count: entries, stride: entryBytes)
        let bitmaps = extendedL2 ? ByteReader.words(table, count: entries, stride: entryBytes, offset: 8) : []
        var j = 0
        while j < entries {
            let e = words[j]
            let b = extendedL2 ? bitmaps[j] : 0
            defer { j += 1 }
            if e == 0 && b == 0 { continue }
            let at = l2Offset &+ UInt64(j * entryBytes)
            func structure() -> String { prefix + "l2_table[\(l1Index)][\(j)]" }
            let offset = e & L2Entry.offsetMask
            if e & L2Entry.compressedFlag != 0 {
                var e = e
                if e & L2Entry.copiedFlag != 0 {
                    problem(.m6, structure: structure(), field: "copied", value: Hex.string(e), offset: at,
                        message: "the copied flag is set on a compressed cluster (qemu-img: ERROR: coffset=\(Hex.string(e & compressedOffsetMask)): copied flag must never be set for compressed clusters)")
                    report.corruptions += 1
                    e &= ~L2Entry.copiedFlag
                }
                if hasDataFile {
                    problem(.m10, structure: structure(), field: "compressed", value: Hex.string(e), offset: at,
                        message: "a compressed cluster in an image with an external data file (qemu-img: ERROR compressed cluster \(j) with data file)")
                    report.corruptions += 1
                    continue
                }
                if b != 0 {
                    problem(.m9, structure: structure(), field: "bitmap", value: Hex.string(b), offset: at &+ 8,
                        message: "a compressed cluster with a non-zero subcluster bitmap (qemu-img: ERROR compressed cluster \(j) with non-zero subcluster allocation bitmap)")
                    report.corruptions += 1
                    continue
                }
                let coffset = e & compressedOffsetMask
                let csize = (((e >> x) & sectorMask) + 1) * 512 - (coffset & 511)
                count(coffset, csize, structure(), offset: at)
                if active {
                    report.allocatedClusters += 1
                    report.compressedClusters += 1
                    report.fragmentedClusters += 1
                }
                continue
            }
            if e & L2Entry.standardReservedMask != 0 {
                problem(.m6, structure: structure(), field: "reserved", value: Hex.string(e), offset: at,
                    message: "reserved bits \(Hex.string(e & L2Entry.standardReservedMask)) are set (qemu-img: ERROR found l2 entry with reserved bits set: \(String(e, radix: 16)))")
                report.corruptions += 1
            }
            let zero = !extendedL2 && e & L2Entry.zeroFlag != 0
            let allocated = offset != 0 || (!zero && hasDataFile && e & L2Entry.copiedFlag != 0)
            guard allocated else {
                if b & 0xffff_ffff != 0 {
                    problem(.m9, structure: structure(), field: "bitmap", value: Hex.string(b), offset: at &+ 8,
                        message: "an unallocated cluster with subclusters marked allocated (qemu-img: ERROR: Unallocated cluster has non-zero subcluster allocation map)")
                    report.corruptions += 1
                }
                continue
            }
            // NORMAL or ZERO_ALLOC.
            if (b >> 32) & b != 0 {
                problem(.m9, structure: structure(), field: "bitmap", value: Hex.string(b), offset: at &+ 8,
                    message: "subclusters marked both allocated and zero (qemu-img: ERROR offset=\(String(offset, radix: 16)): Allocated cluster has corrupted subcluster allocation bitmap)")
                report.corruptions += 1
            }
            if offset % cs != 0 {
                let data = extendedL2 ? b & 0xffff_ffff != 0 : e & L2Entry.zeroFlag == 0
                problem(.m4, structure: structure(), field: "host_offset", value: Hex.string(offset), offset: at,
                    message: "the cluster offset \(Hex.string(offset)) is not cluster aligned (qemu-img: ERROR offset=\(String(offset, radix: 16)): \(data ? "Data" : "Preallocated") cluster is not properly aligned; L2 entry corrupted.)")
                report.corruptions += 1
            }
            if active {
                report.allocatedClusters += 1
                if next != 0 && offset != next { report.fragmentedClusters += 1 }
                next = offset &+ cs
            }
            if !hasDataFile {
                // The usual case inline: one aligned cluster inside the file, below its count's limit.
                if offset % cs == 0, offset < fileLength, fileLength - offset >= cs,
                    found.increment(Int(offset / cs), max: refcountMax, pageLimit: pageLimit) == .done
                {
                    if Int(offset / cs) >= foundCount { foundCount = Int(offset / cs) + 1 }
                } else {
                    count(offset, cs, structure(), offset: at)
                }
            }
            if checkCopied {
                let r: UInt64? = hasDataFile ? 1 : storedRefcount(offset / cs)
                if let r, (r == 1) != (e & L2Entry.copiedFlag != 0) {
                    problem(.c3, structure: structure(), field: "copied", value: Hex.string(e), offset: at,
                        message: "the copied flag is \(e & L2Entry.copiedFlag != 0 ? "set" : "clear") but the data cluster's refcount is \(r) (qemu-img: ERROR OFLAG_COPIED data cluster: l2_entry=\(String(e, radix: 16)) refcount=\(r))")
                    report.corruptions += 1
                }
            }
        }
    }

    /// `qcow2_check_bitmaps_refcounts`: the directory, each table and each data cluster, when QEMU
    /// loads the bitmaps (version 3, autoclear bit 0 set, at least one bitmap).
    private mutating func countBitmaps() throws(Stop) {
        guard image.header.version >= 3, image.header.bitmapsConsistentBit, let ext = image.bitmapsExtension, ext.nbBitmaps > 0
        else { return }
        count(ext.directoryOffset, ext.directorySize, "bitmap_directory", offset: nil)
        for b in image.bitmaps {
            let s = "bitmap_table[\(b.index)]"
            let size = UInt64(b.tableSize)
            count(b.tableOffset, size * 8, s, offset: b.entryOffset)
            let chunk: UInt64 = 8192
            var first: UInt64 = 0
            let present = Self.entriesInFile(at: b.tableOffset, count: size, fileLength: fileLength)
            entries: while first < present {
                let n = min(chunk, present - first)
                let raw = try readTable(s, at: b.tableOffset &+ first * 8, count: n * 8)
                for k in 0..<Int(n) {
                    let e = ByteReader.uint(raw, at: k * 8, width: 8)
                    let at = b.tableOffset &+ (first + UInt64(k)) * 8
                    let offset = e & 0x00ff_ffff_ffff_fe00
                    let rule: Rule? =
                        e & 0xff00_0000_0000_01fe != 0 ? .t1 : offset != 0 && e & 1 != 0 ? .t2 : offset % cs != 0 ? .t3 : nil
                    if let rule {
                        // QEMU cannot load such a table (the open fails): one corruption, the rest is not counted.
                        problem(rule, structure: "\(s)[\(first + UInt64(k))]", field: "entry", value: Hex.string(e), offset: at,
                            message: "bitmap \(b.name.beforeNUL.escaped): invalid table entry \(Hex.string(e)); the rest of its table is not counted")
                        report.corruptions += 1
                        break entries
                    }
                    if offset != 0 { count(offset, cs, "\(s)[\(first + UInt64(k))]", offset: at) }
                }
                first += n
            }
        }
    }

    /// `check_refblocks`: each refcount table entry, its block counted, which must then be referenced once.
    private mutating func countRefcountBlocks() {
        let base = image.header.refcountTableOffset
        for (t, raw) in reftable.enumerated() {
            let offset = raw & 0xffff_ffff_ffff_fe00
            let at = base &+ UInt64(t) * 8
            let s = "refcount_table[\(t)]"
            if raw & 0x1ff != 0 {
                problem(.c6, structure: s, field: "reserved", value: Hex.string(raw), offset: at,
                    message: "reserved bits \(Hex.string(raw & 0x1ff)) are set (qemu-img: ERROR refcount table entry \(t) has reserved bits set)")
                report.corruptions += 1
                continue
            }
            if offset % cs != 0 {
                problem(.c6, structure: s, field: "offset", value: Hex.string(offset), offset: at,
                    message: "refcount block \(t) at \(Hex.string(offset)) is not cluster aligned (qemu-img: ERROR refcount block \(t) is not cluster aligned; refcount table entry corrupted)")
                report.corruptions += 1
                continue
            }
            let cluster = offset / cs
            if cluster >= UInt64(foundCount) {
                problem(.c6, structure: s, field: "offset", value: Hex.string(offset), offset: at,
                    message: "refcount block \(t) at \(Hex.string(offset)) is outside the file (qemu-img: ERROR refcount block \(t) is outside image)")
                report.corruptions += 1
                continue
            }
            guard offset != 0 else { continue }
            count(offset, cs, s, offset: at)
            let r = found[Int(cluster)]
            if r != 1 {
                problem(.c6, structure: s, field: "offset", value: Hex.string(offset), offset: at,
                    message: "refcount block \(t) at \(Hex.string(offset)) is referenced \(r) times, not once: it overlaps other metadata (qemu-img: ERROR refcount block \(t) refcount=\(r))")
                report.corruptions += 1
            }
        }
    }

    /// `compare_refcounts`: each cluster's stored refcount against the references found.
    private mutating func compare() {
        var highest = 0
        let perBlock = 1 << Int(blockShift)
        var blockStart = 0
        while blockStart < foundCount {
            let t = blockStart >> Int(blockShift)
            let blockEnd = min(blockStart + perBlock, foundCount)
            defer { blockStart = blockEnd }
            let block = t < reftable.count ? reftable[t] & 0xffff_ffff_ffff_fe00 : 0
            if !unreadableBlocks.isEmpty && unreadableBlocks.contains(t) {
                for i in blockStart..<blockEnd {
                    report.checkErrors += 1
                    problem(.c7, structure: "refcount_table[\(t)]", field: "offset", value: Hex.string(block),
                        offset: image.header.refcountTableOffset &+ UInt64(t) * 8,
                        message: "the refcount of cluster \(i) cannot be read: its refcount block \(Hex.string(block)) is unreadable or not cluster aligned (qemu-img: Can't get refcount for cluster \(i): Input/output error)")
                }
                continue
            }
            var i = blockStart
            while i < blockEnd {
                // Whole pages that neither table wrote are zero on both sides.
                if !stored.hasPage(of: i) && !found.hasPage(of: i) {
                    i = min(blockEnd, (i >> ClusterCounts.pageBits + 1) << ClusterCounts.pageBits)
                    continue
                }
                defer { i += 1 }
                let r1 = stored[i]
                let r2 = found[i]
                if r1 == 0 && r2 == 0 { continue }
                highest = i
                guard r1 != r2 else { continue }
                let where_ = block == 0 ? nil : block &+ UInt64(i % perBlock) * refcountBits / 8
                let host = Hex.string(UInt64(i) * cs)
                if r1 < r2 {
                    problem(.c1, structure: "cluster[\(i)]", field: "refcount", value: "\(r1)", offset: where_,
                        message: "cluster \(i) (host offset \(host)) has refcount \(r1) but \(r2) references (qemu-img: ERROR cluster \(i) refcount=\(r1) reference=\(r2))")
                    report.corruptions += 1
                } else {
                    problem(.c2, structure: "cluster[\(i)]", field: "refcount", value: "\(r1)", offset: where_,
                        message: "cluster \(i) (host offset \(host)) has refcount \(r1) but \(r2) references (qemu-img: Leaked cluster \(i) refcount=\(r1) reference=\(r2))")
                    report.leaks += 1
                }
            }
        }
        report.imageEndOffset = UInt64(highest + 1) * cs
    }

    // MARK: Counting

    /// `qcow2_inc_refcounts_imrt`: one reference to every cluster of `[offset, offset + size)`; a range
    /// that ends one cluster or more past the end of the file is a corruption and counts nothing.
    private mutating func count(_ offset: UInt64, _ size: UInt64, _ what: @autoclosure () -> String, offset at: UInt64?) {
        guard size > 0 else { return }
        guard let end = offset +? size, end < fileLength || end - fileLength < cs else {
            problem(.c4, structure: what(), field: "offset", value: Hex.string(offset), offset: at,
                message: "\(size) bytes at \(Hex.string(offset)) end one cluster or more past the end of the file (\(fileLength) bytes) (qemu-img: ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset \(Hex.string(offset)) size \(Hex.string(size)))")
            report.corruptions += 1
            return
        }
        let first = Int(offset / cs)
        let last = Int((end - 1) / cs)
        guard last < found.count else { return }
        for k in first...last {
            if k >= foundCount { foundCount = k + 1 }
            switch found.increment(k, max: refcountMax, pageLimit: pageLimit) {
            case .done: continue
            case .atMax:
                problem(.c5, structure: what(), field: "offset", value: Hex.string(UInt64(k) * cs), offset: at,
                    message: "cluster \(k) is referenced more than \(refcountMax) times, the most refcount_bits \(refcountBits) can count (qemu-img: ERROR: overflow cluster offset=\(Hex.string(UInt64(k) * cs)))")
                report.corruptions += 1
            case .noMemory:
                memoryExceeded = true
                return
            }
        }
    }

    /// The check's counters reached ``CheckOptions/memoryLimit``.
    private func memoryStop() -> Stop {
        let used = (stored.allocatedBytes + found.allocatedBytes) >> 20
        return Stop(message: "checking needs more than \(used) MiB of counters (2 bytes for each host cluster in use of \(clusters)), the limit (--check-memory \(options.memoryLimit >> 20) MiB)")
    }

    /// The refcount stored for `cluster`, `nil` when QEMU cannot read it (its block is unaligned or unreadable).
    private mutating func storedRefcount(_ cluster: UInt64) -> UInt64? {
        let t = cluster >> blockShift
        guard t < UInt64(reftable.count) else { return 0 }
        if !unreadableBlocks.isEmpty && unreadableBlocks.contains(Int(t)) { return nil }
        if cluster < UInt64(stored.count) { return stored[Int(cluster)] }
        let offset = reftable[Int(t)] & 0xffff_ffff_ffff_fe00
        if offset == 0 { return 0 }
        guard offset % cs == 0 else { return nil }
        if blockCache[Int(t)] == nil {
            if blockCache.count >= 64 { blockCache.removeAll(keepingCapacity: true) }
            guard let b = try? readTable("refcount_block[\(t)]", at: offset, count: cs, abortOnError: false) else { return nil }
            blockCache[Int(t)] = b
        }
        guard let block = blockCache[Int(t)] else { return nil }
        return decode(block, Int(cluster & ((UInt64(1) << blockShift) - 1)))
    }

    /// Entry `i` of a refcount block: widths below 8 bits packed from the low bit of each byte, wider ones big-endian.
    private func decode(_ block: [UInt8], _ i: Int) -> UInt64 {
        let bits = Int(refcountBits)
        if bits >= 8 { return ByteReader.uint(block, at: i * bits / 8, width: bits / 8) }
        let bit = i * bits
        return (UInt64(block[bit / 8]) >> UInt64(bit % 8)) & ((UInt64(1) << UInt64(bits)) - 1)
    }

    private mutating func problem(
        _ rule: Rule, structure: String, field: String? = nil, value: String? = nil, offset: UInt64? = nil, message: String
    ) {
        report.problemCounts[rule.code, default: 0] += 1
        if report.problems.count < options.maxProblems {
            report.problems.append(Finding(rule, structure: structure, field: field, value: value, offset: offset, message: message))
        } else {
            report.problemsOmitted += 1
        }
    }

    // MARK: Reading

    /// Reads a table as QEMU does: zeros past the end of the file; a failed read stops the check
    /// (QEMU's check fails) unless `abortOnError` is false (then the caller decides).
    private mutating func readTable(_ structure: String, at offset: UInt64, count: UInt64, abortOnError: Bool = true) throws(Stop)
        -> [UInt8]
    {
        if options.shouldStop?() == true { throw Stop(message: "the check was stopped before it finished") }
        if memoryExceeded { throw memoryStop() }
        guard count <= budget else {
            throw Stop(message: "the check would read more than \(ImageCheck.readBudget(fileLength: fileLength) >> 20) MiB of tables, its budget for a file of \(fileLength) bytes: tables are referenced many times over")
        }
        budget -= count
        options.pace?(count)
        do {
            let bytes = try source.readZeroFilled(structure, at: offset, count: count)
            report.bytesRead &+= count
            done &+= count
            options.progress?(done, max(done, expected))
            return bytes
        } catch {
            if abortOnError {
                report.checkErrors += 1
                throw Stop(message: "reading \(structure) failed: \(error.description) (qemu-img: Check failed)")
            }
            throw Stop(message: error.description)
        }
    }

    /// Reads `count` bytes of the snapshot table at `offset` through `reader`'s window.
    private mutating func read(_ reader: inout SequentialReader, _ structure: String, at offset: UInt64, count: UInt64) throws(Stop)
        -> [UInt8]
    {
        guard count > 0 else { return [] }
        if let bytes = reader.slice(offset, count) { return bytes }
        let window = max(count, 64 << 10)
        reader.window = try readTable("snapshot_table", at: offset, count: window)
        reader.start = offset
        return reader.slice(offset, count) ?? []
    }

    /// A window of the snapshot table, read 64 KiB at a time.
    private struct SequentialReader {
        var start: UInt64
        var window: [UInt8] = []

        func slice(_ offset: UInt64, _ count: UInt64) -> [UInt8]? {
            guard offset >= start, offset - start + count <= UInt64(window.count) else { return nil }
            let lo = Int(offset - start)
            return Array(window[lo..<(lo + Int(count))])
        }
    }
}
