extension ImageBuilder {
    /// One internal snapshot table entry (spec §1.9) with an own, all-unallocated L1 table.
    ///
    /// Fields left `nil` are computed at build time: the L1 table offset and size, `id_str_size`,
    /// `name_size`, the 24 bytes of extra data that QEMU 7.2 writes, `extra_data_size` and zero padding.
    package struct Snapshot: Sendable, Equatable {
        /// Unique ID string bytes (QEMU uses "1", "2", ...).
        package var id: [UInt8]
        /// Name bytes.
        package var name: [UInt8]
        /// `id_str_size` override.
        package var idSize: UInt16?
        /// `name_size` override.
        package var nameSize: UInt16?
        /// `l1_table_offset` override; `nil` = the allocated snapshot L1 table.
        package var l1TableOffset: UInt64?
        /// `l1_size` override; `nil` = the number of allocated entries.
        package var l1Size: UInt32?
        /// Raw L1 entries written to the snapshot's table; `nil` = zeros, as many as the active L1 table.
        package var l1Entries: [UInt64]?
        /// `date_sec`.
        package var dateSeconds: UInt32 = 0
        /// `date_nsec`.
        package var dateNanoseconds: UInt32 = 0
        /// `vm_clock_nsec`.
        package var vmClockNanoseconds: UInt64 = 0
        /// 32-bit `vm_state_size`.
        package var vmStateSize: UInt32 = 0
        /// Extra data +0: 64-bit `vm_state_size_large`.
        package var vmStateSizeLarge: UInt64 = 0
        /// Extra data +8: `disk_size`; `nil` = the image's virtual size.
        package var diskSize: UInt64?
        /// Extra data +16: `icount`; QEMU 7.2's `qemu-img snapshot -c` writes 0.
        package var icount: UInt64 = 0
        /// Full extra data override; `nil` = the 24 bytes built from the three fields above.
        package var extraData: [UInt8]?
        /// `extra_data_size` override.
        package var extraDataSize: UInt32?
        /// Padding override; `nil` = zeros up to a multiple of 8.
        package var padding: [UInt8]?

        /// Creates a snapshot with the given ID and name.
        package init(id: String, name: String) {
            self.id = Array(id.utf8)
            self.name = Array(name.utf8)
        }

        /// The number of L1 entries allocated for this snapshot.
        func allocatedL1Entries(activeL1Entries: Int) -> Int {
            l1Entries?.count ?? activeL1Entries
        }

        /// Serializes the table entry given the L1 table offset the builder chose.
        func tableEntry(allocatedL1Offset: UInt64, allocatedL1Entries: Int, imageSize: UInt64) -> [UInt8] {
            var extra = ByteWriter()
            if let extraData {
                extra.append(extraData)
            } else {
                extra.append64(vmStateSizeLarge)
                extra.append64(diskSize ?? imageSize)
                extra.append64(icount)
            }
            var writer = ByteWriter()
            writer.append64(l1TableOffset ?? allocatedL1Offset)
            writer.append32(l1Size ?? UInt32(truncatingIfNeeded: allocatedL1Entries))
            writer.append16(idSize ?? UInt16(truncatingIfNeeded: id.count))
            writer.append16(nameSize ?? UInt16(truncatingIfNeeded: name.count))
            writer.append32(dateSeconds)
            writer.append32(dateNanoseconds)
            writer.append64(vmClockNanoseconds)
            writer.append32(vmStateSize)
            writer.append32(extraDataSize ?? UInt32(truncatingIfNeeded: extra.count))
            writer.append(extra.bytes)
            writer.append(id)
            writer.append(name)
            if let padding {
                writer.append(padding)
            } else {
                writer.pad(to: 8)
            }
            return writer.bytes
        }
    }

    /// Appends a snapshot with the given ID and name and returns its index in ``snapshots``.
    @discardableResult
    package mutating func addSnapshot(id: String, name: String) -> Int {
        snapshots.append(Snapshot(id: id, name: name))
        return snapshots.count - 1
    }
}
