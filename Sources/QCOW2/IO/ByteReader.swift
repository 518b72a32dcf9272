/// A big-endian cursor over bytes read from the file, that knows the file offset of each byte.
///
/// Every read is bounds-checked and throws a ``QCOW2Error`` naming the structure, the field and
/// its file offset, so a lying length can never read past the slice it was given.
struct ByteReader {
    /// The bytes.
    let bytes: [UInt8]
    /// The file offset of `bytes[0]`.
    let base: UInt64
    /// The structure name used in errors.
    let structure: String
    /// Current index into `bytes`.
    private(set) var position = 0

    init(_ bytes: [UInt8], base: UInt64, structure: String) {
        self.bytes = bytes
        self.base = base
        self.structure = structure
    }

    /// Bytes left after the cursor.
    var remaining: Int { bytes.count - position }

    /// File offset of the cursor.
    var fileOffset: UInt64 { base &+ UInt64(position) }

    private func need(_ n: Int, _ field: String) throws(QCOW2Error) {
        guard n <= remaining else {
            throw QCOW2Error(
                .truncated, structure: structure, field: field, offset: fileOffset,
                message: "needs \(n) bytes, only \(remaining) left")
        }
    }

    mutating func u8(_ field: String) throws(QCOW2Error) -> UInt8 {
        try need(1, field)
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16(_ field: String) throws(QCOW2Error) -> UInt16 {
        UInt16(truncatingIfNeeded: try uint(2, field))
    }

    mutating func u32(_ field: String) throws(QCOW2Error) -> UInt32 {
        UInt32(truncatingIfNeeded: try uint(4, field))
    }

    mutating func u64(_ field: String) throws(QCOW2Error) -> UInt64 {
        try uint(8, field)
    }

    private mutating func uint(_ n: Int, _ field: String) throws(QCOW2Error) -> UInt64 {
        try need(n, field)
        var v: UInt64 = 0
        for i in position..<(position + n) { v = v << 8 | UInt64(bytes[i]) }
        position += n
        return v
    }

    mutating func bytes(_ n: Int, _ field: String) throws(QCOW2Error) -> [UInt8] {
        guard n >= 0 else {
            throw QCOW2Error(.outOfRange, structure: structure, field: field, offset: fileOffset, message: "negative length")
        }
        try need(n, field)
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    mutating func skip(_ n: Int, _ field: String) throws(QCOW2Error) {
        try need(n, field)
        position += n
    }

    /// Reads a big-endian unsigned integer at an absolute index without moving the cursor.
    static func uint(_ bytes: [UInt8], at index: Int, width: Int) -> UInt64 {
        var v: UInt64 = 0
        guard index >= 0, width >= 0, index <= bytes.count, width <= bytes.count - index else { return 0 }
        for i in index..<(index + width) { v = v << 8 | UInt64(bytes[i]) }
        return v
    }

    /// Big-endian 64-bit words: `count` of them, `stride` bytes apart, from byte `offset` (zero past the end).
    ///
    /// The map decodes whole L2 tables with it; one pass over the bytes, no per-word bounds loop.
    static func words(_ bytes: [UInt8], count: Int, stride: Int, offset: Int = 0) -> [UInt64] {
        guard count > 0, stride >= 8, offset >= 0 else { return [] }
        var out = [UInt64](repeating: 0, count: count)
        let usable = bytes.count >= offset + 8 ? min(count, (bytes.count - offset - 8) / stride + 1) : 0
        unsafe bytes.withUnsafeBytes { raw in
            unsafe out.withUnsafeMutableBufferPointer { words in
                for i in 0..<usable {
                    unsafe words[i] = UInt64(bigEndian: unsafe raw.loadUnaligned(fromByteOffset: offset + i * stride, as: UInt64.self))
                }
            }
        }
        return out
    }
}
