/// One 48-byte entry of the feature name table extension (magic 0x6803f857).
public struct FeatureNameEntry: Sendable, Hashable {
    /// Byte 0: 0 incompatible, 1 compatible, 2 autoclear (other values kept as is).
    public var type: UInt8
    /// Byte 1: bit number 0-63.
    public var bit: UInt8
    /// Bytes 2-47: the name, up to the first NUL.
    public var name: ByteString

    /// Parses one entry from 48 bytes.
    init(parsing r: inout ByteReader) throws(QCOW2Error) {
        type = try r.u8("type")
        bit = try r.u8("bit")
        let raw = try r.bytes(46, "name")
        name = ByteString(Array(raw.prefix { $0 != 0 }))
    }

    /// The group this entry names a bit of, `nil` for an unknown type.
    public var group: FeatureGroup? { FeatureGroup(rawValue: type) }
}
