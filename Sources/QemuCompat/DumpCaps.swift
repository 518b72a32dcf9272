/// Caps that keep a hostile image from making a qcow2.py-style dump unbounded (qcow2.py has none).
///
/// Reaching one ends the dump with a ``DumpStop`` of kind `cap` where qcow2.py would go on.
public enum DumpCaps {
    /// Header extensions read at most.
    public static let extensions = 65536
    /// Bytes of extension data held at most, all extensions together.
    public static let extensionBytes: UInt64 = 64 << 20
    /// Bytes of bitmap names held at most, all entries together (65536 names of 65535 bytes would be 4 GiB).
    public static let nameBytes: UInt64 = 64 << 20
    /// Bitmap directory entries read at most (QEMU allows 65535).
    public static let bitmaps = 65536
    /// Bitmap table rows dumped at most, all tables together (QEMU's BME_MAX_TABLE_SIZE).
    public static let tableRows: UInt64 = 0x800_0000
    /// Table entries read per `pread` while rendering.
    static let rowChunk: UInt64 = 4096
}
