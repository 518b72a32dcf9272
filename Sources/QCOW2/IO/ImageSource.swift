/// Where image bytes come from: a file read with `pread`, or memory in tests and fuzzing.
///
/// Implementations never write. A read either returns exactly `count` bytes or throws.
public protocol ImageSource: Sendable {
    /// Size of the image in bytes, as known when the source was opened.
    var size: UInt64 { get }

    /// Reads exactly `count` bytes starting at `offset`.
    ///
    /// - Throws: ``QCOW2Error`` of kind `truncated` when fewer bytes exist, `io` on a system error.
    func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8]

    /// Why `lseek(fd, offset, SEEK_SET)` on this source fails (the system's reason), `nil` when it succeeds.
    ///
    /// For tools that mimic a seek-then-read program such as qcow2.py: file systems refuse offsets past
    /// their largest file size (EINVAL past 16 TiB on ext4). Nothing is read or written; a default for
    /// sources without a descriptor is in `ImageSource+Seek.swift`.
    func seekFailure(at offset: UInt64) -> String?

    /// Whether the bytes at `offset` are data or a hole, and up to where (`SEEK_DATA`/`SEEK_HOLE`).
    ///
    /// Only the descriptor's file position moves; nothing is read or written. The map uses it where
    /// QEMU asks the host file (raw backing files, the metadata-preallocation check).
    func region(at offset: UInt64) -> HostRegion

    /// Bytes the file occupies on disk (`st_blocks * 512` at open time).
    var allocatedBytes: UInt64 { get }
}

extension ImageSource {
    /// Reads `count` bytes at `offset` for `structure`, the part past the end of the file as zeros.
    ///
    /// QEMU reads tables that lie past the end of the file as zeros (L1 and L2 tables, refcount
    /// blocks); so does the map. An offset overflow is still an error.
    func readZeroFilled(_ structure: String, at offset: UInt64, count: UInt64) throws(QCOW2Error) -> [UInt8] {
        guard count <= UInt64(Int32.max), offset +? count != nil else {
            throw QCOW2Error(
                .outOfRange, structure: structure, value: "\(count) bytes", offset: offset,
                message: "offset + length overflows 64 bits")
        }
        guard offset < size else { return [UInt8](repeating: 0, count: Int(count)) }
        let present = min(count, size - offset)
        var bytes = try read(structure, at: offset, count: present)
        if present < count { bytes += [UInt8](repeating: 0, count: Int(count - present)) }
        return bytes
    }

    /// Reads `count` bytes at `offset` for `structure`, naming it in the error when the file is too short.
    func read(_ structure: String, at offset: UInt64, count: UInt64) throws(QCOW2Error) -> [UInt8] {
        guard count <= UInt64(Int.max), let end = offset +? count else {
            throw QCOW2Error(
                .outOfRange, structure: structure, value: "\(count) bytes", offset: offset,
                message: "offset + length overflows 64 bits")
        }
        guard end <= size else {
            throw QCOW2Error(
                .truncated, structure: structure, value: "\(count) bytes", offset: offset,
                message: "ends at \(end) (\(Hex.string(end))), past the end of the file (\(size) bytes)")
        }
        do {
            return try read(at: offset, count: Int(count))
        } catch {
            var e = error
            if e.structure == "file" { e.structure = structure }
            throw e
        }
    }
}
