extension Header {
    /// Bytes of the fixed part of every header: the fields up to `header_length` (v3's mandatory part).
    public static let fixedPartLength = 104

    /// Decodes the fixed 104-byte part as its bytes say, checking nothing.
    ///
    /// Unlike ``init(source:)`` this accepts any magic, version, cluster_bits and header_length, for tools
    /// that print what is on disk (QEMU's `qcow2.py dump-header` reads this struct from any file). Version 2
    /// gets the v3 fields' defaults, as in ``init(source:)`` (and qcow2.py's `set_defaults()`);
    /// `compression_type` and additional fields are not decoded (0 and empty).
    /// - Throws: ``QCOW2Error`` `truncated`, naming the first field that does not fit, when `bytes` holds
    ///   fewer than 104 bytes.
    public init(decodingFixedPart bytes: [UInt8]) throws(QCOW2Error) {
        var r = ByteReader(bytes, base: 0, structure: "header")
        magic = try r.u32("magic")
        version = try r.u32("version")
        backingFileOffset = try r.u64("backing_file_offset")
        backingFileSize = try r.u32("backing_file_size")
        clusterBits = try r.u32("cluster_bits")
        size = try r.u64("size")
        cryptMethod = try r.u32("crypt_method")
        l1Size = try r.u32("l1_size")
        l1TableOffset = try r.u64("l1_table_offset")
        refcountTableOffset = try r.u64("refcount_table_offset")
        refcountTableClusters = try r.u32("refcount_table_clusters")
        nbSnapshots = try r.u32("nb_snapshots")
        snapshotsOffset = try r.u64("snapshots_offset")
        incompatibleFeatures = try r.u64("incompatible_features")
        compatibleFeatures = try r.u64("compatible_features")
        autoclearFeatures = try r.u64("autoclear_features")
        refcountOrder = try r.u32("refcount_order")
        headerLength = try r.u32("header_length")
        compressionType = 0
        additionalBytes = []
        if version == 2 {
            incompatibleFeatures = 0
            compatibleFeatures = 0
            autoclearFeatures = 0
            refcountOrder = 4
            headerLength = 72
        }
    }
}
