/// Looks up the refcount of single host clusters, reading only the table entry and block entry needed.
///
/// Each lookup costs at most two small `pread`s; table entries are cached. After
/// ``Limits/maxRefcountLookups`` lookups it answers `nil` (unknown) rather than keep reading.
struct RefcountReader {
    let image: QCOW2Image
    private var tableCache: [UInt64: UInt64] = [:]
    private var lookups = 0

    init(image: QCOW2Image) {
        self.image = image
    }

    /// The refcount of the cluster containing `hostOffset`, `nil` when it cannot be determined.
    mutating func refcount(of hostOffset: UInt64) -> UInt64? {
        let h = image.header
        guard let bits = h.refcountBits, lookups < Limits.maxRefcountLookups else { return nil }
        lookups += 1
        let cs = h.clusterSize
        let entriesPerBlock = cs * 8 / bits
        let cluster = hostOffset / cs
        let tableIndex = cluster / entriesPerBlock
        let blockIndex = cluster % entriesPerBlock
        guard let tableBytes = UInt64(h.refcountTableClusters) *? cs, tableIndex < tableBytes / 8 else { return 0 }
        let blockOffset: UInt64
        if let cached = tableCache[tableIndex] {
            blockOffset = cached
        } else {
            guard let at = h.refcountTableOffset +? tableIndex * 8,
                let b = try? image.source.read("refcount_table", at: at, count: 8)
            else { return nil }
            blockOffset = ByteReader.uint(b, at: 0, width: 8) & 0xffff_ffff_ffff_fe00
            tableCache[tableIndex] = blockOffset
        }
        if blockOffset == 0 { return 0 }
        let bitIndex = blockIndex * bits
        guard let byteAt = blockOffset +? bitIndex / 8 else { return nil }
        let width = max(bits / 8, 1)
        guard let raw = try? image.source.read("refcount_block", at: byteAt, count: width) else { return nil }
        if bits >= 8 { return ByteReader.uint(raw, at: 0, width: Int(width)) }
        let shift = bitIndex % 8
        let mask = (UInt64(1) << bits) - 1
        return (UInt64(raw[0]) >> shift) & mask
    }
}
