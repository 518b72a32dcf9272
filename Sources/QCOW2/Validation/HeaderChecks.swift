/// Header (`H*`) and header extension (`X*`) rules of qcow2-format.md §1 that need no refcount walk.
enum HeaderChecks {
    /// Checks the header fields on their own.
    static func check(_ h: Header, fileSize: UInt64) -> [Finding] {
        var f: [Finding] = []
        func add(_ rule: Rule, field: String, value: String, offset: UInt64, message: String) {
            f.append(Finding(rule, structure: "header", field: field, value: value, offset: offset, message: message))
        }
        let cs = h.clusterSize
        if h.version == 2 && fileSize < 72 {
            add(.h22, field: "header", value: "\(fileSize) bytes", offset: fileSize,
                message: "the file ends inside the 72-byte version 2 header, at \(fileSize): the rest reads as zeros, as in QEMU")
        }
        if h.clusterBits > 21 {
            add(.h1, field: "cluster_bits", value: "\(h.clusterBits)", offset: 20, message: "QEMU supports cluster sizes 512 B to 2 MiB (cluster_bits 9-21)")
        }
        if h.version == 3 {
            if h.headerLength % 8 != 0 {
                add(.h2, field: "header_length", value: "\(h.headerLength)", offset: 100, message: "header_length must be a multiple of 8")
            }
            if UInt64(h.headerLength) > cs {
                add(.h3, field: "header_length", value: "\(h.headerLength)", offset: 100, message: "qcow2 header exceeds cluster size (\(cs))")
            }
            if UInt64(h.headerLength) > fileSize {
                add(.h3, field: "header_length", value: "\(h.headerLength)", offset: 100, message: "header runs past the end of the file (\(fileSize) bytes)")
            }
        }
        let unknownIncompat = h.incompatibleFeatures & ~FeatureGroup.incompatible.knownMask
        if unknownIncompat != 0 {
            add(.h4, field: "incompatible_features", value: Hex.string(unknownIncompat), offset: 72, message: "unknown incompatible feature bits \(FeatureGroup.bits(of: unknownIncompat)): QEMU refuses to open the image")
        }
        if h.incompatibleFeatures & Header.dirtyBit != 0 {
            add(.h5, field: "incompatible_features", value: "dirty bit", offset: 72, message: "dirty bit set: refcounts may be inconsistent (lazy refcounts after a crash, or the image is open)")
        }
        if h.incompatibleFeatures & Header.corruptBit != 0 {
            add(.h6, field: "incompatible_features", value: "corrupt bit", offset: 72, message: "corrupt bit set: QEMU found metadata corruption; the image cannot be opened read/write")
        }
        let bit3 = h.incompatibleFeatures & Header.compressionTypeBit != 0
        if h.compressionType > 1 {
            add(.h7, field: "compression_type", value: "\(h.compressionType)", offset: 104, message: "unknown compression type")
        } else if bit3 && h.compressionType == 0 {
            add(.h7, field: "compression_type", value: "0", offset: 104, message: "compression type incompatible bit is set but the type is zlib")
        } else if !bit3 && h.compressionType != 0 {
            add(.h7, field: "compression_type", value: "\(h.compressionType)", offset: 104, message: "non-zlib compression type without the compression type incompatible bit")
        }
        if h.cryptMethod > 2 {
            add(.h8, field: "crypt_method", value: "\(h.cryptMethod)", offset: 32, message: "unsupported encryption method (0 none, 1 AES, 2 LUKS)")
        }
        if h.backingFileOffset != 0 {
            if h.backingFileOffset > cs {
                add(.h9, field: "backing_file_offset", value: Hex.string(h.backingFileOffset), offset: 8, message: "backing file name must lie inside cluster 0 (\(cs) bytes)")
            }
            if h.backingFileOffset < h.extensionsStart {
                add(.h20, field: "backing_file_offset", value: "\(h.backingFileOffset)", offset: 8, message: "backing file name at \(h.backingFileOffset), inside the header (header_length \(h.headerLength)): QEMU reads no header extensions (no bitmaps, no feature names)")
            }
            if UInt64(h.backingFileSize) > Limits.maxBackingFileName {
                add(.h9, field: "backing_file_size", value: "\(h.backingFileSize)", offset: 16, message: "backing file name longer than 1023 bytes")
            } else if let end = h.backingFileOffset +? UInt64(h.backingFileSize), end > min(cs, fileSize) {
                add(.h9, field: "backing_file_size", value: "\(h.backingFileSize)", offset: 16, message: "backing file name ends at \(end), past cluster 0 or the end of the file")
            }
        }
        for (name, value, off) in [
            ("l1_table_offset", h.l1TableOffset, UInt64(40)), ("refcount_table_offset", h.refcountTableOffset, 48),
            ("snapshots_offset", h.snapshotsOffset, 64),
        ] where value % cs != 0 {
            if name == "snapshots_offset" && h.nbSnapshots == 0 && value == 0 { continue }
            add(.h10, field: name, value: Hex.string(value), offset: off, message: "not aligned to the cluster size (\(cs))")
        }
        if h.refcountTableClusters == 0 {
            add(.h11, field: "refcount_table_clusters", value: "0", offset: 56, message: "the refcount table must have at least one cluster")
        } else if let bytes = UInt64(h.refcountTableClusters) *? cs, bytes > Limits.maxRefcountTableBytes {
            add(.h11, field: "refcount_table_clusters", value: "\(h.refcountTableClusters)", offset: 56, message: "refcount table of \(bytes) bytes exceeds QEMU's 8 MiB limit")
        }
        if h.refcountOrder > 6 {
            add(.h12, field: "refcount_order", value: "\(h.refcountOrder)", offset: 96, message: "refcount width above 64 bits (order > 6)")
        }
        let l2Entries = cs / (h.incompatibleFeatures & Header.extendedL2Bit != 0 ? 16 : 8)
        if let perL1 = cs *? l2Entries {
            let needed = Checked.divCeil(h.size, perL1)
            if UInt64(h.l1Size) < needed {
                add(.h13, field: "l1_size", value: "\(h.l1Size)", offset: 36, message: "L1 table is too small: \(needed) entries needed for the virtual size")
            }
        }
        if UInt64(h.l1Size) * 8 > Limits.maxL1Bytes {
            add(.h13, field: "l1_size", value: "\(h.l1Size)", offset: 36, message: "active L1 table larger than QEMU's 32 MiB limit")
        }
        if h.incompatibleFeatures & Header.extendedL2Bit != 0 && h.clusterBits < 14 {
            add(.h14, field: "cluster_bits", value: "\(h.clusterBits)", offset: 20, message: "extended L2 entries need clusters of at least 16 KiB")
        }
        if h.autoclearFeatures & Header.rawExternalDataBit != 0 && h.incompatibleFeatures & Header.externalDataFileBit == 0 {
            add(.h15, field: "autoclear_features", value: "raw external data", offset: 88, message: "raw external data bit set without an external data file")
        }
        if h.additionalBytes.count >= 7 && h.additionalBytes.prefix(7).contains(where: { $0 != 0 }) {
            add(.h16, field: "padding", value: Hex.bytes(Array(h.additionalBytes.prefix(7))), offset: 105, message: "header padding bytes 105-111 must be zero")
        }
        let unknownCompat = h.compatibleFeatures & ~FeatureGroup.compatible.knownMask
        if unknownCompat != 0 {
            add(.h17, field: "compatible_features", value: Hex.string(unknownCompat), offset: 80, message: "unknown compatible feature bits (safe to ignore)")
        }
        let unknownAuto = h.autoclearFeatures & ~FeatureGroup.autoclear.knownMask
        if unknownAuto != 0 {
            add(.h17, field: "autoclear_features", value: Hex.string(unknownAuto), offset: 88, message: "unknown autoclear feature bits (a writable open by QEMU clears them)")
        }
        if UInt64(h.nbSnapshots) > Limits.maxSnapshots {
            add(.h18, field: "nb_snapshots", value: "\(h.nbSnapshots)", offset: 60, message: "more than QEMU's 65536 snapshots")
        }
        if h.nbSnapshots > 0 && h.incompatibleFeatures & Header.externalDataFileBit != 0 {
            add(.h18, field: "nb_snapshots", value: "\(h.nbSnapshots)", offset: 60, message: "internal snapshots are not allowed with an external data file")
        }
        if h.l1Size > 0, let end = h.l1TableOffset +? UInt64(h.l1Size) * 8, end > fileSize {
            add(.h19, field: "l1_table_offset", value: Hex.string(h.l1TableOffset), offset: 40, message: "L1 table ends at \(end), past the end of the file (\(fileSize))")
        }
        if let bytes = UInt64(h.refcountTableClusters) *? cs, let end = h.refcountTableOffset +? bytes,
            bytes > 0, end > fileSize
        {
            add(.h19, field: "refcount_table_offset", value: Hex.string(h.refcountTableOffset), offset: 48, message: "refcount table ends at \(end), past the end of the file (\(fileSize))")
        }
        return f
    }

    /// Checks the extensions against the header and each other.
    static func checkExtensions(_ h: Header, extensions: [HeaderExtension], backingFile: ByteString?, fileSize: UInt64) -> [Finding] {
        var f: [Finding] = []
        var seen: Set<UInt32> = []
        for e in extensions {
            if let kind = e.kind {
                if seen.contains(e.magic) {
                    f.append(
                        Finding(.x2, structure: "header_extension", field: "magic", value: Hex.string(e.magic), offset: e.offset, message: "\(kind.label) extension appears more than once"))
                }
                seen.insert(e.magic)
            }
            switch e.kind {
            case .backingFormat?:
                if e.length >= 16 {
                    f.append(
                        Finding(.x3, structure: "header_extension", field: "length", value: "\(e.length)", offset: e.offset + 4, message: "ext_backing_format: len=\(e.length) too large (>=16)"))
                }
                if h.backingFileOffset == 0 {
                    f.append(
                        Finding(.x7, structure: "header_extension", field: "magic", value: Hex.string(e.magic), offset: e.offset, message: "backing format extension without a backing file"))
                }
            case .cryptoHeader?:
                if h.cryptMethod != 2 {
                    f.append(
                        Finding(.x4, structure: "header_extension", field: "magic", value: Hex.string(e.magic), offset: e.offset, message: "CRYPTO header extension only expected with LUKS encryption method"))
                }
                if e.length != 16 {
                    f.append(
                        Finding(.x4, structure: "header_extension", field: "length", value: "\(e.length)", offset: e.offset + 4, message: "crypto header extension must be 16 bytes"))
                }
                if case .crypto(let off, _) = e.payload, off % h.clusterSize != 0 {
                    f.append(
                        Finding(.x4, structure: "header_extension", field: "offset", value: Hex.string(off), offset: e.dataOffset, message: "encryption header offset not cluster aligned"))
                }
                // QEMU reads the LUKS header through the extension's window: 592 bytes of it at least.
                if h.cryptMethod == 2, case .crypto(let offset, let length) = e.payload {
                    let at = e.offset + 8
                    if length < 592 {
                        f.append(
                            Finding(.x9, structure: "header_extension", field: "length", value: "\(length)", offset: at + 8,
                                message: "the LUKS header window is \(length) bytes, smaller than a LUKS header (592): QEMU: Request for data outside of extension header"))
                    } else if offset >= fileSize || (offset +? length).map({ $0 > fileSize }) ?? true {
                        f.append(
                            Finding(.x9, structure: "header_extension", field: "offset", value: Hex.string(offset), offset: at,
                                message: "the LUKS header (\(length) bytes at \(Hex.string(offset))) runs past the end of the file (\(fileSize) bytes): QEMU reads zeros there: Volume is not in LUKS format"))
                    }
                }
            case .featureNameTable?:
                if e.length % 48 != 0 {
                    f.append(
                        Finding(.x5, structure: "header_extension", field: "length", value: "\(e.length)", offset: e.offset + 4, message: "feature name table length is not a multiple of 48"))
                }
            default:
                break
            }
        }
        if let b = backingFile, b.containsNUL {
            f.append(
                Finding(.h21, structure: "header", field: "backing_file", value: b.hex, offset: h.backingFileOffset,
                    message: "the backing file name holds a NUL byte: QEMU uses '\(b.beforeNUL.escaped)'"))
        }
        if h.incompatibleFeatures & Header.externalDataFileBit != 0 && !seen.contains(HeaderExtension.Kind.dataFile.rawValue) {
            f.append(
                Finding(.x8, structure: "header", field: "incompatible_features", value: Hex.string(h.incompatibleFeatures), offset: 72,
                    message: "external data file bit set but no data file name extension: 'data-file' is required for this image"))
        }
        if h.cryptMethod == 2 && !seen.contains(HeaderExtension.Kind.cryptoHeader.rawValue) {
            f.append(
                Finding(.x4, structure: "header", field: "crypt_method", value: "2", offset: 32, message: "Missing CRYPTO header for crypt method 2"))
        }
        return f
    }
}

extension HeaderChecks {
    /// The framing problems the extension area decoder met (X1, X6), in file order.
    static func extensionArea(_ issues: [DecodeIssue]) -> [Finding] {
        var f: [Finding] = []
        for issue in issues {
            switch issue {
            case .tooManyExtensions(let offset):
                f.append(
                    Finding(.x6, structure: "header_extensions", offset: offset,
                        message: "more than \(Limits.maxExtensions) header extensions; the rest is not read"))
            case .extensionPastArea(let offset, let magic, let length, let dataEnd, let areaEnd):
                f.append(
                    Finding(.x1, structure: "header_extension", field: "length", value: "\(length)", offset: offset + 4,
                        message: "Header extension too large: \(Hex.string(magic)) data would end at \(dataEnd), past the end of the extension area (\(areaEnd))"))
            case .extensionHeaderCut(let offset, let areaEnd):
                f.append(
                    Finding(.x1, structure: "header_extension", field: "magic", offset: offset,
                        message: "Header extension too large: the 8-byte extension header at \(offset) does not fit before the end of the extension area (\(areaEnd))"))
            default:
                break
            }
        }
        return f
    }
}
