/// The qcow2 header (qcow2.txt "Header"), every v2 and v3 field, with v2 defaults applied.
///
/// Field names follow the spec in lowerCamelCase; widths are the on-disk widths.
public struct Header: Sendable, Hashable {
    /// `QFI\xfb` as a big-endian u32.
    public static let magicValue: UInt32 = 0x5146_49fb

    /// Bytes 0-3 (`magic`).
    public var magic: UInt32
    /// Bytes 4-7 (`version`): 2 or 3.
    public var version: UInt32
    /// Bytes 8-15 (`backing_file_offset`): 0 when there is no backing file.
    public var backingFileOffset: UInt64
    /// Bytes 16-19 (`backing_file_size`).
    public var backingFileSize: UInt32
    /// Bytes 20-23 (`cluster_bits`).
    public var clusterBits: UInt32
    /// Bytes 24-31 (`size`): virtual disk size in bytes.
    public var size: UInt64
    /// Bytes 32-35 (`crypt_method`): 0 none, 1 AES, 2 LUKS.
    public var cryptMethod: UInt32
    /// Bytes 36-39 (`l1_size`): entries of the active L1 table.
    public var l1Size: UInt32
    /// Bytes 40-47 (`l1_table_offset`).
    public var l1TableOffset: UInt64
    /// Bytes 48-55 (`refcount_table_offset`).
    public var refcountTableOffset: UInt64
    /// Bytes 56-59 (`refcount_table_clusters`).
    public var refcountTableClusters: UInt32
    /// Bytes 60-63 (`nb_snapshots`).
    public var nbSnapshots: UInt32
    /// Bytes 64-71 (`snapshots_offset`).
    public var snapshotsOffset: UInt64
    /// Bytes 72-79 (`incompatible_features`); 0 for v2.
    public var incompatibleFeatures: UInt64
    /// Bytes 80-87 (`compatible_features`); 0 for v2.
    public var compatibleFeatures: UInt64
    /// Bytes 88-95 (`autoclear_features`); 0 for v2.
    public var autoclearFeatures: UInt64
    /// Bytes 96-99 (`refcount_order`); 4 for v2.
    public var refcountOrder: UInt32
    /// Bytes 100-103 (`header_length`); 72 for v2.
    public var headerLength: UInt32
    /// Byte 104 (`compression_type`), present when header_length > 104; 0 (zlib) otherwise.
    public var compressionType: UInt8
    /// Bytes 105 up to header_length: padding and unknown additional fields, kept raw.
    public var additionalBytes: [UInt8]

    /// Incompatible bit 0: refcounts may be inconsistent.
    public static let dirtyBit: UInt64 = 1 << 0
    /// Incompatible bit 1: metadata may be corrupt.
    public static let corruptBit: UInt64 = 1 << 1
    /// Incompatible bit 2: guest data lives in an external data file.
    public static let externalDataFileBit: UInt64 = 1 << 2
    /// Incompatible bit 3: compression_type is present and non-zero.
    public static let compressionTypeBit: UInt64 = 1 << 3
    /// Incompatible bit 4: 128-bit L2 entries with subclusters.
    public static let extendedL2Bit: UInt64 = 1 << 4
    /// Compatible bit 0: lazy refcounts.
    public static let lazyRefcountsBit: UInt64 = 1 << 0
    /// Autoclear bit 0: the bitmaps extension is consistent.
    public static let bitmapsBit: UInt64 = 1 << 0
    /// Autoclear bit 1: the external data file is a valid raw image.
    public static let rawExternalDataBit: UInt64 = 1 << 1

    /// Bytes read to parse any header: the v3 mandatory part.
    static let mandatoryV3Length: UInt32 = 104

    /// Parses the header from the first bytes of the image.
    ///
    /// Only what makes the image unreadable throws: wrong magic, a version other than 2 or 3, a
    /// header shorter than its version requires, cluster_bits outside 9...30, a v3 header_length
    /// below 104. Everything else is reported later as a finding.
    /// - Throws: ``QCOW2Error`` with the field, value and offset.
    public init(source: any ImageSource) throws(QCOW2Error) {
        let fileSize = source.size
        guard fileSize >= 8 else {
            throw QCOW2Error(
                .truncated, structure: "header", value: "\(fileSize) bytes", offset: 0,
                message: "file is \(fileSize) bytes, a qcow2 header needs at least 72")
        }
        let first = try source.read("header", at: 0, count: min(fileSize, 112))
        var r = ByteReader(first, base: 0, structure: "header")
        let magic = try r.u32("magic")
        guard magic == Header.magicValue else {
            throw QCOW2Error(
                .badMagic, structure: "header", field: "magic", value: Hex.string(magic), offset: 0,
                message: "not a qcow2 image (expected 0x514649fb, \"QFI\\xfb\")")
        }
        let version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw QCOW2Error(
                .unsupportedVersion, structure: "header", field: "version", value: "\(version)", offset: 4,
                message: "unsupported qcow2 version (2 and 3 exist)")
        }
        // A version 2 header cut by the end of the file reads as zeros past it, as QEMU reads it (H22); a
        // version 3 one is refused, as QEMU refuses it (its header_length reads as too short).
        let needed: UInt64 = version == 2 ? 8 : 104
        guard fileSize >= needed else {
            throw QCOW2Error(
                .truncated, structure: "header", value: "\(fileSize) bytes", offset: 0,
                message: "file is \(fileSize) bytes, a version \(version) header needs \(needed)")
        }
        // One decoder for the fixed fields (shared with qcow2.py's dump); a version 2 header ends at 72,
        // so zeros stand for the v3 fields it lacks (the decoder then sets version 2's defaults).
        let padding = [UInt8](repeating: 0, count: max(0, Header.fixedPartLength - first.count))
        self = try Header(decodingFixedPart: first + padding)
        guard clusterBits >= 9, clusterBits <= Limits.maxParsableClusterBits else {
            throw QCOW2Error(
                .invalidHeader, structure: "header", field: "cluster_bits", value: "\(clusterBits)", offset: 20,
                message: "cluster size 2^\(clusterBits) is outside 2^9...2^\(Limits.maxParsableClusterBits); nothing else can be located")
        }
        if version == 2 { return }
        guard headerLength >= Header.mandatoryV3Length else {
            throw QCOW2Error(
                .invalidHeader, structure: "header", field: "header_length", value: "\(headerLength)", offset: 100,
                message: "qcow2 header too short: version 3 needs at least 104 bytes")
        }
        if headerLength > 104 {
            // Additional fields: read what lies inside cluster 0 and the file; the rest is a finding.
            let clusterSize = UInt64(1) << UInt64(clusterBits)
            let end = min(UInt64(headerLength), clusterSize, fileSize)
            if end > 104 {
                let extra = try source.read("header", at: 104, count: end - 104)
                compressionType = extra[0]
                additionalBytes = Array(extra.dropFirst())
            }
        }
    }

    /// Creates a header from field values (tests and builders).
    public init(
        version: UInt32, clusterBits: UInt32, size: UInt64, backingFileOffset: UInt64 = 0,
        backingFileSize: UInt32 = 0, cryptMethod: UInt32 = 0, l1Size: UInt32 = 0, l1TableOffset: UInt64 = 0,
        refcountTableOffset: UInt64 = 0, refcountTableClusters: UInt32 = 0, nbSnapshots: UInt32 = 0,
        snapshotsOffset: UInt64 = 0, incompatibleFeatures: UInt64 = 0, compatibleFeatures: UInt64 = 0,
        autoclearFeatures: UInt64 = 0, refcountOrder: UInt32 = 4, headerLength: UInt32 = 112,
        compressionType: UInt8 = 0
    ) {
        self.magic = Header.magicValue
        self.version = version
        self.backingFileOffset = backingFileOffset
        self.backingFileSize = backingFileSize
        self.clusterBits = clusterBits
        self.size = size
        self.cryptMethod = cryptMethod
        self.l1Size = l1Size
        self.l1TableOffset = l1TableOffset
        self.refcountTableOffset = refcountTableOffset
        self.refcountTableClusters = refcountTableClusters
        self.nbSnapshots = nbSnapshots
        self.snapshotsOffset = snapshotsOffset
        self.incompatibleFeatures = incompatibleFeatures
        self.compatibleFeatures = compatibleFeatures
        self.autoclearFeatures = autoclearFeatures
        self.refcountOrder = refcountOrder
        self.headerLength = version == 2 ? 72 : headerLength
        self.compressionType = compressionType
        self.additionalBytes = []
    }

    /// Bytes per cluster: `1 << cluster_bits` (cluster_bits is 9...30 once parsed).
    public var clusterSize: UInt64 { UInt64(1) << UInt64(min(clusterBits, 62)) }

    /// Refcount width in bits: `1 << refcount_order`, `nil` when refcount_order > 6.
    public var refcountBits: UInt64? { refcountOrder <= 6 ? UInt64(1) << UInt64(refcountOrder) : nil }

    /// Where the header extensions begin: header_length (72 for v2).
    public var extensionsStart: UInt64 { UInt64(headerLength) }

    /// `"0.10"` for version 2, `"1.1"` for version 3 (qemu-img's compat names).
    public var compat: String { version == 2 ? "0.10" : "1.1" }

    /// `zlib`, `zstd`, or `unknown(N)`.
    public var compressionTypeName: String {
        switch compressionType {
        case 0: "zlib"
        case 1: "zstd"
        default: "unknown(\(compressionType))"
        }
    }

    /// Whether the bitmaps autoclear bit is set.
    public var bitmapsConsistentBit: Bool { autoclearFeatures & Header.bitmapsBit != 0 }
}
