extension BitmapsExtension {
    /// Bytes of the extension's four fields.
    public static let encodedLength = 24

    /// Decodes the four fields from bytes read at file offset `offset`, whatever the extension's length says.
    ///
    /// - Throws: ``QCOW2Error`` `truncated` when `bytes` holds fewer than 24 bytes.
    public init(decoding bytes: [UInt8], at offset: UInt64) throws(QCOW2Error) {
        var r = ByteReader(bytes, base: offset, structure: "bitmaps_extension")
        try self.init(parsing: &r)
    }
}
