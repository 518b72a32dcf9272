extension BitmapTableEntry {
    /// Bytes of one table entry.
    public static let encodedLength = 8

    /// Decodes consecutive big-endian entries from `bytes`, the first being entry `firstIndex` of its table.
    ///
    /// A trailing partial entry is ignored. Guest placement is computed from `bytesPerEntry` and
    /// `virtualSize` as in ``init(index:raw:bytesPerEntry:virtualSize:)`` (`nil` leaves it unknown).
    public static func decode(
        _ bytes: [UInt8], firstIndex: UInt64, bytesPerEntry: UInt64? = nil, virtualSize: UInt64 = 0
    ) -> [BitmapTableEntry] {
        let count = bytes.count / encodedLength
        var out: [BitmapTableEntry] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            guard let index = firstIndex +? UInt64(i) else { break }
            let raw = ByteReader.uint(bytes, at: i * encodedLength, width: encodedLength)
            out.append(BitmapTableEntry(index: index, raw: raw, bytesPerEntry: bytesPerEntry, virtualSize: virtualSize))
        }
        return out
    }
}
