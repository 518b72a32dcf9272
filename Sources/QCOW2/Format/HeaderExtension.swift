/// One header extension (qcow2.txt "Header extensions"): magic, length, data and its decoded form.
public struct HeaderExtension: Sendable, Hashable {
    /// The known extension types, by magic.
    public enum Kind: UInt32, Sendable, Hashable, CaseIterable {
        /// 0xe2792aca: backing file format name.
        case backingFormat = 0xe279_2aca
        /// 0x6803f857: feature name table.
        case featureNameTable = 0x6803_f857
        /// 0x23852875: bitmaps.
        case bitmaps = 0x2385_2875
        /// 0x0537be77: full disk encryption header pointer.
        case cryptoHeader = 0x0537_be77
        /// 0x44415441: external data file name.
        case dataFile = 0x4441_5441

        /// The label QEMU's qcow2.py prints for this type.
        public var label: String {
            switch self {
            case .backingFormat: "Backing format"
            case .featureNameTable: "Feature table"
            case .bitmaps: "Bitmaps"
            case .cryptoHeader: "Crypto header"
            case .dataFile: "Data file"
            }
        }

        /// A stable machine name.
        public var id: String {
            switch self {
            case .backingFormat: "backing_format"
            case .featureNameTable: "feature_name_table"
            case .bitmaps: "bitmaps"
            case .cryptoHeader: "crypto_header"
            case .dataFile: "data_file"
            }
        }
    }

    /// The decoded payload.
    public enum Payload: Sendable, Hashable {
        /// Backing format or data file name.
        case string(ByteString)
        /// Feature name table entries, in file order.
        case featureNames([FeatureNameEntry])
        /// Bitmaps extension fields.
        case bitmaps(BitmapsExtension)
        /// Crypto header pointer: offset and length of the encryption header.
        case crypto(offset: UInt64, length: UInt64)
        /// Unknown magic, or a known one too short to decode: the raw bytes only.
        case raw
    }

    /// The magic (u32 at ``offset``).
    public var magic: UInt32
    /// The declared data length (u32 at ``offset`` + 4).
    public var length: UInt32
    /// File offset of the magic.
    public var offset: UInt64
    /// The data bytes actually read: `length` bytes, fewer if the extension ran past its area.
    public var data: [UInt8]
    /// The decoded form.
    public var payload: Payload

    /// The known type, `nil` for an unknown magic.
    public var kind: Kind? { Kind(rawValue: magic) }

    /// qcow2.py's label: the type's label, or `<unknown>`.
    public var label: String { kind?.label ?? "<unknown>" }

    /// File offset of the data.
    public var dataOffset: UInt64 { offset &+ 8 }

    /// Whether fewer bytes than `length` could be read.
    public var isTruncated: Bool { UInt64(data.count) < UInt64(length) }

    /// Decodes `data` according to the magic; short known payloads stay `.raw`.
    static func decode(magic: UInt32, data: [UInt8], at base: UInt64) -> Payload {
        var r = ByteReader(data, base: base, structure: "header_extension")
        switch Kind(rawValue: magic) {
        case .backingFormat?, .dataFile?:
            return .string(ByteString(data))
        case .featureNameTable?:
            var entries: [FeatureNameEntry] = []
            while r.remaining >= 48, let e = try? FeatureNameEntry(parsing: &r) { entries.append(e) }
            return .featureNames(entries)
        case .bitmaps?:
            guard let b = try? BitmapsExtension(parsing: &r) else { return .raw }
            return .bitmaps(b)
        case .cryptoHeader?:
            guard let o = try? r.u64("offset"), let l = try? r.u64("length") else { return .raw }
            return .crypto(offset: o, length: l)
        case nil:
            return .raw
        }
    }
}
