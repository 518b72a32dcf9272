/// Appends and patches big-endian integers in a byte array.
///
/// QCOW2 stores every multi-byte integer big-endian (spec §1.1); this helper is the only
/// place in the test support module that encodes integers.
struct ByteWriter {
    /// The bytes written so far.
    var bytes: [UInt8] = []

    /// The current length, which is also the offset of the next appended byte.
    var count: Int { bytes.count }

    /// Appends `value` as `width` big-endian bytes, keeping the low-order bytes.
    mutating func append(_ value: UInt64, width: Int) {
        for index in stride(from: width - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(index * 8)))
        }
    }

    /// Appends a big-endian `UInt64`.
    mutating func append64(_ value: UInt64) { append(value, width: 8) }

    /// Appends a big-endian `UInt32`.
    mutating func append32(_ value: UInt32) { append(UInt64(value), width: 4) }

    /// Appends a big-endian `UInt16`.
    mutating func append16(_ value: UInt16) { append(UInt64(value), width: 2) }

    /// Appends one byte.
    mutating func append8(_ value: UInt8) { bytes.append(value) }

    /// Appends raw bytes.
    mutating func append(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }

    /// Appends `count` zero bytes.
    mutating func appendZeros(_ count: Int) {
        if count > 0 { bytes.append(contentsOf: repeatElement(0, count: count)) }
    }

    /// Appends zero bytes until the length is a multiple of `alignment`.
    mutating func pad(to alignment: Int) {
        appendZeros(ByteWriter.paddingLength(count, alignment: alignment))
    }

    /// The number of bytes needed to round `length` up to a multiple of `alignment`.
    static func paddingLength(_ length: Int, alignment: Int) -> Int {
        let remainder = length % alignment
        return remainder == 0 ? 0 : alignment - remainder
    }

    /// Overwrites `width` bytes at `offset` with `value` in big-endian order, growing the array if needed.
    static func patch(_ bytes: inout [UInt8], at offset: Int, value: UInt64, width: Int) {
        if bytes.count < offset + width {
            bytes.append(contentsOf: repeatElement(0, count: offset + width - bytes.count))
        }
        for index in 0..<width {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> UInt64((width - 1 - index) * 8))
        }
    }

    /// Copies `raw` into `bytes` at `offset`, growing the array if needed.
    static func copy(_ raw: [UInt8], into bytes: inout [UInt8], at offset: Int) {
        if bytes.count < offset + raw.count {
            bytes.append(contentsOf: repeatElement(0, count: offset + raw.count - bytes.count))
        }
        bytes.replaceSubrange(offset..<(offset + raw.count), with: raw)
    }
}

/// Integer helpers that never trap on large values.
enum Arithmetic {
    /// `ceil(numerator / denominator)` without overflow; `denominator` must be non-zero.
    static func divideRoundingUp(_ numerator: UInt64, _ denominator: UInt64) -> UInt64 {
        numerator / denominator + (numerator % denominator == 0 ? 0 : 1)
    }

    /// `ceil(numerator / denominator)` for non-negative `Int`s.
    static func divideRoundingUp(_ numerator: Int, _ denominator: Int) -> Int {
        numerator / denominator + (numerator % denominator == 0 ? 0 : 1)
    }
}
