extension QCOW2Image {
    /// One page of dirty/clean extents of `bitmap` over guest bytes `[start, start + length)`.
    ///
    /// Decodes the bitmap data (qcow2-format.md §2.4: bit n covers guest bytes `[n*g, (n+1)*g)`,
    /// LSB first within each byte, all-zeroes / all-ones / serialized table entries), reading only
    /// the table entries and data clusters that cover the range, and stopping once `limit` extents
    /// are complete. Adjacent runs are merged; the range is clipped to the virtual size.
    /// - Returns: the extents and, when the range has more, the guest offset to continue from.
    /// - Throws: ``QCOW2Error`` `outOfRange` for an unusable granularity or a bad range, `truncated`
    ///   when a table or data cluster lies past the end of the file.
    public func dirtyExtents(_ bitmap: BitmapDirectoryEntry, start: UInt64, length: UInt64, limit: Int) throws(QCOW2Error)
        -> (extents: [DirtyExtent], next: UInt64?)
    {
        let s = "bitmap_table[\(bitmap.index)]"
        guard let g = bitmap.granularity, bitmap.granularityBits <= 62, limit >= 1 else {
            throw QCOW2Error(.outOfRange, structure: s, field: "granularity_bits", value: "\(bitmap.granularityBits)",
                offset: bitmap.entryOffset &+ 17, message: "granularity cannot be decoded")
        }
        let size = header.size
        let end = min(size, start +? length ?? UInt64.max)
        guard start < end else { return ([], nil) }
        let cs = header.clusterSize
        let bitsPerEntry = cs * 8
        let firstBit = start / g
        let endBit = Checked.divCeil(end, g)
        var out: [DirtyExtent] = []
        var runStart = start
        var runDirty: Bool? = nil
        var next: UInt64? = nil

        /// Adds bits [a, b) with value `dirty`; false once the page is full.
        func emit(_ a: UInt64, _ b: UInt64, _ dirty: Bool) -> Bool {
            let lo = max(start, a *? g ?? UInt64.max)
            let hi = min(end, b *? g ?? UInt64.max)
            guard lo < hi else { return true }
            if runDirty == dirty { return true }
            if let d = runDirty {
                out.append(DirtyExtent(start: runStart, length: lo - runStart, dirty: d))
                if out.count == limit {
                    next = lo
                    return false
                }
            }
            runStart = lo
            runDirty = dirty
            return true
        }

        var entryIndex = firstBit / bitsPerEntry
        let lastEntry = (endBit - 1) / bitsPerEntry
        let tableSize = UInt64(bitmap.tableSize)
        scan: while entryIndex <= lastEntry {
            // Table entries in bounded chunks; entries past the table read as all-zeroes.
            if entryIndex >= tableSize {
                _ = emit(entryIndex * bitsPerEntry, endBit, false)
                break
            }
            // Entries past the end of the file read as zeros (T6): clean from here on, without reading
            // a table of millions of zero entries chunk by chunk.
            if let at = (entryIndex *? 8).flatMap({ bitmap.tableOffset +? $0 }), at >= source.size {
                _ = emit(entryIndex * bitsPerEntry, endBit, false)
                break
            }
            let chunk = try bitmapTable(bitmap, offset: entryIndex, limit: Int(min(UInt64(Limits.maxTablePage), min(lastEntry, tableSize - 1) - entryIndex + 1)))
            for e in chunk {
                let a = max(firstBit, e.index * bitsPerEntry)
                // The last entry of a table can end past 2^64 bits (cluster_bits 30, granularity 1 B).
                let b = min(endBit, (e.index + 1) *? bitsPerEntry ?? UInt64.max)
                switch e.kind {
                case .allZeroes:
                    if !emit(a, b, false) { break scan }
                case .allOnes:
                    if !emit(a, b, true) { break scan }
                case .serialized, .invalid:
                    let data = try source.read("bitmap_data[\(bitmap.index)][\(e.index)]", at: e.dataOffset, count: cs)
                    let base = e.index * bitsPerEntry
                    var bit = a
                    while bit < b {
                        // Find the end of the run of bits equal to `bit`'s value, a 64-bit word at a time.
                        let value = QCOW2Image.bit(data, bit - base)
                        var j = bit + 1
                        while j < b {
                            let local = j - base
                            if local % 64 == 0 && b - j >= 64 {
                                let w = QCOW2Image.word(data, Int(local / 64))
                                if w == (value ? UInt64.max : 0) {
                                    j += 64
                                    continue
                                }
                                let diff = value ? ~w : w
                                j += UInt64(diff.trailingZeroBitCount)
                                break
                            }
                            if QCOW2Image.bit(data, local) != value { break }
                            j += 1
                        }
                        if !emit(bit, min(j, b), value) { break scan }
                        bit = j
                    }
                }
                entryIndex = e.index + 1
            }
            if chunk.isEmpty { break }
        }
        if next == nil, let d = runDirty, runStart < end {
            out.append(DirtyExtent(start: runStart, length: end - runStart, dirty: d))
        }
        return (out, next)
    }

    /// The exact number of dirty guest bytes in `bitmap`, counted with popcount over 64-bit words.
    ///
    /// Reads the table and every serialized data cluster (at most `budget` bytes in all); returns `nil`
    /// when the bitmap needs more than the budget, so a caller can say "too large to count here" and stay fast.
    /// - Throws: ``QCOW2Error`` when the table or a data cluster cannot be read.
    public func dirtyBytes(_ bitmap: BitmapDirectoryEntry, budget: UInt64 = 64 << 20) throws(QCOW2Error) -> UInt64? {
        var spent: UInt64 = 0
        return try dirtyBytes(bitmap, budget: budget, spent: &spent)
    }

    /// ``dirtyBytes(_:budget:)`` that also reports the bytes it read (table and data), for image-wide budgets.
    public func dirtyBytes(_ bitmap: BitmapDirectoryEntry, budget: UInt64, spent: inout UInt64) throws(QCOW2Error)
        -> UInt64?
    {
        guard let g = bitmap.granularity, bitmap.granularityBits <= 62 else { return nil }
        let size = header.size
        let cs = header.clusterSize
        let bitsPerEntry = cs * 8
        let totalBits = Checked.divCeil(size, g)
        guard totalBits > 0 else { return 0 }
        let tableSize = min(UInt64(bitmap.tableSize), Checked.divCeil(totalBits, bitsPerEntry))
        guard tableSize <= Limits.maxTableEntriesChecked, tableSize * 8 <= budget else { return nil }
        // The table itself counts against the budget, not only the data clusters.
        spent = tableSize * 8
        var dirtyBits: UInt64 = 0
        var offset: UInt64 = 0
        while offset < tableSize {
            // Entries past the end of the file read as zeros: nothing more is dirty.
            if let at = (offset *? 8).flatMap({ bitmap.tableOffset +? $0 }), at >= source.size { break }
            let page = try bitmapTable(bitmap, offset: offset, limit: Int(min(UInt64(Limits.maxTablePage), tableSize - offset)))
            for e in page {
                let first = e.index * bitsPerEntry
                let valid = min(bitsPerEntry, totalBits - first)
                switch e.kind {
                case .allZeroes: break
                case .allOnes: dirtyBits += valid
                case .serialized, .invalid:
                    spent += cs
                    if spent > budget { return nil }
                    let data = try source.read("bitmap_data[\(bitmap.index)][\(e.index)]", at: e.dataOffset, count: cs)
                    let fullWords = Int(valid / 64)
                    for w in 0..<fullWords { dirtyBits += UInt64(QCOW2Image.word(data, w).nonzeroBitCount) }
                    let rest = valid % 64
                    if rest > 0 {
                        let mask = (UInt64(1) << rest) - 1
                        dirtyBits += UInt64((QCOW2Image.word(data, fullWords) & mask).nonzeroBitCount)
                    }
                }
            }
            offset += UInt64(page.count)
            if page.isEmpty { break }
        }
        // The last bit may cover less than g bytes: count what lies inside the disk.
        var bytes = dirtyBits *? g ?? UInt64.max
        let lastBit = totalBits - 1
        if size % g != 0, let range = try? dirtyExtents(bitmap, start: lastBit * g, length: g, limit: 1).extents.first,
            range.dirty
        {
            bytes -= g - size % g
        }
        return min(bytes, size)
    }

    /// Bit `n` of a data cluster, LSB first within each byte.
    static func bit(_ data: [UInt8], _ n: UInt64) -> Bool {
        let i = Int(n / 8)
        guard i < data.count else { return false }
        return data[i] >> (n % 8) & 1 != 0
    }

    /// 64-bit little-endian word `w` of a data cluster (bit 0 of the word = bit 0 of its first byte).
    static func word(_ data: [UInt8], _ w: Int) -> UInt64 {
        var v: UInt64 = 0
        let base = w * 8
        guard base >= 0, base + 8 <= data.count else { return 0 }
        for k in 0..<8 { v |= UInt64(data[base + k]) << UInt64(8 * k) }
        return v
    }
}
