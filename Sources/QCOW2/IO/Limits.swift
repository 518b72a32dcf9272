/// Caps on every count and size read from an image, applied before anything is allocated or read.
///
/// The values follow QEMU's own limits (block/qcow2.h, block/qcow2-bitmap.c) where QEMU has one,
/// so that every image QEMU can open is served, and nothing larger is ever allocated.
public enum Limits {
    /// Largest cluster_bits accepted for parsing (QEMU's maximum is 21; larger is a finding up to here).
    public static let maxParsableClusterBits: UInt32 = 30
    /// Bytes of cluster 0 scanned for header extensions (QEMU's largest cluster: 2 MiB).
    public static let maxExtensionArea: UInt64 = 2 << 20
    /// Most header extensions parsed before the rest of the area is ignored.
    public static let maxExtensions = 4096
    /// Longest backing file name (spec: 1023 bytes).
    public static let maxBackingFileName: UInt64 = 1023
    /// QEMU's QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1024 * 65535 bytes.
    public static let maxBitmapDirectorySize: UInt64 = 1024 * 65535
    /// QEMU's QCOW2_MAX_BITMAPS.
    public static let maxBitmaps: UInt64 = 65535
    /// Directory entries parsed at most (one more than QEMU allows, to see the overflow).
    public static let maxDirectoryEntries = 65536
    /// QEMU's BME_MAX_NAME_SIZE.
    public static let maxBitmapNameSize: UInt64 = 1023
    /// QEMU's BME_MAX_TABLE_SIZE (entries).
    public static let maxBitmapTableSize: UInt64 = 0x800_0000
    /// QEMU's BME_MAX_PHYS_SIZE: bytes of bitmap data.
    public static let maxBitmapPhysSize: UInt64 = 0x2000_0000
    /// Largest page of bitmap table entries read by one request.
    public static let maxTablePage = 4096
    /// Table entries checked per bitmap by the whole-table rules (T1-T6); D9 keeps valid tables below this.
    public static let maxTableEntriesChecked: UInt64 = 1 << 20
    /// Table entries read at most, over all bitmaps of one image, by whole-image checks and counts.
    public static let maxTableEntriesPerImage: UInt64 = 4 << 20
    /// Table findings made at most for one image; bitmaps after that are reported as not checked.
    public static let maxTableFindingsPerImage = 32_768
    /// QEMU's snapshot count limit.
    public static let maxSnapshots: UInt64 = 65536
    /// QEMU's snapshot table size limit.
    public static let maxSnapshotTableSize: UInt64 = 64 << 20
    /// QEMU's limit on extra data per snapshot entry.
    public static let maxSnapshotExtraData: UInt64 = 1024
    /// QEMU's L1 table limit in bytes.
    public static let maxL1Bytes: UInt64 = 32 << 20
    /// QEMU's refcount table limit in bytes.
    public static let maxRefcountTableBytes: UInt64 = 8 << 20
    /// Refcount lookups made by the T5 check before it stops and says so.
    public static let maxRefcountLookups = 65536
}
