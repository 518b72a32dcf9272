/// The snapshot table rules S1-S8, checked against a decoded ``SnapshotTable``.
enum SnapshotChecks {
    /// Every S finding of `table`, entry by entry, then what stopped the decoding.
    static func check(_ table: SnapshotTable, header h: Header) -> [Finding] {
        var f: [Finding] = []
        let n = min(UInt64(h.nbSnapshots), Limits.maxSnapshots)
        guard n > 0 else { return f }
        func tooMuchExtra(_ index: Int, _ offset: UInt64, _ extra: UInt64) {
            if extra > Limits.maxSnapshotExtraData {
                f.append(
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
                f.append(
                    Finding(.s2, structure: "snapshot[\(i)]", field: "l1_table_offset", value: Hex.string(e.l1TableOffset),
                        offset: entryAt, message: "snapshot L1 table offset is not cluster aligned"))
            }
            if h.version >= 3 && e.extraDataSize < 16 {
                f.append(
                    Finding(.s3, structure: "snapshot[\(i)]", field: "extra_data_size", value: "\(e.extraDataSize)",
                        offset: entryAt + 36, message: "version 3 snapshots need at least 16 bytes of extra data"))
            }
            if ids.contains(e.id) {
                f.append(
                    Finding(.s5, structure: "snapshot[\(i)]", field: "id_str", value: e.id.escaped,
                        offset: entryAt + 40 + UInt64(e.extraDataSize), message: "duplicate snapshot ID"))
            }
            if UInt64(e.l1Size) * 8 > Limits.maxL1Bytes {
                f.append(
                    Finding(.s6, structure: "snapshot[\(i)]", field: "l1_size", value: "\(e.l1Size)", offset: entryAt + 8,
                        message: "snapshot L1 table larger than 32 MiB"))
            }
            for (field, bytes, at) in [
                ("id_str", e.id, entryAt + 40 + UInt64(e.extraDataSize)),
                ("name", e.name, entryAt + 40 + UInt64(e.extraDataSize) + UInt64(e.idStrSize)),
            ] where bytes.containsNUL {
                f.append(
                    Finding(.s7, structure: "snapshot[\(i)]", field: field, value: bytes.hex, offset: at,
                        message: "the snapshot \(field == "name" ? "name" : "ID") holds a NUL byte: QEMU shows '\(bytes.beforeNUL.escaped)'"))
            }
            ids.insert(e.id)
        }
        for issue in table.issues {
            switch issue {
            case .snapshotTablePastEnd(let offset, let fileSize):
                f.append(
                    Finding(.s8, structure: "snapshot_table", field: "snapshots_offset", value: Hex.string(h.snapshotsOffset), offset: offset,
                        message: "the snapshot table runs past the end of the file (\(fileSize) bytes) from offset \(offset): that part reads as zeros, as QEMU reads it"))
            case .snapshotTableStartsPastEnd(let fileSize):
                f.append(
                    Finding(.s1, structure: "header", field: "snapshots_offset", value: Hex.string(h.snapshotsOffset), offset: 64,
                        message: "snapshot table starts past the end of the file (\(fileSize) bytes)"))
                return f
            case .snapshotEntryTruncated(let i, let offset, let size, let extra):
                if let size, let extra {
                    tooMuchExtra(i, offset, extra)
                    f.append(
                        Finding(.s1, structure: "snapshot[\(i)]", offset: offset,
                            message: "snapshot table truncated: entry \(i) (\(size) bytes) runs past the end of the file or 64 MiB"))
                } else {
                    f.append(
                        Finding(.s1, structure: "snapshot[\(i)]", offset: offset,
                            message: "snapshot table truncated: entry \(i) of \(h.nbSnapshots) runs past the end of the file or 64 MiB"))
                }
            case .snapshotEntryUndecodable(let i, let offset, let extra):
                tooMuchExtra(i, offset, extra)
                f.append(Finding(.s1, structure: "snapshot[\(i)]", offset: offset, message: "snapshot entry \(i) cannot be parsed"))
            default:
                break
            }
        }
        if UInt64(h.nbSnapshots) > n {
            f.append(
                Finding(.s1, structure: "header", field: "nb_snapshots", value: "\(h.nbSnapshots)", offset: 60,
                    message: "only the first \(n) snapshots were read"))
        }
        return f
    }
}
