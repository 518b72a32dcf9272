/// The cluster-mapping rules (M): each damaged L1 or L2 entry the map met becomes one finding.
public enum MapChecks {
    /// The finding for `issue`, naming the entry, its raw value, its file offset and the guest bytes it maps.
    ///
    /// - Parameter layer: the name of the layer whose table holds the entry (for a backing file's entry).
    public static func finding(_ issue: MapIssue, layer: String? = nil) -> Finding {
        let raw = Hex.string(issue.raw)
        let entry = issue.l2Index.map { "l2_table[\(issue.l1Index)][\($0)]" } ?? "l1_table[\(issue.l1Index)]"
        let structure = layer.map { "\($0): \(entry)" } ?? entry
        let guest = "guest offset \(issue.guestOffset) (\(Hex.string(issue.guestOffset)))"
        func f(_ rule: Rule, _ field: String, _ message: String) -> Finding {
            Finding(rule, structure: structure, field: field, value: raw, offset: issue.entryOffset, message: message)
        }
        switch issue.kind {
        case .l2TableUnaligned:
            return f(.m1, "l2_offset", "the L2 table offset \(raw) is not cluster aligned; the range from \(guest) reads as unallocated")
        case .l2TablePastEnd:
            return f(.m2, "l2_offset", "the L2 table at \(Hex.string(issue.raw & L1Entry.offsetMask)) lies past the end of the file; it reads as zeros from \(guest)")
        case .l1Reserved(let bits):
            return f(.m3, "reserved", "reserved bits \(Hex.string(bits)) are set")
        case .dataUnaligned:
            return f(.m4, "host_offset", "the data cluster offset \(Hex.string(issue.raw & L2Entry.offsetMask)) of \(guest) is not cluster aligned")
        case .dataPastEnd:
            return f(.m5, "host_offset", "the data cluster of \(guest) starts at \(Hex.string(issue.raw & L2Entry.offsetMask)), at or past the end of the file")
        case .l2Reserved(let bits):
            return f(.m6, "reserved", "reserved bits \(Hex.string(bits)) are set in the entry of \(guest)")
        case .compressedPastEnd(let end):
            return f(.m7, "compressed", "the compressed data of \(guest) ends at \(Hex.string(end)), past the end of the file")
        case .zeroFlagInVersion2:
            return f(.m8, "zero", "the zero flag is set on \(guest) in a version 2 image")
        case .invalidSubclusterBitmap(let bitmap):
            return Finding(
                .m9, structure: structure, field: "bitmap", value: Hex.string(bitmap), offset: issue.entryOffset &+ 8,
                message: "the subcluster bitmap \(Hex.string(bitmap)) of \(guest) is invalid")
        case .compressedWithDataFile:
            return f(.m10, "compressed", "\(guest) is compressed in an image with an external data file")
        case .dataFileOffsetMismatch:
            return f(.m11, "host_offset", "\(guest) maps to data file offset \(Hex.string(issue.raw & L2Entry.offsetMask)), not to its own offset")
        }
    }
}
