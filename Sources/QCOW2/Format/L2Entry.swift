/// One L2 table entry (qcow2.txt "Cluster mapping"): where one guest cluster's data is, if anywhere.
///
/// Standard entries are 64 bits; with extended L2 entries (incompatible bit 4) a second 64-bit word
/// holds the allocation (bits 0-31) and zero (bits 32-63) bitmaps of the cluster's 32 subclusters.
public struct L2Entry: Sendable, Hashable {
    /// The cluster's type, in QEMU's terms (`qcow2_get_cluster_type`).
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// No host offset, no zero flag: read from the backing file, or zeros.
        case unallocated
        /// Zero flag without a host offset: reads as zeros.
        case zeroPlain = "zero-plain"
        /// Zero flag with a host offset (a preallocated cluster that reads as zeros).
        case zeroAllocated = "zero-allocated"
        /// Data at the host offset.
        case normal
        /// Compressed data at a byte offset.
        case compressed
    }

    /// QEMU's L2E_OFFSET_MASK (bits 9-55): a standard cluster's host offset.
    public static let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
    /// QEMU's L2E_STD_RESERVED_MASK (bits 1-8 and 56-61) of a standard entry.
    public static let standardReservedMask: UInt64 = 0x3f00_0000_0000_01fe
    /// QCOW_OFLAG_COMPRESSED (bit 62).
    public static let compressedFlag: UInt64 = 1 << 62
    /// QCOW_OFLAG_COPIED (bit 63).
    public static let copiedFlag: UInt64 = 1 << 63
    /// QCOW_OFLAG_ZERO (bit 0): the cluster reads as zeros (version 3, standard L2 only).
    public static let zeroFlag: UInt64 = 1

    /// Index in its L2 table.
    public var index: UInt64
    /// The first (or only) 64-bit word.
    public var raw: UInt64
    /// The subcluster bitmap word of an extended entry, nil for standard entries.
    public var bitmap: UInt64?
    /// `cluster_bits`, which fixes the compressed descriptor's layout.
    public var clusterBits: UInt32
    /// Guest byte of the cluster, nil when it overflows.
    public var guestStart: UInt64?
    /// Guest bytes of the cluster, clipped to the virtual size (0 beyond it).
    public var guestLength: UInt64?

    /// Decodes an entry of the L2 table whose first entry maps guest byte `tableStart`.
    public init(
        index: UInt64, raw: UInt64, bitmap: UInt64?, clusterBits: UInt32, tableStart: UInt64?, virtualSize: UInt64
    ) {
        self.index = index
        self.raw = raw
        self.bitmap = bitmap
        self.clusterBits = clusterBits
        let size = UInt64(1) << UInt64(min(clusterBits, 62))
        // Entry `index` of a table that starts at cluster tableStart / size: one cluster each.
        let first = tableStart.map { $0 / size }
        let cluster = first.flatMap { $0 +? index }
        (guestStart, guestLength) =
            cluster.map { Checked.guestSpan(index: $0, per: size, virtualSize: virtualSize) } ?? (nil, nil)
    }

    /// Bit 62.
    public var isCompressed: Bool { raw & L2Entry.compressedFlag != 0 }
    /// Bit 63.
    public var copied: Bool { raw & L2Entry.copiedFlag != 0 }

    /// The cluster type. With extended L2 entries the zero flag is unused (the subcluster bits say it).
    public var kind: Kind {
        if isCompressed { return .compressed }
        let zero = bitmap == nil && raw & L2Entry.zeroFlag != 0
        if hostOffset == 0 { return zero ? .zeroPlain : .unallocated }
        return zero ? .zeroAllocated : .normal
    }

    /// The host offset: cluster aligned for standard clusters, a byte offset for compressed ones.
    public var hostOffset: UInt64 {
        isCompressed ? raw & compressedOffsetMask : raw & L2Entry.offsetMask
    }

    /// `x = 62 - (cluster_bits - 8)`: the bits of a compressed descriptor's byte offset.
    var compressedOffsetBits: UInt64 { 62 - (UInt64(min(max(clusterBits, 9), 30)) - 8) }
    private var compressedOffsetMask: UInt64 { (UInt64(1) << compressedOffsetBits) - 1 }

    /// Additional 512-byte sectors after the one holding the compressed data's first byte; nil for
    /// standard clusters.
    public var compressedAdditionalSectors: UInt64? {
        guard isCompressed else { return nil }
        return (raw & ~L2Entry.copiedFlag & ~L2Entry.compressedFlag) >> compressedOffsetBits
    }

    /// Bytes the compressed data may occupy, from its byte offset to the end of its last sector.
    public var compressedBytes: UInt64? {
        guard let extra = compressedAdditionalSectors else { return nil }
        return (extra + 1) * 512 - (hostOffset & 511)
    }

    /// The reserved bits that are set: of a standard entry (bits 1-8, 56-61), or a compressed
    /// descriptor's offset bits above 55 (must be 0). Compressed entries must not have bit 63 either.
    public var reserved: UInt64 {
        if isCompressed { return (raw & compressedOffsetMask & ~((UInt64(1) << 56) - 1)) | (raw & L2Entry.copiedFlag) }
        return raw & L2Entry.standardReservedMask
    }

    /// Extended L2: subclusters allocated (bit x: subcluster x), nil for standard entries.
    public var subclusterAllocated: UInt32? { bitmap.map { UInt32(truncatingIfNeeded: $0) } }
    /// Extended L2: subclusters that read as zeros, nil for standard entries.
    public var subclusterZero: UInt32? { bitmap.map { UInt32(truncatingIfNeeded: $0 >> 32) } }
}
