import Foundation

/// An image file could not be patched as asked.
package struct ImagePatchError: Error, CustomStringConvertible {
    /// What went wrong, with the file and offset.
    package var description: String

    init(_ description: String) { self.description = description }
}

/// Pokes bytes into an existing image file in place, the way the project reference's `tools/q2.py` crafted the damaged
/// images of qemu-check-map.md §4 (`poke64`, `set_refcount`, `os.truncate`).
///
/// Every write goes through one `pwrite`-like update of the bytes concerned, never a rewrite of the whole file:
/// rewriting would fill the file's holes, which changes `st_blocks` and with it qemu-img map's
/// metadata-preallocation heuristic (qemu-check-map.md §2.4), so the image would no longer be the one the
/// expected output was recorded for.
package enum ImagePatch {
    /// The big-endian `UInt64` at `offset`; bytes past the end of the file read as zero (as q2.py's `u64`).
    package static func peek64(_ path: String, _ offset: UInt64) throws -> UInt64 {
        let bytes = try read(path, offset, count: 8)
        return bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Writes `value` big-endian at `offset` (q2.py `poke64`).
    package static func poke64(_ path: String, _ offset: UInt64, _ value: UInt64) throws {
        try poke(path, offset, bigEndian(value, width: 8))
    }

    /// Writes `bytes` at `offset`, growing the file if the range ends past it (q2.py `poke`).
    package static func poke(_ path: String, _ offset: UInt64, _ bytes: [UInt8]) throws {
        let handle = try open(path)
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data(bytes))
    }

    /// Sets the file's length to `size` bytes (`os.truncate`); growing leaves a hole.
    package static func truncate(_ path: String, _ size: UInt64) throws {
        let handle = try open(path)
        defer { try? handle.close() }
        try handle.truncate(atOffset: size)
    }

    /// Rewrites the on-disk refcount of host cluster `cluster` to `value`, for any refcount width from 1 to 64 bits
    /// (q2.py `set_refcount`: widths below 8 bits are packed LSB first within a byte, wider ones are big-endian).
    ///
    /// - Throws: ``ImagePatchError`` if the reftable entry that covers the cluster is zero (no refblock) or
    ///   `value` does not fit the width.
    package static func setRefcount(_ path: String, _ cluster: UInt64, _ value: UInt64) throws {
        let header = try read(path, 0, count: 104)
        let version = be(header, 4, 4)
        let clusterBits = be(header, 20, 4)
        let reftableOffset = be(header, 48, 8)
        let refcountOrder = version >= 3 ? be(header, 96, 4) : 4
        guard (9...21).contains(clusterBits), refcountOrder <= 6 else {
            throw ImagePatchError("\(path): cluster_bits \(clusterBits) or refcount_order \(refcountOrder) out of range")
        }
        let bits = UInt64(1) << refcountOrder
        guard bits == 64 || value < UInt64(1) << bits else {
            throw ImagePatchError("\(path): refcount \(value) does not fit \(bits) bits")
        }
        let entriesPerBlock = (UInt64(1) << clusterBits) * 8 / bits
        let tableIndex = cluster / entriesPerBlock
        let block = try peek64(path, reftableOffset + tableIndex * 8) & ~UInt64(0x1ff)
        guard block != 0 else {
            throw ImagePatchError("\(path): reftable entry \(tableIndex) (cluster \(cluster)) has no refblock")
        }
        let bitOffset = (cluster % entriesPerBlock) * bits
        let byteOffset = block + bitOffset / 8
        if bits >= 8 {
            try poke(path, byteOffset, bigEndian(value, width: Int(bits / 8)))
        } else {
            let shift = bitOffset % 8
            let mask = UInt8(truncatingIfNeeded: ((UInt64(1) << bits) - 1) << shift)
            let old = try read(path, byteOffset, count: 1)[0]
            let new = (old & ~mask) | (UInt8(truncatingIfNeeded: value << shift) & mask)
            try poke(path, byteOffset, [new])
        }
    }

    /// Changes the magic of every header extension whose magic is `magic` to `newMagic` (qemu ignores unknown
    /// extensions, so renaming `0xE2792ACA` removes the backing file format, as qemu-check-map.md §4.3 "no backing
    /// format" did).
    ///
    /// - Throws: ``ImagePatchError`` if the image has no such extension.
    package static func renameExtension(_ path: String, magic: UInt32, to newMagic: UInt32) throws {
        let header = try read(path, 0, count: 104)
        let version = be(header, 4, 4)
        let clusterSize = UInt64(1) << min(be(header, 20, 4), 21)
        var offset = version >= 3 ? be(header, 100, 4) : 72
        var renamed = 0
        // The extensions end at the terminator (magic 0) and never leave the first cluster.
        while offset + 8 <= clusterSize {
            let head = try read(path, offset, count: 8)
            let found = UInt32(truncatingIfNeeded: be(head, 0, 4))
            let length = be(head, 4, 4)
            if found == 0 { break }
            if found == magic {
                try poke(path, offset, bigEndian(UInt64(newMagic), width: 4))
                renamed += 1
            }
            offset += 8 + (length + 7) / 8 * 8
        }
        guard renamed > 0 else {
            throw ImagePatchError("\(path): no header extension with magic 0x\(String(magic, radix: 16))")
        }
    }

    /// Creates (or replaces) a sparse file of `size` bytes that holds `fills` at their offsets and holes elsewhere,
    /// like the recipes' `f.truncate(size); f.seek(off); f.write(...)`.
    package static func writeSparseFile(_ path: String, size: UInt64, fills: [(offset: UInt64, bytes: [UInt8])]) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw ImagePatchError("\(path): cannot create")
        }
        let handle = try open(path)
        defer { try? handle.close() }
        try handle.truncate(atOffset: size)
        for fill in fills {
            try handle.seek(toOffset: fill.offset)
            try handle.write(contentsOf: Data(fill.bytes))
        }
    }

    /// `count` bytes that do not compress (SplitMix64 seeded with `seed`, little-endian words): the stand-in for
    /// the recipes' `os.urandom`, the same on every run.
    package static func pseudoRandomBytes(seed: UInt64, count: Int) -> [UInt8] {
        var state = 0x5157_4f43_5343_4f50 ^ seed
        var out: [UInt8] = []
        out.reserveCapacity(count + 8)
        while out.count < count {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            z ^= z >> 31
            for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: z >> UInt64(shift))) }
        }
        return Array(out.prefix(count))
    }

    // MARK: Helpers

    private static func open(_ path: String) throws -> FileHandle {
        guard let handle = FileHandle(forUpdatingAtPath: path) else {
            throw ImagePatchError("\(path): cannot open for update")
        }
        return handle
    }

    /// `count` bytes at `offset`, zero-padded where the file ends earlier.
    private static func read(_ path: String, _ offset: UInt64, count: Int) throws -> [UInt8] {
        let handle = try open(path)
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        var bytes = [UInt8](try handle.read(upToCount: count) ?? Data())
        if bytes.count < count { bytes += repeatElement(0, count: count - bytes.count) }
        return bytes
    }

    /// The big-endian unsigned integer of `width` bytes at `offset` of `bytes`.
    private static func be(_ bytes: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
        bytes[offset..<(offset + width)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func bigEndian(_ value: UInt64, width: Int) -> [UInt8] {
        (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(width - 1 - $0))) }
    }
}
