/// Builds QCOW2 images byte by byte in memory, including malformed ones that qemu-img refuses to make.
///
/// The builder writes a header (72 bytes for v2, `header_length` 112 with the compression type byte
/// for v3), header extensions with the end marker and the backing file name, a refcount table with
/// its refcount blocks, the active L1 table (plus L2 tables and data for ``guestClusters``), bitmap
/// tables, bitmap data clusters, the bitmap directory and the internal snapshot table with one L1
/// table per snapshot. Every structure starts on a cluster boundary and every cluster gets
/// refcount 1, so the default output is a consistent image that `qemu-img check` accepts.
///
/// Every header field can be overridden. Optional properties mean "compute it"; set them to
/// write a specific value. The layout never depends on override values, so ``layout()`` can be
/// used to compute overrides relative to where structures really are:
///
/// ```swift
/// var b = ImageBuilder(version: 3, clusterBits: 9, size: 1 << 20)
/// b.addBitmap(name: "b0", granularityBits: 16)
/// b.bitmapsExtension.directoryOffset = b.layout().bitmapDirectoryOffset + 8   // rule E7
/// let bytes = b.build()
/// ```
///
/// Layout order: header area, refcount table, refcount blocks, active L1 table, L2 tables, guest
/// data, then per bitmap its table and data clusters, the bitmap directory, snapshot L1 tables and
/// the snapshot table. The file is a whole number of clusters plus ``trailingBytes``.
package struct ImageBuilder: Sendable, Equatable {
    /// The QCOW2 magic `QFI\xfb`.
    package static let qcowMagic: UInt32 = 0x5146_49fb

    // MARK: Header fields (spec §1.2)

    /// `magic` (offset 0).
    package var magic: UInt32 = ImageBuilder.qcowMagic
    /// `version` (offset 4); values below 3 get the 72-byte v2 header, 3 and above the v3 header.
    package var version: UInt32
    /// Cluster size exponent used for the layout and, unless ``clusterBitsField`` is set, written at offset 20.
    ///
    /// The layout clamps it to 9...21 so that a bogus value cannot produce a gigantic image.
    package var clusterBits: UInt32
    /// `cluster_bits` value written to the header instead of ``clusterBits`` (e.g. 30), without changing the layout.
    package var clusterBitsField: UInt32?
    /// `size` (offset 24): the virtual disk size in bytes.
    package var size: UInt64
    /// `crypt_method` (offset 32).
    package var cryptMethod: UInt32 = 0
    /// `l1_size` (offset 36) override.
    package var l1Size: UInt32?
    /// `l1_table_offset` (offset 40) override.
    package var l1TableOffset: UInt64?
    /// `refcount_table_offset` (offset 48) override.
    package var refcountTableOffset: UInt64?
    /// `refcount_table_clusters` (offset 56) override.
    package var refcountTableClusters: UInt32?
    /// `nb_snapshots` (offset 60) override.
    package var nbSnapshots: UInt32?
    /// `snapshots_offset` (offset 64) override.
    package var snapshotsOffset: UInt64?
    /// `incompatible_features` (offset 72); `nil` = bit 3 if ``compressionType`` is non-zero, bit 4 if ``extendedL2``.
    package var incompatibleFeatures: UInt64?
    /// `compatible_features` (offset 80).
    package var compatibleFeatures: UInt64 = 0
    /// `autoclear_features` (offset 88); `nil` = bit 0 exactly when the bitmaps extension is written.
    package var autoclearFeatures: UInt64?
    /// `refcount_order` (offset 96); the refcount blocks are written with `1 << min(refcountOrder, 6)` bits (16 for v2).
    package var refcountOrder: UInt32 = 4
    /// `header_length` (offset 100) override; `nil` = 112. Only written for v3.
    package var headerLength: UInt32?
    /// `compression_type` (offset 104): 0 zlib, 1 zstd.
    package var compressionType: UInt8 = 0
    /// The bytes written from offset 104 up to the start of the extensions (v3 only).
    ///
    /// `nil` = `compressionType` followed by zeros up to `header_length` (nothing when `header_length`
    /// is 104 or less). Extensions start right after these bytes.
    package var additionalHeaderFields: [UInt8]?
    /// Backing file name bytes, written right after the end-of-extensions marker.
    package var backingFile: [UInt8]?
    /// `backing_file_offset` (offset 8) override; `nil` = where the name was written, or 0.
    package var backingFileOffset: UInt64?
    /// `backing_file_size` (offset 16) override; `nil` = the name length, or 0.
    package var backingFileSize: UInt32?

    // MARK: Structures

    /// Write 128-bit extended L2 entries for ``guestClusters`` (and set incompatible bit 4 by default).
    package var extendedL2 = false
    /// Header extensions in write order.
    package var extensions: [HeaderExtension] = []
    /// Whether the 8-byte end-of-extensions marker is written.
    package var writesEndOfExtensions = true
    /// Field overrides of the bitmaps extension.
    package var bitmapsExtension = BitmapsExtension()
    /// Bitmap directory entries, in directory order.
    package var bitmaps: [Bitmap] = []
    /// Internal snapshots, in table order.
    package var snapshots: [Snapshot] = []
    /// Guest data by guest cluster index; each gets an L2 entry and a host cluster (zero-filled to a cluster).
    package var guestClusters: [UInt64: [UInt8]] = [:]
    /// Refcount values by host offset (any offset inside the cluster), replacing the default refcount of 1.
    package var refcountOverrides: [UInt64: UInt64] = [:]
    /// Bytes appended after the last cluster.
    package var trailingBytes: [UInt8] = []

    /// Creates a builder for an image with the given version, cluster size exponent and virtual size.
    ///
    /// - Parameters:
    ///   - version: 2 or 3 (other values are written verbatim).
    ///   - clusterBits: Cluster size exponent; 9 (512 B) keeps crafted images small.
    ///   - size: Virtual disk size in bytes.
    package init(version: UInt32 = 3, clusterBits: UInt32 = 16, size: UInt64) {
        self.version = version
        self.clusterBits = clusterBits
        self.size = size
    }

    /// Whether the v3 header layout (with feature fields) is written.
    var isVersion3Layout: Bool { version >= 3 }

    /// The cluster size the layout uses (``clusterBits`` clamped to 9...21).
    var layoutClusterBits: Int { Int(min(max(clusterBits, 9), 21)) }

    /// The cluster size in bytes the layout uses.
    package var layoutClusterSize: Int { 1 << layoutClusterBits }

    /// Bytes per L2 entry: 16 with extended L2 entries, 8 otherwise.
    var l2EntryBytes: Int { extendedL2 ? 16 : 8 }

    /// The refcount width in bits used to write the refcount blocks.
    var refcountBits: Int { isVersion3Layout ? 1 << Int(min(refcountOrder, 6)) : 16 }

    /// Whether the bitmaps extension is written.
    var writesBitmapsExtension: Bool {
        bitmapsExtension.present ?? (!bitmaps.isEmpty || extensions.contains(.bitmaps))
    }

    /// Number of entries of the active L1 table: enough for ``size`` and for every guest cluster.
    var activeL1Entries: Int {
        let l2Entries = UInt64(layoutClusterSize / l2EntryBytes)
        let bytesPerL2 = UInt64(layoutClusterSize) * l2Entries
        var entries = Int(min(Arithmetic.divideRoundingUp(size, bytesPerL2), 1 << 22))
        if let highest = guestClusters.keys.max() { entries = max(entries, Int(highest / l2Entries) + 1) }
        return entries
    }

    // MARK: Building

    /// Computes where every structure goes, without serializing anything.
    ///
    /// - Returns: The offsets and sizes ``build()`` will use.
    package func layout() -> Layout {
        let clusterSize = layoutClusterSize
        func clusters(_ bytes: Int) -> Int { Arithmetic.divideRoundingUp(bytes, clusterSize) }

        // Allocate everything after the refcount structures in relative cluster indices.
        var next = 0
        func allocate(_ count: Int) -> Int {
            defer { next += count }
            return next
        }
        let l1Entries = activeL1Entries
        let l1Start = allocate(l1Entries > 0 ? clusters(l1Entries * 8) : 0)
        let l2Entries = UInt64(clusterSize / l2EntryBytes)
        let l1Indexes = Set(guestClusters.keys.map { Int($0 / l2Entries) }).sorted()
        var l2Relative: [Int: Int] = [:]
        for index in l1Indexes { l2Relative[index] = allocate(1) }
        var guestRelative: [UInt64: Int] = [:]
        for index in guestClusters.keys.sorted() { guestRelative[index] = allocate(1) }
        var tableRelative: [Int] = []
        var tableClusterCounts: [Int] = []
        var dataRelative: [[Int: Int]] = []
        for bitmap in bitmaps {
            let entries = bitmap.allocatedEntries(size: size, clusterBits: layoutClusterBits)
            let count = entries > 0 ? clusters(entries * 8) : 0
            tableRelative.append(allocate(count))
            tableClusterCounts.append(count)
            var data: [Int: Int] = [:]
            for index in bitmap.dataClusters.keys.sorted() { data[index] = allocate(1) }
            dataRelative.append(data)
        }
        let directoryBytes = bitmaps.reduce(0) { total, bitmap in
            total + bitmap.directoryEntry(allocatedTableOffset: 0, size: size, clusterBits: layoutClusterBits).count
        }
        let directoryStart = allocate(clusters(directoryBytes))
        var snapshotL1Relative: [Int] = []
        for snapshot in snapshots {
            let entries = snapshot.allocatedL1Entries(activeL1Entries: l1Entries)
            snapshotL1Relative.append(allocate(entries > 0 ? clusters(entries * 8) : 0))
        }
        let snapshotTableBytes = snapshots.enumerated().reduce(0) { total, item in
            total + item.element.tableEntry(
                allocatedL1Offset: 0,
                allocatedL1Entries: item.element.allocatedL1Entries(activeL1Entries: l1Entries),
                imageSize: size
            ).count
        }
        let snapshotTableStart = allocate(clusters(snapshotTableBytes))
        let rest = next

        // Header area, then refcount table and blocks sized by a fixed point.
        let headerClusters = max(1, clusters(headerArea(layout: nil).count))
        let entriesPerBlock = clusterSize * 8 / refcountBits
        var tableClusters = 1
        var blocks = 1
        while true {
            let total = headerClusters + tableClusters + blocks + rest
            let newBlocks = max(1, Arithmetic.divideRoundingUp(total, entriesPerBlock))
            let newTable = max(1, clusters(newBlocks * 8))
            if newBlocks == blocks && newTable == tableClusters { break }
            blocks = newBlocks
            tableClusters = newTable
        }
        let base = headerClusters + tableClusters + blocks
        func offset(_ relative: Int) -> UInt64 { UInt64((base + relative) * clusterSize) }

        return Layout(
            clusterSize: clusterSize,
            headerClusters: headerClusters,
            refcountTableOffset: UInt64(headerClusters * clusterSize),
            refcountTableClusters: tableClusters,
            refcountBlockOffsets: (0..<blocks).map { UInt64((headerClusters + tableClusters + $0) * clusterSize) },
            l1TableOffset: l1Entries > 0 ? offset(l1Start) : 0,
            l1Entries: l1Entries,
            l2TableOffsets: l2Relative.mapValues(offset),
            guestDataOffsets: guestRelative.mapValues(offset),
            bitmapTableOffsets: zip(tableRelative, tableClusterCounts).map { $1 > 0 ? offset($0) : 0 },
            bitmapTableClusters: tableClusterCounts,
            bitmapDataOffsets: dataRelative.map { $0.mapValues(offset) },
            bitmapDirectoryOffset: directoryBytes > 0 ? offset(directoryStart) : 0,
            bitmapDirectorySize: directoryBytes,
            snapshotL1Offsets: snapshotL1Relative.map(offset),
            snapshotTableOffset: snapshotTableBytes > 0 ? offset(snapshotTableStart) : 0,
            snapshotTableSize: snapshotTableBytes,
            clusterCount: base + rest
        )
    }

    /// Serializes the image.
    ///
    /// - Returns: The image bytes: `layout().clusterCount` clusters followed by ``trailingBytes``.
    package func build() -> [UInt8] {
        let layout = layout()
        let clusterSize = layout.clusterSize
        var image = [UInt8](repeating: 0, count: layout.clusterCount * clusterSize)
        ByteWriter.copy(headerArea(layout: layout), into: &image, at: 0)

        // Refcount table and blocks: every cluster of the file is in use once, unless overridden.
        for (index, block) in layout.refcountBlockOffsets.enumerated() {
            ByteWriter.patch(
                &image, at: Int(layout.refcountTableOffset) + index * 8, value: block, width: 8)
        }
        var overrides: [Int: UInt64] = [:]
        for (offset, value) in refcountOverrides { overrides[Int(offset / UInt64(clusterSize))] = value }
        let entriesPerBlock = clusterSize * 8 / refcountBits
        for cluster in 0..<layout.clusterCount {
            let block = Int(layout.refcountBlockOffsets[cluster / entriesPerBlock])
            writeRefcount(overrides[cluster] ?? 1, index: cluster % entriesPerBlock, blockOffset: block, into: &image)
        }
        for (cluster, value) in overrides where cluster >= layout.clusterCount {
            let blockIndex = cluster / entriesPerBlock
            if layout.refcountBlockOffsets.indices.contains(blockIndex) {
                let block = Int(layout.refcountBlockOffsets[blockIndex])
                writeRefcount(value, index: cluster % entriesPerBlock, blockOffset: block, into: &image)
            }
        }

        // Active L1, L2 tables and guest data.
        let copied: UInt64 = 1 << 63
        let l2Entries = UInt64(clusterSize / l2EntryBytes)
        for (l1Index, l2Offset) in layout.l2TableOffsets {
            ByteWriter.patch(&image, at: Int(layout.l1TableOffset) + l1Index * 8, value: l2Offset | copied, width: 8)
        }
        for (guestCluster, hostOffset) in layout.guestDataOffsets {
            guard let l2Offset = layout.l2TableOffsets[Int(guestCluster / l2Entries)] else { continue }
            let entryOffset = Int(l2Offset) + Int(guestCluster % l2Entries) * l2EntryBytes
            ByteWriter.patch(&image, at: entryOffset, value: hostOffset | copied, width: 8)
            if extendedL2 {
                ByteWriter.patch(&image, at: entryOffset + 8, value: 0xffff_ffff, width: 8)
            }
            ByteWriter.copy(clusterSized(guestClusters[guestCluster] ?? []), into: &image, at: Int(hostOffset))
        }

        // Bitmap tables, data clusters and the directory.
        var directory = ByteWriter()
        for (index, bitmap) in bitmaps.enumerated() {
            let tableOffset = layout.bitmapTableOffsets[index]
            var entries = [UInt64](
                repeating: 0, count: bitmap.allocatedEntries(size: size, clusterBits: layoutClusterBits))
            for (dataIndex, dataOffset) in layout.bitmapDataOffsets[index] {
                if entries.indices.contains(dataIndex) { entries[dataIndex] = dataOffset }
                ByteWriter.copy(
                    clusterSized(bitmap.dataClusters[dataIndex] ?? []), into: &image, at: Int(dataOffset))
            }
            for (entryIndex, value) in bitmap.entryOverrides where entries.indices.contains(entryIndex) {
                entries[entryIndex] = value
            }
            for (entryIndex, value) in entries.enumerated() {
                ByteWriter.patch(&image, at: Int(tableOffset) + entryIndex * 8, value: value, width: 8)
            }
            directory.append(
                bitmap.directoryEntry(allocatedTableOffset: tableOffset, size: size, clusterBits: layoutClusterBits))
        }
        if !directory.bytes.isEmpty {
            ByteWriter.copy(directory.bytes, into: &image, at: Int(layout.bitmapDirectoryOffset))
        }

        // Snapshot L1 tables and the snapshot table.
        var snapshotTable = ByteWriter()
        for (index, snapshot) in snapshots.enumerated() {
            let l1Offset = layout.snapshotL1Offsets[index]
            let count = snapshot.allocatedL1Entries(activeL1Entries: layout.l1Entries)
            for (entryIndex, value) in (snapshot.l1Entries ?? []).enumerated() {
                ByteWriter.patch(&image, at: Int(l1Offset) + entryIndex * 8, value: value, width: 8)
            }
            snapshotTable.append(
                snapshot.tableEntry(allocatedL1Offset: count > 0 ? l1Offset : 0, allocatedL1Entries: count, imageSize: size))
        }
        if !snapshotTable.bytes.isEmpty {
            ByteWriter.copy(snapshotTable.bytes, into: &image, at: Int(layout.snapshotTableOffset))
        }

        image.append(contentsOf: trailingBytes)
        return image
    }

    /// Pads or truncates `bytes` to exactly one cluster.
    private func clusterSized(_ bytes: [UInt8]) -> [UInt8] {
        let clusterSize = layoutClusterSize
        if bytes.count >= clusterSize { return Array(bytes.prefix(clusterSize)) }
        return bytes + [UInt8](repeating: 0, count: clusterSize - bytes.count)
    }

    /// Writes one refcount entry of ``refcountBits`` bits (big-endian; sub-byte widths LSB-first, spec §1.8).
    private func writeRefcount(_ value: UInt64, index: Int, blockOffset: Int, into image: inout [UInt8]) {
        let bits = refcountBits
        if bits >= 8 {
            ByteWriter.patch(&image, at: blockOffset + index * bits / 8, value: value, width: bits / 8)
        } else {
            let bitPosition = index * bits
            let byteOffset = blockOffset + bitPosition / 8
            let shift = bitPosition % 8
            let mask = UInt8((1 << bits) - 1)
            let field = UInt8(truncatingIfNeeded: value) & mask
            image[byteOffset] = (image[byteOffset] & ~(mask << shift)) | (field << shift)
        }
    }

    /// Serializes the header, the extensions, the end marker and the backing file name.
    ///
    /// With `layout == nil` every offset is written as 0; the length is the same either way.
    func headerArea(layout: Layout?) -> [UInt8] {
        var writer = ByteWriter()
        writer.append32(magic)
        writer.append32(version)
        let backingOffsetPosition = writer.count
        writer.append64(0)  // backing_file_offset, patched below
        writer.append32(0)  // backing_file_size, patched below
        writer.append32(clusterBitsField ?? clusterBits)
        writer.append64(size)
        writer.append32(cryptMethod)
        writer.append32(l1Size ?? UInt32(truncatingIfNeeded: layout?.l1Entries ?? 0))
        writer.append64(l1TableOffset ?? layout?.l1TableOffset ?? 0)
        writer.append64(refcountTableOffset ?? layout?.refcountTableOffset ?? 0)
        writer.append32(refcountTableClusters ?? UInt32(truncatingIfNeeded: layout?.refcountTableClusters ?? 0))
        writer.append32(nbSnapshots ?? UInt32(truncatingIfNeeded: snapshots.count))
        writer.append64(snapshotsOffset ?? layout?.snapshotTableOffset ?? 0)
        if isVersion3Layout {
            let derivedIncompatible: UInt64 = (compressionType != 0 ? 0x8 : 0) | (extendedL2 ? 0x10 : 0)
            writer.append64(incompatibleFeatures ?? derivedIncompatible)
            writer.append64(compatibleFeatures)
            writer.append64(autoclearFeatures ?? (writesBitmapsExtension ? 0x1 : 0))
            writer.append32(refcountOrder)
            let length = headerLength ?? 112
            writer.append32(length)
            if let additionalHeaderFields {
                writer.append(additionalHeaderFields)
            } else if length > 104 {
                writer.append8(compressionType)
                writer.appendZeros(Int(length) - 105)
            }
        }

        let payload = bitmapsPayload(layout: layout)
        var wroteBitmaps = false
        for ext in extensions {
            if ext == .bitmaps {
                guard writesBitmapsExtension else { continue }
                wroteBitmaps = true
            }
            writer.append(ext.serialized(bitmapsPayload: payload))
        }
        if writesBitmapsExtension && !wroteBitmaps {
            writer.append(HeaderExtension.bitmaps.serialized(bitmapsPayload: payload))
        }
        if writesEndOfExtensions { writer.appendZeros(8) }

        var header = writer.bytes
        var nameOffset: UInt64 = 0
        if let backingFile {
            nameOffset = UInt64(header.count)
            header.append(contentsOf: backingFile)
        }
        ByteWriter.patch(&header, at: backingOffsetPosition, value: backingFileOffset ?? nameOffset, width: 8)
        ByteWriter.patch(
            &header, at: backingOffsetPosition + 8,
            value: UInt64(backingFileSize ?? UInt32(truncatingIfNeeded: backingFile?.count ?? 0)), width: 4)
        return header
    }

    /// The bitmaps extension data (normally 24 bytes), honouring every override.
    private func bitmapsPayload(layout: Layout?) -> [UInt8] {
        var writer = ByteWriter()
        writer.append32(bitmapsExtension.nbBitmaps ?? UInt32(truncatingIfNeeded: bitmaps.count))
        writer.append32(bitmapsExtension.reserved32)
        writer.append64(bitmapsExtension.directorySize ?? UInt64(layout?.bitmapDirectorySize ?? 0))
        writer.append64(bitmapsExtension.directoryOffset ?? layout?.bitmapDirectoryOffset ?? 0)
        let length = Int(bitmapsExtension.length ?? 24)
        if length <= writer.count { return Array(writer.bytes.prefix(length)) }
        return writer.bytes + [UInt8](repeating: 0, count: length - writer.count)
    }

    // MARK: Convenience

    /// Fills guest cluster `index` with `byte`, allocating an L2 table and a data cluster for it.
    package mutating func fillGuestCluster(_ index: UInt64, with byte: UInt8) {
        guestClusters[index] = [UInt8](repeating: byte, count: layoutClusterSize)
    }

    /// Overwrites `width` bytes of `bytes` at `offset` with `value`, big-endian (for post-build patches).
    package static func patch(_ bytes: inout [UInt8], at offset: Int, value: UInt64, width: Int) {
        ByteWriter.patch(&bytes, at: offset, value: value, width: width)
    }
}

extension ImageBuilder {
    /// Where ``ImageBuilder/build()`` puts each structure; all offsets are absolute file offsets.
    package struct Layout: Sendable, Equatable {
        /// Cluster size in bytes.
        package var clusterSize: Int
        /// Clusters taken by the header, extensions and backing file name (normally 1).
        package var headerClusters: Int
        /// Offset of the refcount table.
        package var refcountTableOffset: UInt64
        /// Clusters of the refcount table.
        package var refcountTableClusters: Int
        /// Offsets of the refcount blocks, in table order.
        package var refcountBlockOffsets: [UInt64]
        /// Offset of the active L1 table (0 when it has no entries).
        package var l1TableOffset: UInt64
        /// Entries of the active L1 table.
        package var l1Entries: Int
        /// L2 table offsets by L1 index.
        package var l2TableOffsets: [Int: UInt64]
        /// Host offsets of guest data by guest cluster index.
        package var guestDataOffsets: [UInt64: UInt64]
        /// Bitmap table offsets, one per bitmap (0 when no table is allocated).
        package var bitmapTableOffsets: [UInt64]
        /// Clusters allocated per bitmap table.
        package var bitmapTableClusters: [Int]
        /// Bitmap data cluster offsets by table index, one dictionary per bitmap.
        package var bitmapDataOffsets: [[Int: UInt64]]
        /// Offset of the bitmap directory (0 when there are no bitmaps).
        package var bitmapDirectoryOffset: UInt64
        /// Byte length of the serialized directory.
        package var bitmapDirectorySize: Int
        /// Offsets of the snapshot L1 tables, one per snapshot.
        package var snapshotL1Offsets: [UInt64]
        /// Offset of the snapshot table (0 when there are no snapshots).
        package var snapshotTableOffset: UInt64
        /// Byte length of the snapshot table.
        package var snapshotTableSize: Int
        /// Total clusters in the file (all with refcount 1 by default).
        package var clusterCount: Int
    }
}
