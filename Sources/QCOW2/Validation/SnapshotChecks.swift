/// The snapshot table rules S1-S8, checked against a decoded ``SnapshotTable``.
enum SnapshotChecks {
    /// Every S finding of `table`, entry by entry, then what stopped the decoding.
    static func check(_ table: SnapshotTable, header h: Header) -> [Finding] {
        var f = Bounded()
        let n = min(UInt64(h.nbSnapshots), Limits.maxSnapshots)
        guard n > 0 else { return [] }
        func tooMuchExtra(_ index: Int, _ offset: UInt64, _ extra: UInt64) {
            if extra > Limits.maxSnapshotExtraData {
                f.add(.s4,
                    Finding(.s4, structure: "snapshot[\(index)]", field: "extra_data_size", value: "\(extra)", offset: offset + 36,
                        message: "Too much extra metadata in snapshot table entry \(index) (QEMU allows 1024 bytes)"))
            }
        }
        var ids: Set<ByteString> = []
        for e in table.entries {
            let i = e.index
            let entryAt = e.entryOffset
            tooMuchExtra(i, entryAt, UInt64(e.extraDataSize))
            if e.l1TableOffset % h.clusterSize != 0 {
                f.add(.s2,
                    Finding(.s2, structure: "snapshot[\(i)]", field: "l1_table_offset", value: Hex.string(e.l1TableOffset),
                        offset: entryAt, message: "snapshot L1 table offset is not cluster aligned"))
            }
            if h.version >= 3 && e.extraDataSize < 16 {
                f.add(.s3,
                    Finding(.s3, structure: "snapshot[\(i)]", field: "extra_data_size", value: "\(e.extraDataSize)",
                        offset: entryAt + 36, message: "version 3 snapshots need at least 16 bytes of extra data"))
            }
            if ids.contains(e.id) {
                f.add(.s5,
                    Finding(.s5, structure: "snapshot[\(i)]", field: "id_str", value: e.id.escaped,
                        offset: entryAt + 40 + UInt64(e.extraDataSize), message: "duplicate snapshot ID"))
            }
            if UInt64(e.l1Size) * 8 > Limits.maxL1Bytes {
                f.add(.s6,
                    Finding(.s6, structure: "snapshot[\(i)]", field: "l1_size", value: "\(e.l1Size)", offset: entryAt + 8,
                        message: "snapshot L1 table larger than 32 MiB"))
            }
            let idAt = entryAt + 40 + UInt64(e.extraDataSize)
            for (field, bytes, at) in [("id_str", e.id, idAt), ("name", e.name, idAt + UInt64(e.idStrSize))] where bytes.containsNUL {
                f.add(.s7,
                    Finding(.s7, structure: "snapshot[\(i)]", field: field, value: bytes.hex, offset: at,
                        message: "the snapshot \(field == "name" ? "name" : "ID") holds a NUL byte: QEMU shows '\(bytes.beforeNUL.escaped)'"))
            }
            ids.insert(e.id)
        }
        for issue in table.issues {
            switch issue {
            case .snapshotTablePastEnd(let offset, let fileSize):
                f.add(.s8,
                    Finding(.s8, structure: "snapshot_table", field: "snapshots_offset", value: Hex.string(h.snapshotsOffset), offset: offset,
                        message: "the snapshot table runs past the end of the file (\(fileSize) bytes) from offset \(offset): that part reads as zeros, as QEMU reads it"))
            case .snapshotTableStartsPastEnd(let fileSize):
                f.add(.s1,
                    Finding(.s1, structure: "header", field: "snapshots_offset", value: Hex.string(h.snapshotsOffset), offset: 64,
                        message: "snapshot table starts past the end of the file (\(fileSize) bytes)"))
                return f.findings
            case .snapshotEntryTruncated(let i, let offset, let size, let extra):
                if let size, let extra {
                    tooMuchExtra(i, offset, extra)
                    f.add(.s1,
                        Finding(.s1, structure: "snapshot[\(i)]", offset: offset,
                            message: "snapshot table truncated: entry \(i) (\(size) bytes) runs past the end of the file or 64 MiB"))
                } else {
                    f.add(.s1,
                        Finding(.s1, structure: "snapshot[\(i)]", offset: offset,
                            message: "snapshot table truncated: entry \(i) of \(h.nbSnapshots) runs past the end of the file or 64 MiB"))
                }
            case .snapshotEntryUndecodable(let i, let offset, let extra):
                tooMuchExtra(i, offset, extra)
                f.add(.s1,Finding(.s1, structure: "snapshot[\(i)]", offset: offset, message: "snapshot entry \(i) cannot be parsed"))
            default:
                break
            }
        }
        if UInt64(h.nbSnapshots) > n {
            f.add(.s1,
                Finding(.s1, structure: "header", field: "nb_snapshots", value: "\(h.nbSnapshots)", offset: 60,
                    message: "only the first \(n) snapshots were read"))
        }
        return f.findings
    }

    /// Findings of one code listed at most: a table of 65,536 entries (zeros past the end of a tiny
    /// file read as empty entries) would otherwise yield one finding per entry and rule.
    static let maxPerCode = 100

    /// Findings collected with at most ``maxPerCode`` of each code, then one finding per capped code
    /// saying how many more there are (same rule and severity, so counts by code still show the rule).
    struct Bounded {
        private var listed: [Finding] = []
        private var counts: [String: Int] = [:]
        private var firstOmitted: [Finding] = []

        /// Counts a finding of `rule`; `finding` is made only when it is listed (65,536 entries make
        /// as many findings per rule: their texts are not built for nothing).
        mutating func add(_ rule: Rule, _ finding: @autoclosure () -> Finding) {
            let k = counts[rule.code, default: 0]
            counts[rule.code] = k + 1
            if k < SnapshotChecks.maxPerCode {
                listed.append(finding())
            } else if k == SnapshotChecks.maxPerCode {
                firstOmitted.append(finding())
            }
        }

        var findings: [Finding] {
            listed + firstOmitted.map { f in
                let more = (counts[f.code] ?? 0) - SnapshotChecks.maxPerCode
                return Finding(
                    f.rule, structure: "snapshot_table", field: f.field, value: "\(more) more", offset: f.offset,
                    message: "\(more) more \(f.code) findings in the snapshot table are not listed (the first at \(f.structure))")
            }
        }
    }
}
