/// Header (`H*`) and header extension (`X*`) rules of qcow2-format.md §1 that need no refcount walk.
enum HeaderChecks {
    /// Checks the header fields on their own.
    static func check(_ h: Header, fileSize: UInt64) -> [Finding] {
        var f: [Finding] = []
        func add(_ code: String, _ sev: Finding.Severity, _ field: String, _ value: String, _ off: UInt64, _ msg: String)
        {
            f.append(Finding(code, sev, structure: "header", field: field, value: value, offset: off, message: msg))
        }
        let cs = h.clusterSize
        if h.clusterBits > 21 {
            add("H1", .error, "cluster_bits", "\(h.clusterBits)", 20, "QEMU supports cluster sizes 512 B to 2 MiB (cluster_bits 9-21)")
        }
        if h.version == 3 {
            if h.headerLength % 8 != 0 {
                add("H2", .warning, "header_length", "\(h.headerLength)", 100, "header_length must be a multiple of 8")
            }
            if UInt64(h.headerLength) > cs {
                add("H3", .error, "header_length", "\(h.headerLength)", 100, "qcow2 header exceeds cluster size (\(cs))")
            }
            if UInt64(h.headerLength) > fileSize {
                add("H3", .error, "header_length", "\(h.headerLength)", 100, "header runs past the end of the file (\(fileSize) bytes)")
            }
        }
        let unknownIncompat = h.incompatibleFeatures & ~FeatureGroup.incompatible.knownMask
        if unknownIncompat != 0 {
            add("H4", .error, "incompatible_features", Hex.string(unknownIncompat), 72,
                "unknown incompatible feature bits \(FeatureGroup.bits(of: unknownIncompat)): QEMU refuses to open the image")
        }
        if h.incompatibleFeatures & Header.dirtyBit != 0 {
            add("H5", .warning, "incompatible_features", "dirty bit", 72,
                "dirty bit set: refcounts may be inconsistent (lazy refcounts after a crash, or the image is open)")
        }
        if h.incompatibleFeatures & Header.corruptBit != 0 {
            add("H6", .error, "incompatible_features", "corrupt bit", 72,
                "corrupt bit set: QEMU found metadata corruption; the image cannot be opened read/write")
        }
        let bit3 = h.incompatibleFeatures & Header.compressionTypeBit != 0
        if h.compressionType > 1 {
            add("H7", .error, "compression_type", "\(h.compressionType)", 104, "unknown compression type")
        } else if bit3 && h.compressionType == 0 {
            add("H7", .error, "compression_type", "0", 104, "compression type incompatible bit is set but the type is zlib")
        } else if !bit3 && h.compressionType != 0 {
            add("H7", .error, "compression_type", "\(h.compressionType)", 104,
                "non-zlib compression type without the compression type incompatible bit")
        }
        if h.cryptMethod > 2 {
            add("H8", .error, "crypt_method", "\(h.cryptMethod)", 32, "unsupported encryption method (0 none, 1 AES, 2 LUKS)")
        }
        if h.backingFileOffset != 0 {
            if h.backingFileOffset > cs {
                add("H9", .error, "backing_file_offset", Hex.string(h.backingFileOffset), 8,
                    "backing file name must lie inside cluster 0 (\(cs) bytes)")
            }
            if UInt64(h.backingFileSize) > Limits.maxBackingFileName {
                add("H9", .error, "backing_file_size", "\(h.backingFileSize)", 16, "backing file name longer than 1023 bytes")
            } else if let end = h.backingFileOffset +? UInt64(h.backingFileSize), end > min(cs, fileSize) {
                add("H9", .error, "backing_file_size", "\(h.backingFileSize)", 16,
                    "backing file name ends at \(end), past cluster 0 or the end of the file")
            }
        }
        for (name, value, off) in [
            ("l1_table_offset", h.l1TableOffset, UInt64(40)), ("refcount_table_offset", h.refcountTableOffset, 48),
            ("snapshots_offset", h.snapshotsOffset, 64),
        ] where value % cs != 0 {
            if name == "snapshots_offset" && h.nbSnapshots == 0 && value == 0 { continue }
            add("H10", .error, name, Hex.string(value), off, "not aligned to the cluster size (\(cs))")
        }
        if h.refcountTableClusters == 0 {
            add("H11", .error, "refcount_table_clusters", "0", 56, "the refcount table must have at least one cluster")
        } else if let bytes = UInt64(h.refcountTableClusters) *? cs, bytes > Limits.maxRefcountTableBytes {
            add("H11", .error, "refcount_table_clusters", "\(h.refcountTableClusters)", 56,
                "refcount table of \(bytes) bytes exceeds QEMU's 8 MiB limit")
        }
        if h.refcountOrder > 6 {
            add("H12", .error, "refcount_order", "\(h.refcountOrder)", 96, "refcount width above 64 bits (order > 6)")
        }
        let l2Entries = cs / (h.incompatibleFeatures & Header.extendedL2Bit != 0 ? 16 : 8)
        if let perL1 = cs *? l2Entries {
            let needed = Checked.divCeil(h.size, perL1)
            if UInt64(h.l1Size) < needed {
                add("H13", .error, "l1_size", "\(h.l1Size)", 36, "L1 table is too small: \(needed) entries needed for the virtual size")
            }
        }
        if UInt64(h.l1Size) * 8 > Limits.maxL1Bytes {
            add("H13", .error, "l1_size", "\(h.l1Size)", 36, "active L1 table larger than QEMU's 32 MiB limit")
        }
        if h.incompatibleFeatures & Header.extendedL2Bit != 0 && h.clusterBits < 14 {
            add("H14", .error, "cluster_bits", "\(h.clusterBits)", 20, "extended L2 entries need clusters of at least 16 KiB")
        }
        if h.autoclearFeatures & Header.rawExternalDataBit != 0 && h.incompatibleFeatures & Header.externalDataFileBit == 0 {
            add("H15", .error, "autoclear_features", "raw external data", 88, "raw external data bit set without an external data file")
        }
        if h.additionalBytes.count >= 7 && h.additionalBytes.prefix(7).contains(where: { $0 != 0 }) {
            add("H16", .warning, "padding", Hex.bytes(Array(h.additionalBytes.prefix(7))), 105, "header padding bytes 105-111 must be zero")
        }
        let unknownCompat = h.compatibleFeatures & ~FeatureGroup.compatible.knownMask
        if unknownCompat != 0 {
            add("H17", .info, "compatible_features", Hex.string(unknownCompat), 80, "unknown compatible feature bits (safe to ignore)")
        }
        let unknownAuto = h.autoclearFeatures & ~FeatureGroup.autoclear.knownMask
        if unknownAuto != 0 {
            add("H17", .info, "autoclear_features", Hex.string(unknownAuto), 88,
                "unknown autoclear feature bits (a writable open by QEMU clears them)")
        }
        if UInt64(h.nbSnapshots) > Limits.maxSnapshots {
            add("H18", .error, "nb_snapshots", "\(h.nbSnapshots)", 60, "more than QEMU's 65536 snapshots")
        }
        if h.nbSnapshots > 0 && h.incompatibleFeatures & Header.externalDataFileBit != 0 {
            add("H18", .error, "nb_snapshots", "\(h.nbSnapshots)", 60, "internal snapshots are not allowed with an external data file")
        }
        if h.l1Size > 0, let end = h.l1TableOffset +? UInt64(h.l1Size) * 8, end > fileSize {
            add("H19", .error, "l1_table_offset", Hex.string(h.l1TableOffset), 40, "L1 table ends at \(end), past the end of the file (\(fileSize))")
        }
        if let bytes = UInt64(h.refcountTableClusters) *? cs, let end = h.refcountTableOffset +? bytes,
            bytes > 0, end > fileSize
        {
            add("H19", .error, "refcount_table_offset", Hex.string(h.refcountTableOffset), 48,
                "refcount table ends at \(end), past the end of the file (\(fileSize))")
        }
        return f
    }

    /// Checks the extensions against the header and each other.
    static func checkExtensions(_ h: Header, extensions: [HeaderExtension], backingFile: ByteString?) -> [Finding] {
        var f: [Finding] = []
        var seen: Set<UInt32> = []
        for e in extensions {
            if let kind = e.kind {
                if seen.contains(e.magic) {
                    f.append(
                        Finding(
                            "X2", .warning, structure: "header_extension", field: "magic", value: Hex.string(e.magic),
                            offset: e.offset, message: "\(kind.label) extension appears more than once"))
                }
                seen.insert(e.magic)
            }
            switch e.kind {
            case .backingFormat?:
                if e.length >= 16 {
                    f.append(
                        Finding(
                            "X3", .error, structure: "header_extension", field: "length", value: "\(e.length)",
                            offset: e.offset + 4, message: "ext_backing_format: len=\(e.length) too large (>=16)"))
                }
                if h.backingFileOffset == 0 {
                    f.append(
                        Finding(
                            "X7", .warning, structure: "header_extension", field: "magic", value: Hex.string(e.magic),
                            offset: e.offset, message: "backing format extension without a backing file"))
                }
            case .cryptoHeader?:
                if h.cryptMethod != 2 {
                    f.append(
                        Finding(
                            "X4", .error, structure: "header_extension", field: "magic", value: Hex.string(e.magic),
                            offset: e.offset, message: "CRYPTO header extension only expected with LUKS encryption method"))
                }
                if e.length != 16 {
                    f.append(
                        Finding(
                            "X4", .error, structure: "header_extension", field: "length", value: "\(e.length)",
                            offset: e.offset + 4, message: "crypto header extension must be 16 bytes"))
                }
                if case .crypto(let off, _) = e.payload, off % h.clusterSize != 0 {
                    f.append(
                        Finding(
                            "X4", .error, structure: "header_extension", field: "offset", value: Hex.string(off),
                            offset: e.dataOffset, message: "encryption header offset not cluster aligned"))
                }
            case .featureNameTable?:
                if e.length % 48 != 0 {
                    f.append(
                        Finding(
                            "X5", .warning, structure: "header_extension", field: "length", value: "\(e.length)",
                            offset: e.offset + 4, message: "feature name table length is not a multiple of 48"))
                }
            default:
                break
            }
        }
        if h.cryptMethod == 2 && !seen.contains(HeaderExtension.Kind.cryptoHeader.rawValue) {
            f.append(
                Finding(
                    "X4", .error, structure: "header", field: "crypt_method", value: "2", offset: 32,
                    message: "Missing CRYPTO header for crypt method 2"))
        }
        return f
    }
}
