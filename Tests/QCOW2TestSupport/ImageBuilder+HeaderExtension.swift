extension ImageBuilder {
    /// One header extension, written after the header in the order of ``ImageBuilder/extensions``.
    ///
    /// Each case is framed as `magic:u32, length:u32, data` and zero-padded to a multiple of 8
    /// (spec §1.5), except ``framed(magic:length:data:)`` which writes exactly what it is given.
    package enum HeaderExtension: Sendable, Equatable {
        /// Backing file format name (magic `0xe2792aca`), e.g. `"qcow2"`.
        case backingFormat(String)
        /// Feature name table (magic `0x6803f857`), 48 bytes per entry.
        case featureNameTable([FeatureName])
        /// The bitmaps extension (magic `0x23852875`), filled from ``ImageBuilder/bitmapsExtension``.
        ///
        /// Put this case in ``ImageBuilder/extensions`` to choose where it is written; otherwise it is
        /// appended after the other extensions whenever it is written at all.
        case bitmaps
        /// Full disk encryption header pointer (magic `0x0537be77`): offset and length of the LUKS header.
        case cryptoHeader(offset: UInt64, length: UInt64)
        /// External data file name (magic `0x44415441`).
        case dataFile(String)
        /// Any extension: `length` is `data.count`, then zero padding to 8.
        case raw(magic: UInt32, data: [UInt8])
        /// A fully manual extension: `magic`, the given `length` field, then `data` verbatim with no padding.
        ///
        /// Use it for a length that disagrees with the data or runs past the extension area.
        case framed(magic: UInt32, length: UInt32, data: [UInt8])

        /// Magic of the end-of-extensions marker.
        package static let endMagic: UInt32 = 0x0000_0000
        /// Magic of the backing file format extension.
        package static let backingFormatMagic: UInt32 = 0xe279_2aca
        /// Magic of the feature name table extension.
        package static let featureNameTableMagic: UInt32 = 0x6803_f857
        /// Magic of the bitmaps extension.
        package static let bitmapsMagic: UInt32 = 0x2385_2875
        /// Magic of the full disk encryption header pointer extension.
        package static let cryptoHeaderMagic: UInt32 = 0x0537_be77
        /// Magic of the external data file name extension.
        package static let dataFileMagic: UInt32 = 0x4441_5441

        /// The feature name table QEMU 7.2 writes for v3 images with clusters larger than 4 KiB (8 entries, 384 bytes).
        package static var qemuFeatureNameTable: HeaderExtension {
            .featureNameTable([
                FeatureName(type: 0, bit: 0, name: "dirty bit"),
                FeatureName(type: 0, bit: 1, name: "corrupt bit"),
                FeatureName(type: 0, bit: 2, name: "external data file"),
                FeatureName(type: 0, bit: 3, name: "compression type"),
                FeatureName(type: 0, bit: 4, name: "extended L2 entries"),
                FeatureName(type: 1, bit: 0, name: "lazy refcounts"),
                FeatureName(type: 2, bit: 0, name: "bitmaps"),
                FeatureName(type: 2, bit: 1, name: "raw external data"),
            ])
        }

        /// Serializes the extension (framing and padding included) given the bitmaps extension payload.
        func serialized(bitmapsPayload: [UInt8]) -> [UInt8] {
            var writer = ByteWriter()
            switch self {
            case .backingFormat(let name):
                Self.frame(&writer, magic: Self.backingFormatMagic, data: Array(name.utf8))
            case .featureNameTable(let entries):
                var data = ByteWriter()
                for entry in entries {
                    data.append8(entry.type)
                    data.append8(entry.bit)
                    let name = Array(entry.name.prefix(46))
                    data.append(name)
                    data.appendZeros(46 - name.count)
                }
                Self.frame(&writer, magic: Self.featureNameTableMagic, data: data.bytes)
            case .bitmaps:
                Self.frame(&writer, magic: Self.bitmapsMagic, data: bitmapsPayload)
            case .cryptoHeader(let offset, let length):
                var data = ByteWriter()
                data.append64(offset)
                data.append64(length)
                Self.frame(&writer, magic: Self.cryptoHeaderMagic, data: data.bytes)
            case .dataFile(let name):
                Self.frame(&writer, magic: Self.dataFileMagic, data: Array(name.utf8))
            case .raw(let magic, let data):
                Self.frame(&writer, magic: magic, data: data)
            case .framed(let magic, let length, let data):
                writer.append32(magic)
                writer.append32(length)
                writer.append(data)
            }
            return writer.bytes
        }

        /// Writes `magic`, `data.count`, `data` and zero padding to 8.
        private static func frame(_ writer: inout ByteWriter, magic: UInt32, data: [UInt8]) {
            writer.append32(magic)
            writer.append32(UInt32(truncatingIfNeeded: data.count))
            writer.append(data)
            writer.pad(to: 8)
        }
    }

    /// One 48-byte entry of the feature name table extension.
    package struct FeatureName: Sendable, Equatable {
        /// Feature group: 0 incompatible, 1 compatible, 2 autoclear.
        package var type: UInt8
        /// Bit number 0-63.
        package var bit: UInt8
        /// Name bytes; truncated to 46 bytes and zero-padded when written.
        package var name: [UInt8]

        /// Creates an entry from a UTF-8 name.
        package init(type: UInt8, bit: UInt8, name: String) {
            self.type = type
            self.bit = bit
            self.name = Array(name.utf8)
        }
    }

    /// Every field of the bitmaps extension (spec §2.1); `nil` fields are computed at build time.
    package struct BitmapsExtension: Sendable, Equatable {
        /// Whether the extension is written; `nil` writes it when there is a bitmap or a `.bitmaps` placeholder.
        package var present: Bool?
        /// `nb_bitmaps`; `nil` = `bitmaps.count`.
        package var nbBitmaps: UInt32?
        /// `reserved32`; must be 0 in a valid image (rule E4).
        package var reserved32: UInt32 = 0
        /// `bitmap_directory_size`; `nil` = the byte length of the serialized directory.
        package var directorySize: UInt64?
        /// `bitmap_directory_offset`; `nil` = where the builder placed the directory.
        package var directoryOffset: UInt64?
        /// The extension's `length` field; `nil` = 24. Shorter lengths truncate the payload, longer ones zero-extend it.
        package var length: UInt32?

        /// Creates an extension description with every field computed automatically.
        package init() {}
    }
}
