/// An image held in memory: for tests, the fuzzer and crafted images.
public struct MemoryImageSource: ImageSource {
    /// The image bytes.
    public let bytes: [UInt8]

    /// Creates a source over `bytes`.
    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The number of bytes held.
    public var size: UInt64 { UInt64(bytes.count) }

    /// Copies `count` bytes from `offset`.
    public func read(at offset: UInt64, count: Int) throws(QCOW2Error) -> [UInt8] {
        guard count >= 0, offset <= size, UInt64(count) <= size - offset else {
            throw QCOW2Error(
                .truncated, structure: "file", value: "\(count) bytes", offset: offset,
                message: "read past the end of the image (\(bytes.count) bytes)")
        }
        let start = Int(offset)
        return Array(bytes[start..<(start + count)])
    }
}
