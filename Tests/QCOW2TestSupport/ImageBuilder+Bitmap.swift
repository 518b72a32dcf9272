extension ImageBuilder {
    /// One bitmap directory entry plus its table and data clusters (spec §2.2-§2.4).
    ///
    /// Every directory field can be overridden. Fields left `nil` are computed at build time:
    /// `tableOffset` is where the builder put the table, `tableSize` is the size required by
    /// the image size and granularity, `nameSize` and `extraDataSize` are the byte counts, and
    /// `padding` is zeros up to a multiple of 8.
    package struct Bitmap: Sendable, Equatable {
        /// Flag bit 0: the bitmap was not saved cleanly.
        package static let inUse: UInt32 = 0x1
        /// Flag bit 1: the bitmap is enabled and tracks writes.
        package static let auto: UInt32 = 0x2
        /// Flag bit 2: unknown extra data may be ignored (QEMU rejects it, rule D6).
        package static let extraDataCompatible: UInt32 = 0x4

        /// Name bytes, not NUL-terminated; may be any bytes, including invalid UTF-8.
        package var name: [UInt8]
        /// `granularity_bits`: one bit covers `1 << granularityBits` guest bytes.
        package var granularityBits: UInt8
        /// `flags`: ``inUse``, ``auto``, ``extraDataCompatible`` and reserved bits.
        package var flags: UInt32
        /// `type`; 1 = dirty tracking bitmap.
        package var type: UInt8 = 1
        /// `bitmap_table_offset` override; `nil` = the allocated table.
        package var tableOffset: UInt64?
        /// `bitmap_table_size` override (entries); `nil` = the size required by the image size (spec §2.4).
        package var tableSize: UInt32?
        /// `name_size` override; `nil` = `name.count`.
        package var nameSize: UInt16?
        /// Type-specific extra data written between the fixed fields and the name.
        package var extraData: [UInt8] = []
        /// `extra_data_size` override; `nil` = `extraData.count`.
        package var extraDataSize: UInt32?
        /// Padding bytes written after the name; `nil` = zeros up to a multiple of 8.
        package var padding: [UInt8]?
        /// Bitmap data clusters by table index; each becomes a `serialized` entry pointing at a fresh cluster.
        ///
        /// Shorter arrays are zero-filled to a cluster, longer ones are truncated.
        package var dataClusters: [Int: [UInt8]] = [:]
        /// Raw table entries by index; applied after the data-cluster offsets, so they win.
        package var entryOverrides: [Int: UInt64] = [:]
        /// How many table entries are allocated and written; `nil` = the required size, at least 1 and
        /// large enough for every `dataClusters` and `entryOverrides` index.
        package var allocatedTableEntries: Int?

        /// Creates a bitmap with the given name bytes, granularity and flags.
        package init(name: [UInt8], granularityBits: UInt8, flags: UInt32 = Bitmap.auto) {
            self.name = name
            self.granularityBits = granularityBits
            self.flags = flags
        }

        /// The number of table entries the builder allocates for this bitmap in an image of `size` bytes.
        func allocatedEntries(size: UInt64, clusterBits: Int) -> Int {
            if let allocatedTableEntries { return max(0, allocatedTableEntries) }
            let required = ImageBuilder.requiredBitmapTableSize(
                size: size, granularityBits: Int(granularityBits), clusterBits: clusterBits)
            var count = Int(min(required, 1 << 27))
            count = max(count, 1)
            if let highest = dataClusters.keys.max() { count = max(count, highest + 1) }
            if let highest = entryOverrides.keys.max() { count = max(count, highest + 1) }
            return count
        }

        /// Serializes the directory entry given the table offset the builder chose and the image geometry.
        func directoryEntry(allocatedTableOffset: UInt64, size: UInt64, clusterBits: Int) -> [UInt8] {
            var writer = ByteWriter()
            let required = ImageBuilder.requiredBitmapTableSize(
                size: size, granularityBits: Int(granularityBits), clusterBits: clusterBits)
            writer.append64(tableOffset ?? allocatedTableOffset)
            writer.append32(tableSize ?? UInt32(truncatingIfNeeded: required))
            writer.append32(flags)
            writer.append8(type)
            writer.append8(granularityBits)
            writer.append16(nameSize ?? UInt16(truncatingIfNeeded: name.count))
            writer.append32(extraDataSize ?? UInt32(truncatingIfNeeded: extraData.count))
            writer.append(extraData)
            writer.append(name)
            if let padding {
                writer.append(padding)
            } else {
                writer.pad(to: 8)
            }
            return writer.bytes
        }
    }

    /// The number of bitmap table entries an image needs (spec §2.4).
    ///
    /// `ceil(ceil(ceil(size / g) / 8) / cluster_size)` with `g = 1 << granularityBits`; a
    /// granularity of 64 bits or more counts as one bit for the whole disk.
    ///
    /// - Parameters:
    ///   - size: Virtual disk size in bytes.
    ///   - granularityBits: `granularity_bits` of the bitmap.
    ///   - clusterBits: `cluster_bits` of the image.
    /// - Returns: The required `bitmap_table_size`.
    package static func requiredBitmapTableSize(size: UInt64, granularityBits: Int, clusterBits: Int) -> UInt64 {
        guard size > 0 else { return 0 }
        let bits = granularityBits >= 64 ? 1 : Arithmetic.divideRoundingUp(size, UInt64(1) << UInt64(granularityBits))
        let bytes = Arithmetic.divideRoundingUp(bits, 8)
        return Arithmetic.divideRoundingUp(bytes, UInt64(1) << UInt64(min(max(clusterBits, 0), 63)))
    }

    /// Adds a bitmap named by a UTF-8 string, with a computed table size and all-zeroes table entries.
    ///
    /// - Parameters:
    ///   - name: The bitmap name.
    ///   - granularityBits: `granularity_bits`; 16 is QEMU's 64 KiB default.
    ///   - flags: Directory flags; ``Bitmap/auto`` (enabled) by default.
    /// - Returns: The index of the new bitmap in ``bitmaps``.
    @discardableResult
    package mutating func addBitmap(name: String, granularityBits: UInt8 = 16, flags: UInt32 = Bitmap.auto) -> Int {
        addBitmap(nameBytes: Array(name.utf8), granularityBits: granularityBits, flags: flags)
    }

    /// Adds a bitmap whose name is given as raw bytes (for example invalid UTF-8).
    ///
    /// - Parameters:
    ///   - nameBytes: The name bytes written to the directory.
    ///   - granularityBits: `granularity_bits`.
    ///   - flags: Directory flags.
    /// - Returns: The index of the new bitmap in ``bitmaps``.
    @discardableResult
    package mutating func addBitmap(nameBytes: [UInt8], granularityBits: UInt8 = 16, flags: UInt32 = Bitmap.auto) -> Int {
        bitmaps.append(Bitmap(name: nameBytes, granularityBits: granularityBits, flags: flags))
        return bitmaps.count - 1
    }

    /// Sets the bits covering guest bytes `guestOffset ..< guestOffset + length` in a bitmap's data clusters.
    ///
    /// Bit `n` is byte `n / 8`, bit `n % 8` from the least significant bit (spec §2.4). Touched data
    /// clusters become `serialized` table entries.
    ///
    /// - Parameters:
    ///   - bitmap: Index into ``bitmaps``.
    ///   - guestOffset: First guest byte.
    ///   - length: Number of guest bytes; 0 does nothing.
    package mutating func markDirty(bitmap: Int, guestOffset: UInt64, length: UInt64) {
        guard length > 0, bitmaps.indices.contains(bitmap) else { return }
        let granularityBits = UInt64(min(bitmaps[bitmap].granularityBits, 63))
        let clusterSize = layoutClusterSize
        let first = guestOffset >> granularityBits
        let (end, overflow) = guestOffset.addingReportingOverflow(length - 1)
        let last = (overflow ? UInt64.max : end) >> granularityBits
        for bit in first...last {
            let byteIndex = Int(bit / 8)
            let cluster = byteIndex / clusterSize
            var data = bitmaps[bitmap].dataClusters[cluster] ?? [UInt8](repeating: 0, count: clusterSize)
            if data.count < clusterSize { data += [UInt8](repeating: 0, count: clusterSize - data.count) }
            data[byteIndex % clusterSize] |= UInt8(1) << UInt8(bit % 8)
            bitmaps[bitmap].dataClusters[cluster] = data
        }
    }
}
