public import QCOW2

/// Turns the parser's model into the JSON documents of the API (and of the CLI's `--format json`).
///
/// One function per view; field names are qcow2.py's where it has one, snake_case otherwise.
/// Every number is exact (u64 values above 2^53 are printed in full).
public enum ImageViews {
    /// A byte string as `name` (its text up to a NUL, as QEMU shows it) plus `name_hex` when it is not
    /// valid UTF-8 or holds a NUL.
    static func text(_ key: String, _ b: ByteString?, into o: inout [(String, JSONValue)], alwaysHex: Bool = false) {
        guard let b else {
            o.append((key, .null))
            return
        }
        // As QEMU shows it: up to the first NUL (D16, H21 report one); the stored bytes are in `_hex` then.
        o.append((key, .string(b.beforeNUL.escaped)))
        if alwaysHex || b.utf8 == nil || b.containsNUL { o.append((key + "_hex", .string(b.hex))) }
    }

    /// `/v1/images/{image}/header`.
    public static func header(_ image: QCOW2Image) -> JSONValue {
        let h = image.header
        var o: [(String, JSONValue)] = [
            ("magic", .num(h.magic)), ("version", .num(h.version)),
            ("backing_file_offset", .num(h.backingFileOffset)), ("backing_file_size", .num(h.backingFileSize)),
            ("cluster_bits", .num(h.clusterBits)), ("size", .num(h.size)), ("crypt_method", .num(h.cryptMethod)),
            ("l1_size", .num(h.l1Size)), ("l1_table_offset", .num(h.l1TableOffset)),
            ("refcount_table_offset", .num(h.refcountTableOffset)),
            ("refcount_table_clusters", .num(h.refcountTableClusters)), ("nb_snapshots", .num(h.nbSnapshots)),
            ("snapshot_offset", .num(h.snapshotsOffset)), ("incompatible_features", .num(h.incompatibleFeatures)),
            ("compatible_features", .num(h.compatibleFeatures)), ("autoclear_features", .num(h.autoclearFeatures)),
            ("refcount_order", .num(h.refcountOrder)), ("header_length", .num(h.headerLength)),
            ("compression_type", .num(h.compressionType)),
            ("compression_type_name", .string(h.compressionTypeName)),
            ("cluster_size", .num(h.clusterSize)),
            ("refcount_bits", h.refcountBits.map { .num($0) } ?? .null),
            ("compat", .string(h.compat)),
            (
                "features",
                .object(FeatureGroup.allCases.map { g in (g.name, .array(image.featureNames(g).map { .string($0) })) })
            ),
        ]
        text("backing_file", image.backingFile, into: &o)
        return .object(o)
    }

    /// One header extension with its decoded data.
    public static func extensionDoc(_ e: HeaderExtension) -> JSONValue {
        var o: [(String, JSONValue)] = [
            ("magic", .string(Hex.string(e.magic))), ("name", .string(e.label)),
            ("type", .string(e.kind?.id ?? "unknown")), ("length", .num(e.length)), ("offset", .num(e.offset)),
        ]
        var d: [(String, JSONValue)] = []
        switch e.payload {
        case .string(let s):
            text(e.kind == .backingFormat ? "format" : "name", s, into: &d)
        case .featureNames(let entries):
            d.append(
                (
                    "entries",
                    .array(
                        entries.map { f in
                            var fo: [(String, JSONValue)] = [
                                ("type", .string(f.group?.name ?? "unknown")), ("type_code", .num(f.type)),
                                ("bit", .num(f.bit)),
                            ]
                            text("name", f.name, into: &fo)
                            return .object(fo)
                        })
                ))
        case .bitmaps(let b):
            d = [
                ("nb_bitmaps", .num(b.nbBitmaps)), ("reserved32", .num(b.reserved32)),
                ("bitmap_directory_size", .num(b.directorySize)),
                ("bitmap_directory_offset", .num(b.directoryOffset)),
            ]
        case .crypto(let off, let len):
            d = [("offset", .num(off)), ("length", .num(len))]
        case .raw:
            d = [("hex", .string(Hex.bytes(e.data)))]
        }
        o.append(("data", .object(d)))
        o.append(("truncated", .bool(e.isTruncated)))
        return .object(o)
    }

    /// `/v1/images/{image}/extensions`.
    public static func extensions(_ image: QCOW2Image) -> JSONValue {
        .array(image.extensions.map(extensionDoc))
    }

    /// The bitmaps extension fields, or null.
    public static func bitmapsExtension(_ image: QCOW2Image) -> JSONValue {
        guard let b = image.bitmapsExtension else { return .null }
        return .obj([
            "nb_bitmaps": .num(b.nbBitmaps), "bitmap_directory_size": .num(b.directorySize),
            "bitmap_directory_offset": .num(b.directoryOffset), "reserved32": .num(b.reserved32),
        ])
    }

    /// One bitmap directory entry with derived fields and its findings (`findings`: those of this bitmap).
    public static func bitmap(
        _ b: BitmapDirectoryEntry, in image: QCOW2Image, findings: [Finding],
        dirty: ((BitmapDirectoryEntry) -> DirtyCount)? = nil, locks: LockState? = nil
    ) -> JSONValue {
        var o: [(String, JSONValue)] = [("index", .num(b.index))]
        text("name", b.name, into: &o, alwaysHex: true)
        o += [
            ("address", .string(PercentEncoding.encode(image.address(of: b).bytes))),
            ("bitmap_table_offset", .num(b.tableOffset)), ("bitmap_table_size", .num(b.tableSize)),
            ("flags", .array(b.flagNames.map { .string($0) })), ("flags_raw", .num(b.flags)), ("enabled", .bool(b.auto)),
            ("type", .num(b.type)), ("granularity_bits", .num(b.granularityBits)),
            ("name_size", .num(b.nameSize)), ("extra_data_size", .num(b.extraDataSize)),
            ("extra_data_hex", .string(Hex.bytes(b.extraData))),
            ("granularity", b.granularity.map { .num($0) } ?? .null),
            ("in_use", .bool(b.inUse)), ("auto", .bool(b.auto)), ("entry_offset", .num(b.entryOffset)),
            ("consistent", .bool(image.isConsistent(b))),
            ("inconsistent_reason", .str(image.inconsistencyReason(b, writerPresent: locks?.writerPresent))),
        ]
        if let dirty { o += dirtyFields(dirty(b), size: image.header.size) }
        if let locks { o += staleFields(locks) }
        o.append(("findings", .array(findings.map(finding))))
        return .object(o)
    }

    /// `dirty_bytes`, `dirty_fraction` (of the virtual size) and `dirty_bytes_reason`.
    static func dirtyFields(_ c: DirtyCount, size: UInt64) -> [(String, JSONValue)] {
        let fraction: JSONValue = c.bytes.map { size == 0 ? .double(0) : .double(Double($0) / Double(size)) } ?? .null
        return [("dirty_bytes", c.bytes.map { .num($0) } ?? .null), ("dirty_fraction", fraction), ("dirty_bytes_reason", .str(c.reason))]
    }

    /// `writer_present` and `stale_reason` of every bitmap answer (see ``LockState``).
    public static func staleFields(_ l: LockState) -> [(String, JSONValue)] {
        let reason: String?
        switch l.writerPresent {
        case true?:
            reason = "a writer holds the image (QEMU lock byte 101): it keeps its bitmaps in memory and may change "
                + "the file at any moment, so the bitmap data on disk may be stale or change while it is read"
        case nil: reason = "cannot tell whether a writer holds the image: \(l.error ?? "lock probe failed")"
        case false?: reason = nil
        }
        return [("writer_present", l.writerPresent.map { .bool($0) } ?? .null), ("stale_reason", .str(reason))]
    }

    /// `/v1/images/{image}/locks`: QEMU's lock bytes on the image, probed now.
    public static func locks(_ l: LockState, image name: String) -> JSONValue {
        func opt(_ b: Bool?) -> JSONValue { b.map { .bool($0) } ?? .null }
        return .obj([
            "image": .string(name), "writer_present": opt(l.writerPresent), "readers_present": opt(l.readersPresent),
            "shared_write_allowed": opt(l.sharedWriteAllowed), "locks_held": opt(l.locksHeld),
            "permissions_held": .array(l.names(.permission).map { .string($0) }),
            "permissions_not_shared": .array(l.names(.notShared).map { .string($0) }),
            "bytes": .array(
                l.bytes.map { b in
                    .obj([
                        "offset": .num(b.offset), "kind": .string(b.kind.rawValue), "permission": .string(b.permission),
                        "meaning": .string(b.meaning), "held": opt(b.held), "lock_type": .str(b.lockType),
                        "owner_pid": b.ownerPID.map { .num($0) } ?? .null,
                    ])
                }),
            "probe_error": .str(l.error),
        ])
    }

    /// One bitmap table entry.
    public static func tableEntry(_ e: BitmapTableEntry) -> JSONValue {
        .obj([
            "index": .num(e.index), "type": .string(e.kind.rawValue), "offset": .num(e.dataOffset),
            "reserved": .num(e.reserved), "raw": .string(Hex.string(e.raw)),
            "guest_start": e.guestStart.map { .num($0) } ?? .null,
            "guest_length": e.guestLength.map { .num($0) } ?? .null,
        ])
    }

    /// One L1 table entry.
    public static func l1Entry(_ e: L1Entry) -> JSONValue {
        .obj([
            "index": .num(e.index), "raw": .string(Hex.string(e.raw)), "l2_offset": .num(e.l2Offset),
            "copied": .bool(e.copied), "reserved": .num(e.reserved),
            "guest_start": e.guestStart.map { .num($0) } ?? .null,
            "guest_length": e.guestLength.map { .num($0) } ?? .null,
        ])
    }

    /// One L2 table entry: its type in QEMU's terms, host offset, compressed extent, subcluster bitmaps.
    public static func l2Entry(_ e: L2Entry) -> JSONValue {
        let kind = e.kind
        let hasOffset = kind == .normal || kind == .zeroAllocated || kind == .compressed
        return .obj([
            "index": .num(e.index), "raw": .string(Hex.string(e.raw)),
            "raw_bitmap": e.bitmap.map { .string(Hex.string($0)) } ?? .null, "type": .string(kind.rawValue),
            "host_offset": hasOffset ? .num(e.hostOffset) : .null,
            "compressed_sectors": e.compressedAdditionalSectors.map { .num($0) } ?? .null,
            "compressed_bytes": e.compressedBytes.map { .num($0) } ?? .null, "copied": .bool(e.copied),
            "reserved": .num(e.reserved),
            "subcluster_allocated": e.subclusterAllocated.map { .num($0) } ?? .null,
            "subcluster_zero": e.subclusterZero.map { .num($0) } ?? .null,
            "guest_start": e.guestStart.map { .num($0) } ?? .null,
            "guest_length": e.guestLength.map { .num($0) } ?? .null,
        ])
    }

    /// One dirty/clean extent.
    public static func extent(_ e: DirtyExtent) -> JSONValue {
        .obj(["start": .num(e.start), "length": .num(e.length), "dirty": .bool(e.dirty)])
    }

    /// One finding.
    public static func finding(_ f: Finding) -> JSONValue {
        .obj([
            "code": .string(f.code), "severity": .string(f.severity.rawValue), "structure": .string(f.structure),
            "field": .str(f.field), "value": .str(f.value), "offset": f.offset.map { .num($0) } ?? .null,
            "bitmap_index": f.bitmapIndex.map { .num($0) } ?? .null, "message": .string(f.message),
        ])
    }

    /// The check verdict the listing and the summary carry: `{state, checked_at, check_errors, corruptions,
    /// leaks}`; `pending` with nulls when this file version was not checked yet.
    public static func checkState(_ outcome: CheckOutcome?) -> JSONValue {
        guard let o = outcome else {
            return .obj([
                "state": .string("pending"), "checked_at": .null, "check_errors": .null, "corruptions": .null, "leaks": .null,
            ])
        }
        return .obj([
            "state": .string(o.state), "checked_at": .string(Timestamp.rfc3339(seconds: o.checkedAt)),
            "check_errors": .num(o.report.checkErrors), "corruptions": .num(o.report.corruptions), "leaks": .num(o.report.leaks),
        ])
    }

    /// The rule registry: `{"rules": [{code, severity, not_checked_severity, structure, summary, action,
    /// reference}]}`, in the registry's order.
    public static func rules() -> JSONValue {
        .obj([
            "rules": .array(
                Rule.all.map { r in
                    .obj([
                        "code": .string(r.code), "severity": .string(r.severity.rawValue),
                        "not_checked_severity": .str(r.notCheckedSeverity?.rawValue), "structure": .string(r.structure.rawValue),
                        "summary": .string(r.summary), "action": .string(r.action), "reference": .string(r.reference),
                    ])
                })
        ])
    }

    /// Counts of findings by severity: `{error, warning, info}`.
    public static func findingCounts(_ index: FindingIndex) -> JSONValue {
        .object(Finding.Severity.allCases.map { s in (s.rawValue, .num(index.count(s))) })
    }

    /// Counts of findings by rule code: `{"D5": 1, "T1": 96}`, codes in order.
    public static func codeCounts(_ index: FindingIndex) -> JSONValue {
        .object(index.byCode.map { ($0.code, .num($0.count)) })
    }

    /// One snapshot.
    public static func snapshot(_ s: SnapshotEntry) -> JSONValue {
        var o: [(String, JSONValue)] = [("index", .num(s.index))]
        text("id", s.id, into: &o)
        text("name", s.name, into: &o)
        o += [
            ("l1_table_offset", .num(s.l1TableOffset)), ("l1_size", .num(s.l1Size)),
            ("vm_state_size", .num(s.vmStateSize)), ("date_sec", .num(s.dateSec)), ("date_nsec", .num(s.dateNsec)),
            ("date", .string(Timestamp.rfc3339(seconds: Int64(s.dateSec), nanoseconds: Int64(s.dateNsec)))),
            ("vm_clock_nsec", .num(s.vmClockNsec)),
            ("icount", s.icountSigned.map { .num($0) } ?? .null),
            ("disk_size", s.diskSize.map { .num($0) } ?? .null), ("extra_data_size", .num(s.extraDataSize)),
            ("entry_offset", .num(s.entryOffset)),
        ]
        return .object(o)
    }

    /// Bitmaps listed at most in a summary (the rest are paged by `/v1/images/{image}/bitmaps`).
    public static let summaryBitmaps = 100

    /// The summary in qemu-img's vocabulary (`/v1/images/{image}`).
    ///
    /// At most ``summaryBitmaps`` bitmaps are listed; `bitmaps_total` says how many there are and
    /// `bitmaps_next` where the rest are (the `/bitmaps` page after them), null when all are here.
    ///
    /// `backing_file_present` is what ``BackingFileCheck`` found: `true`, `false` (a B1 finding says where
    /// it was looked for), or null when the image has no backing file or it could not be looked for.
    public static func summary(
        _ image: QCOW2Image, file: FileInfo, findings: FindingIndex,
        dirty: ((BitmapDirectoryEntry) -> DirtyCount)? = nil, locks: LockState? = nil, backing: BackingFileCheck? = nil
    ) -> JSONValue {
        let h = image.header
        var o: [(String, JSONValue)] = [
            ("name", .string(file.name)), ("format", .string("qcow2")), ("virtual_size", .num(h.size)),
            ("actual_size", .num(file.allocatedBytes)), ("size_bytes", .num(file.size)),
            ("mtime", .string(file.mtimeRFC3339)), ("cluster_size", .num(h.clusterSize)),
            ("compat", .string(h.compat)), ("compression_type", .string(h.compressionTypeName)),
            // Lazy refcounts are a version 3 feature: qemu-img omits them for compat 0.10.
            ("lazy_refcounts", h.version >= 3 ? .bool(h.compatibleFeatures & Header.lazyRefcountsBit != 0) : .null),
            ("extended_l2", .bool(h.incompatibleFeatures & Header.extendedL2Bit != 0)),
            ("refcount_bits", h.refcountBits.map { .num($0) } ?? .null),
            ("dirty", .bool(h.incompatibleFeatures & Header.dirtyBit != 0)),
            ("corrupt", .bool(h.incompatibleFeatures & Header.corruptBit != 0)),
        ]
        text("backing_file", image.backingFile, into: &o)
        // As qemu-img: a backing format extension means nothing without a backing file (X7 reports it).
        text("backing_file_format", image.backingFile == nil ? nil : image.backingFormat, into: &o)
        o.append(("backing_file_present", backing?.present.map { .bool($0) } ?? .null))
        text("data_file", image.dataFile, into: &o)
        o.append(("data_file_raw", .bool(h.autoclearFeatures & Header.rawExternalDataBit != 0)))
        o.append(("encrypted", .bool(h.cryptMethod != 0)))
        let enc: String? = h.cryptMethod == 1 ? "aes" : h.cryptMethod == 2 ? "luks" : nil
        o.append(("encryption_format", .str(enc)))
        o.append(("snapshots", .num(h.nbSnapshots)))
        o.append(
            (
                "bitmaps",
                .array(
                    image.bitmaps.prefix(summaryBitmaps).map { b in
                        var bo: [(String, JSONValue)] = []
                        text("name", b.name, into: &bo)
                        bo += [
                            ("granularity", b.granularity.map { .num($0) } ?? .null),
                            ("flags", .array(b.flagNames.map { .string($0) })), ("enabled", .bool(b.auto)),
                            ("consistent", .bool(image.isConsistent(b))),
                        ]
                        if let dirty { bo += dirtyFields(dirty(b), size: h.size) }
                        return .object(bo)
                    })
            ))
        o.append(("bitmaps_total", .num(image.bitmaps.count)))
        let more = image.bitmaps.count > summaryBitmaps
        let bitmapsPath = RouteTable.route(.bitmaps).path(image: Array(file.name.utf8))
        o.append(("bitmaps_next", more ? .string(bitmapsPath + "?cursor=\(summaryBitmaps)") : .null))
        o.append(("finding_counts", findingCounts(findings)))
        if let locks {
            o.append(("writer_present", locks.writerPresent.map { .bool($0) } ?? .null))
            o.append(("locks_held", locks.locksHeld.map { .bool($0) } ?? .null))
        }
        return .object(o)
    }

    /// A parser error as JSON: `code` (the error kind), structure, field, value, offset and message.
    public static func error(_ e: QCOW2Error) -> JSONValue {
        .obj([
            "kind": .string(e.kind.rawValue), "code": .string(e.kind.rawValue), "structure": .string(e.structure),
            "field": .str(e.field), "value": .str(e.value), "offset": e.offset.map { .num($0) } ?? .null,
            "message": .string(e.message),
        ])
    }
}

extension ImageViews {
    /// One map extent, keys in qemu-img map's order; `offset` only when qemu-img 7.2 prints one.
    public static func mapExtent(_ e: MapExtent) -> JSONValue {
        var o: [(String, JSONValue)] = [
            ("start", .num(e.start)), ("length", .num(e.length)), ("depth", .num(e.depth)), ("present", .bool(e.present)),
            ("zero", .bool(e.zero)), ("data", .bool(e.data)), ("compressed", .bool(e.compressed)),
        ]
        if let offset = e.offset { o.append(("offset", .num(offset))) }
        return .object(o)
    }
}
