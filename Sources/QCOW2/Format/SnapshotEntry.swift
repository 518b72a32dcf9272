/// One internal snapshot table entry (qcow2.txt "Snapshots").
public struct SnapshotEntry: Sendable, Hashable {
    /// Bytes 0-7 (`l1_table_offset`).
    public var l1TableOffset: UInt64
    /// Bytes 8-11 (`l1_size`).
    public var l1Size: UInt32
    /// Bytes 12-13 (`id_str_size`).
    public var idStrSize: UInt16
    /// Bytes 14-15 (`name_size`).
    public var nameSize: UInt16
    /// Bytes 16-19 (`date_sec`).
    public var dateSec: UInt32
    /// Bytes 20-23 (`date_nsec`).
    public var dateNsec: UInt32
    /// Bytes 24-31 (`vm_clock_nsec`).
    public var vmClockNsec: UInt64
    /// Bytes 32-35 (`vm_state_size`), 32-bit copy.
    public var vmStateSize32: UInt32
    /// Bytes 36-39 (`extra_data_size`).
    public var extraDataSize: UInt32
    /// Extra data +0: 64-bit vm_state_size, when present.
    public var vmStateSizeLarge: UInt64?
    /// Extra data +8: virtual disk size at snapshot time, when present.
    public var diskSize: UInt64?
    /// Extra data +16: icount, when present (`UInt64.max` means -1: icount disabled).
    public var icount: UInt64?
    /// The unique ID string.
    public var id: ByteString
    /// The name.
    public var name: ByteString
    /// Position in the table.
    public var index: Int
    /// File offset of the entry.
    public var entryOffset: UInt64
    /// Size of the entry on disk, padding included.
    public var entrySize: UInt64

    /// The VM state size: the 64-bit copy when present, else the 32-bit field.
    public var vmStateSize: UInt64 { vmStateSizeLarge ?? UInt64(vmStateSize32) }

    /// icount as a signed value (-1 when disabled), `nil` when absent.
    public var icountSigned: Int64? { icount.map { Int64(bitPattern: $0) } }

    /// Parses one entry from a reader positioned at its start.
    init(parsing r: inout ByteReader, index: Int) throws(QCOW2Error) {
        self.index = index
        entryOffset = r.fileOffset
        let start = r.position
        l1TableOffset = try r.u64("l1_table_offset")
        l1Size = try r.u32("l1_size")
        idStrSize = try r.u16("id_str_size")
        nameSize = try r.u16("name_size")
        dateSec = try r.u32("date_sec")
        dateNsec = try r.u32("date_nsec")
        vmClockNsec = try r.u64("vm_clock_nsec")
        vmStateSize32 = try r.u32("vm_state_size")
        extraDataSize = try r.u32("extra_data_size")
        guard UInt64(extraDataSize) <= Limits.maxSnapshotExtraData * 64 else {
            throw QCOW2Error(
                .limitExceeded, structure: "snapshot[\(index)]", field: "extra_data_size", value: "\(extraDataSize)",
                offset: entryOffset &+ 36, message: "extra data larger than \(Limits.maxSnapshotExtraData * 64) bytes")
        }
        let extra = try r.bytes(Int(extraDataSize), "extra_data")
        vmStateSizeLarge = extra.count >= 8 ? ByteReader.uint(extra, at: 0, width: 8) : nil
        diskSize = extra.count >= 16 ? ByteReader.uint(extra, at: 8, width: 8) : nil
        icount = extra.count >= 24 ? ByteReader.uint(extra, at: 16, width: 8) : nil
        id = ByteString(try r.bytes(Int(idStrSize), "id_str"))
        name = ByteString(try r.bytes(Int(nameSize), "name"))
        let used = r.position - start
        let padded = (used + 7) / 8 * 8
        try r.skip(min(padded - used, r.remaining), "padding")
        entrySize = UInt64(padded)
    }
}
