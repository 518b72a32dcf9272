extension HeaderExtension {
    /// Bytes before an extension's data: its u32 magic and u32 length.
    public static let framingLength = 8

    /// Decodes the magic and length from the framing bytes read at file offset `offset`.
    ///
    /// - Throws: ``QCOW2Error`` `truncated` when `bytes` holds fewer than 8 bytes.
    public static func decodeFraming(_ bytes: [UInt8], at offset: UInt64) throws(QCOW2Error) -> (magic: UInt32, length: UInt32) {
        var r = ByteReader(bytes, base: offset, structure: "header_extension")
        let magic = try r.u32("magic")
        let length = try r.u32("length")
        return (magic, length)
    }

    /// An extension from its framing at file offset `offset` and the data bytes read after it.
    ///
    /// The payload is decoded as the parser decodes it; `data` may be shorter than `length` (the caller
    /// read what exists) and is kept as given.
    public init(magic: UInt32, length: UInt32, offset: UInt64, data: [UInt8]) {
        let payload = HeaderExtension.decode(magic: magic, data: data, at: offset &+ 8)
        self.init(magic: magic, length: length, offset: offset, data: data, payload: payload)
    }
}
