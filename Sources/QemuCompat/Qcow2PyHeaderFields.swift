import QCOW2

/// The 18 fields of qcow2.py's `QcowHeader`, in its order, with its names and text formats.
enum Qcow2PyHeaderFields {
    /// How the text dump prints a field.
    enum Style {
        /// `{}`: decimal.
        case decimal
        /// `{:#x}`: `0x`-prefixed hex.
        case hex
        /// `Flags64`: the list of set bit numbers.
        case bits
    }

    /// The fields of `h` as qcow2.py names, orders and formats them (`snapshots_offset` is its `snapshot_offset`).
    static func rows(_ h: Header) -> [(name: String, value: UInt64, style: Style)] {
        [
            ("magic", UInt64(h.magic), .hex),
            ("version", UInt64(h.version), .decimal),
            ("backing_file_offset", h.backingFileOffset, .hex),
            ("backing_file_size", UInt64(h.backingFileSize), .hex),
            ("cluster_bits", UInt64(h.clusterBits), .decimal),
            ("size", h.size, .decimal),
            ("crypt_method", UInt64(h.cryptMethod), .decimal),
            ("l1_size", UInt64(h.l1Size), .decimal),
            ("l1_table_offset", h.l1TableOffset, .hex),
            ("refcount_table_offset", h.refcountTableOffset, .hex),
            ("refcount_table_clusters", UInt64(h.refcountTableClusters), .decimal),
            ("nb_snapshots", UInt64(h.nbSnapshots), .decimal),
            ("snapshot_offset", h.snapshotsOffset, .hex),
            ("incompatible_features", h.incompatibleFeatures, .bits),
            ("compatible_features", h.compatibleFeatures, .bits),
            ("autoclear_features", h.autoclearFeatures, .bits),
            ("refcount_order", UInt64(h.refcountOrder), .decimal),
            ("header_length", UInt64(h.headerLength), .decimal),
        ]
    }
}
