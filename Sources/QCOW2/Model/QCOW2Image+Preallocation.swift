// QEMU's metadata-preallocation heuristic (block/qcow2-refcount.c:qcow2_detect_metadata_preallocation),
// which decides whether `qemu-img map` asks the host file about data clusters (qemu-check-map.md §2.4).

extension QCOW2Image {
    /// Whether many more clusters are refcounted than the file physically holds, as QEMU decides it.
    ///
    /// With `A` = the file's allocated bytes (`st_blocks * 512`), `rc = A / cluster_size` and
    /// `T = max(rc * 10 / 9, rc + 2)`: true when at least `T` of the clusters in the file (its size
    /// rounded up to 512) have a non-zero on-disk refcount. The scan stops at `T`. Refcount blocks past
    /// the end of the file read as zeros; an unaligned refcount block (QEMU's EIO) or more than
    /// `maxRefcountBytes` of refcount blocks read answers false.
    public func looksMetadataPreallocated(maxRefcountBytes: UInt64 = 16 << 20) -> Bool {
        let h = header
        guard (9...21).contains(h.clusterBits), let bits = h.refcountBits else { return false }
        let cs = h.clusterSize
        let fileLength = MapLayer.roundUp512(source.size)
        let realClusters = source.allocatedBytes / cs
        let (tenth, overflow) = realClusters.multipliedReportingOverflow(by: 10)
        let threshold = max(overflow ? UInt64.max : tenth / 9, realClusters &+ 2)
        let endCluster = fileLength / cs + (fileLength % cs == 0 ? 0 : 1)
        // Fewer clusters in the file than the threshold: it cannot be reached, nothing to read.
        if threshold > endCluster { return false }
        let entriesPerBlock = cs * 8 / bits
        let tableEntries = UInt64(h.refcountTableClusters) * cs / 8
        var count: UInt64 = 0
        var cluster: UInt64 = 0
        var spent: UInt64 = 0
        while cluster < endCluster && count < threshold {
            let tableIndex = cluster / entriesPerBlock
            guard tableIndex < tableEntries, let at = h.refcountTableOffset +? tableIndex * 8,
                let t = try? source.readZeroFilled("refcount_table", at: at, count: 8)
            else { break }
            let block = ByteReader.uint(t, at: 0, width: 8) & 0xffff_ffff_ffff_fe00
            let first = cluster % entriesPerBlock
            let n = min(entriesPerBlock - first, endCluster - cluster)
            defer { cluster += n }
            if block == 0 { continue }
            if block % cs != 0 { return false }
            let firstBit = first * bits
            let byteCount = ((first + n) * bits + 7) / 8 - firstBit / 8
            spent += byteCount
            guard spent <= maxRefcountBytes, let from = block +? firstBit / 8,
                let raw = try? source.readZeroFilled("refcount_block", at: from, count: byteCount)
            else { return false }
            for k in 0..<n {
                let bit = firstBit + k * bits - (firstBit / 8) * 8
                let value: UInt64
                if bits >= 8 {
                    value = ByteReader.uint(raw, at: Int(bit / 8), width: Int(bits / 8))
                } else {
                    value = (UInt64(raw[Int(bit / 8)]) >> (bit % 8)) & ((UInt64(1) << bits) - 1)
                }
                if value != 0 {
                    count += 1
                    if count >= threshold { break }
                }
            }
        }
        return count >= threshold
    }
}
