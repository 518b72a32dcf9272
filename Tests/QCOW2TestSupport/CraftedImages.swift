/// One byte-crafted image together with the rule it breaks.
package struct CraftedImage: Sendable, Equatable, CustomStringConvertible {
    /// Unique case name, e.g. `"E10-entry-overflow"`; also a safe file name stem.
    package var name: String
    /// The rule code the image breaks (`"H1"` ... `"T5"`, see `Rule.all`) or a tag such as `"HDR-MAGIC"` or `"NAME"`.
    package var code: String
    /// The image bytes.
    package var bytes: [UInt8]
    /// What was crafted and what QEMU 7.2 says about it.
    package var note: String

    /// The case name, so that `@Test(arguments:)` lists read well.
    package var description: String { name }
}

/// A catalogue of byte-crafted images, at least one per rule of the registry (`Rule.all`).
///
/// Every case starts from ``baseline()`` (v3, 512-byte clusters, 1 MiB, one enabled bitmap `b0`
/// with 64 KiB granularity and a single serialized data cluster) and changes one thing, so a parser
/// should report the case's rule and, ideally, nothing else. Where QEMU reports something else first
/// the note says so. The notes quote qemu-img 7.2 where it was tried.
package enum CraftedImages {
    /// The unmodified baseline image; `qemu-img check` is clean and `info` lists bitmap `b0`.
    package static var clean: CraftedImage {
        make("clean", "OK", baseline(), "baseline: v3, 512 B clusters, 1 MiB, bitmap b0 (g 64 KiB, auto, bits 0-15 set)")
    }

    /// Every case of the catalogue, in rule order, with ``clean`` first.
    package static var all: [CraftedImage] {
        [
            clean,
            e1, e2, e3, e4, e5, e6, e7, e8, e9, e10SizeMismatch, e10EntryOverflow, e11More, e11Less, e12,
            d1, d2, d3, d4, d5, d6, d7, d8, d9, d10TableTooSmall, d11TableTooLarge, d12, d13, d14,
            d15InUseWrongSize, d16,
            t1, t2, t3, t4, t5, t6,
            nameNotUTF8, nameWithSlash, nameWithMarkup,
            truncatedHeaderOnly, wrongMagic, version4, clusterBits30, headerLength100, unknownIncompatibleBit,
            hugeBitmapCountPastEOF,
            h1, h2, h3, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22,
            x1, x2, x3, x4, x5, x6, x7, x8, x9,
            s1, s2, s3, s4, s5, s6, s7, s8,
        ]
    }

    /// Looks a case up by ``CraftedImage/name``.
    package static func named(_ name: String) -> CraftedImage? {
        all.first { $0.name == name }
    }

    /// The builder every case starts from.
    ///
    /// - Parameter bitmapCount: Number of bitmaps `b0`, `b1`, ... (each g 64 KiB, auto, table of one entry).
    /// - Returns: A builder for a v3 image with 512-byte clusters and 1 MiB virtual size whose first
    ///   bitmap has one serialized data cluster with guest 0-1 MiB marked dirty.
    package static func baseline(bitmapCount: Int = 1) -> ImageBuilder {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 1 << 20)
        for index in 0..<bitmapCount {
            builder.addBitmap(name: "b\(index)", granularityBits: 16)
        }
        if bitmapCount > 0 {
            builder.markDirty(bitmap: 0, guestOffset: 0, length: 1 << 20)
        }
        return builder
    }

    private static func make(_ name: String, _ code: String, _ builder: ImageBuilder, _ note: String) -> CraftedImage {
        CraftedImage(name: name, code: code, bytes: builder.build(), note: note)
    }

    // MARK: Extension level

    /// E1: bitmaps extension length 16 instead of 24.
    package static var e1: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.length = 16
        return make("E1-length-16", "E1", builder,
            "bitmaps extension length 16 (payload truncated to 16 bytes); QEMU: bitmaps_ext: Invalid extension length")
    }

    /// E2: bitmaps extension present but autoclear bit 0 clear.
    package static var e2: CraftedImage {
        var builder = baseline()
        builder.autoclearFeatures = 0
        return make("E2-autoclear-clear", "E2", builder,
            "extension present, autoclear bit 0 clear; QEMU warns (a program lacking bitmap support modified this file ...), info shows no bitmaps, check exits 3 (leaks)")
    }

    /// E3: autoclear bit 0 set without a bitmaps extension.
    package static var e3: CraftedImage {
        var builder = baseline(bitmapCount: 0)
        builder.autoclearFeatures = 1
        return make("E3-autoclear-without-extension", "E3", builder,
            "autoclear bit 0 set, no bitmaps extension; QEMU opens it cleanly (the first write marks it corrupt)")
    }

    /// E4: `reserved32` is not zero.
    package static var e4: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.reserved32 = 1
        return make("E4-reserved32", "E4", builder, "reserved32 = 1; QEMU: bitmaps_ext: Reserved field is not zero")
    }

    /// E5: `nb_bitmaps` is 0 while the directory holds one entry.
    package static var e5: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.nbBitmaps = 0
        return make("E5-zero-bitmaps", "E5", builder,
            "nb_bitmaps 0 (directory still holds b0); QEMU: found bitmaps extension with zero bitmaps")
    }

    /// E6: `nb_bitmaps` is 70000, above QEMU's 65535.
    package static var e6: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.nbBitmaps = 70000
        return make("E6-70000-bitmaps", "E6", builder,
            "nb_bitmaps 70000 (one real entry); QEMU: Image has 70000 bitmaps, exceeding the QEMU supported maximum of 65535")
    }

    /// E7: the directory offset is not cluster aligned.
    package static var e7: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.directoryOffset = builder.layout().bitmapDirectoryOffset + 8
        return make("E7-unaligned-directory", "E7", builder,
            "bitmap_directory_offset = real offset + 8; QEMU: bitmaps_ext: invalid bitmap directory offset")
    }

    /// E8: the directory size exceeds 67,107,840 bytes.
    package static var e8: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.directorySize = 67_107_848
        return make("E8-directory-too-big", "E8", builder,
            "bitmap_directory_size 67107848 (> 1024 * 65535); QEMU: bitmap directory size (67107848) exceeds the maximum supported size (67107840)")
    }

    /// E9: the directory size is 0.
    package static var e9: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.directorySize = 0
        return make("E9-directory-size-zero", "E9", builder,
            "bitmap_directory_size 0; QEMU: Requested bitmap directory size is zero")
    }

    /// E10: the directory size is 8 bytes larger than the entries.
    package static var e10SizeMismatch: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.directorySize = UInt64(builder.layout().bitmapDirectorySize + 8)
        return make("E10-size-mismatch", "E10", builder,
            "bitmap_directory_size = entries + 8 (the last entry does not end at the directory end); QEMU: Broken bitmap directory")
    }

    /// E10: the directory size is 8 bytes short, so the last entry overflows the directory.
    package static var e10EntryOverflow: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.directorySize = UInt64(builder.layout().bitmapDirectorySize - 8)
        return make("E10-entry-overflow", "E10", builder,
            "bitmap_directory_size = entries - 8 (entry b0 runs past the directory end); QEMU: Broken bitmap directory")
    }

    /// E11: the directory holds more entries than `nb_bitmaps`.
    package static var e11More: CraftedImage {
        var builder = baseline(bitmapCount: 2)
        builder.bitmapsExtension.nbBitmaps = 1
        return make("E11-more", "E11", builder,
            "nb_bitmaps 1, directory holds b0 and b1; QEMU: More bitmaps found than specified in header extension")
    }

    /// E11: the directory holds fewer entries than `nb_bitmaps`.
    package static var e11Less: CraftedImage {
        var builder = baseline(bitmapCount: 2)
        builder.bitmapsExtension.nbBitmaps = 3
        return make("E11-less", "E11", builder,
            "nb_bitmaps 3, directory holds b0 and b1; QEMU: Less bitmaps found than specified in header extension")
    }

    /// E12: a version 2 image carrying a bitmaps extension.
    package static var e12: CraftedImage {
        var builder = baseline()
        builder.version = 2
        return make("E12-v2-with-bitmaps", "E12", builder,
            "v2 header (72 bytes, no autoclear field) followed by a bitmaps extension; QEMU warns (This qcow2 v2 image contains bitmaps ...), ignores them, check exits 3 (leaks)")
    }

    // MARK: Directory entry level

    /// D1: non-zero `extra_data_size` with 8 bytes of extra data.
    package static var d1: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].extraData = [1, 2, 3, 4, 5, 6, 7, 8]
        return make("D1-extra-data", "D1", builder,
            "extra_data_size 8 (bytes 01..08), entry size stays consistent; QEMU: Bitmap extra data is not supported")
    }

    /// D2: `bitmap_table_size` is 0.
    package static var d2: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].tableSize = 0
        return make("D2-table-size-zero", "D2", builder,
            "bitmap_table_size 0; QEMU: Bitmap 'b0' doesn't satisfy the constraints")
    }

    /// D3: `bitmap_table_offset` is not cluster aligned.
    package static var d3: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].tableOffset = builder.layout().bitmapTableOffsets[0] + 8
        return make("D3-unaligned-table", "D3", builder,
            "bitmap_table_offset = real table + 8; QEMU: Bitmap 'b0' doesn't satisfy the constraints")
    }

    /// D4: `bitmap_table_size` above 0x8000000 entries.
    package static var d4: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].tableSize = 0x800_0001
        return make("D4-table-size-limit", "D4", builder,
            "bitmap_table_size 0x8000001 (> BME_MAX_TABLE_SIZE; also breaks D9 and D11); QEMU: doesn't satisfy the constraints")
    }

    /// D5: `granularity_bits` below 9.
    package static var d5: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].granularityBits = 8
        builder.bitmaps[0].tableSize = 1
        return make("D5-granularity-8", "D5", builder,
            "granularity_bits 8 (table size kept at the correct value 1); QEMU: doesn't satisfy the constraints")
    }

    /// D6: flag bit 2 (`extra_data_compatible`) set.
    package static var d6: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].flags = ImageBuilder.Bitmap.auto | ImageBuilder.Bitmap.extraDataCompatible
        return make("D6-flag-bit-2", "D6", builder,
            "flags 0x6 (auto + extra_data_compatible, rejected by QEMU although spec-defined); QEMU: doesn't satisfy the constraints")
    }

    /// D7: a 1024-byte name.
    package static var d7: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].name = [UInt8](repeating: UInt8(ascii: "n"), count: 1024)
        return make("D7-name-1024", "D7", builder,
            "name_size 1024 ('n' x 1024, > BME_MAX_NAME_SIZE 1023); QEMU: doesn't satisfy the constraints")
    }

    /// D8: bitmap `type` 0.
    package static var d8: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].type = 0
        return make("D8-type-0", "D8", builder, "type 0 (reserved); QEMU: doesn't satisfy the constraints")
    }

    /// D9: table size times cluster size above 512 MiB.
    package static var d9: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].tableSize = 0x10_0001
        return make("D9-phys-size", "D9", builder,
            "bitmap_table_size 0x100001 with 512 B clusters (> 512 MiB of bitmap data, below the D4 limit; D11 also fails); QEMU: doesn't satisfy the constraints")
    }

    /// D10: table too small for the disk (not in use).
    package static var d10TableTooSmall: CraftedImage {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 4 << 20)
        builder.addBitmap(name: "b0", granularityBits: 9)
        builder.bitmaps[0].tableSize = 1
        return make("D10-table-too-small", "D10", builder,
            "4 MiB disk, g 512, 512 B clusters: 2 entries required, bitmap_table_size 1 (2 allocated); QEMU: doesn't satisfy the constraints")
    }

    /// D11: table larger than required (passes D10, fails the exact-size load check).
    package static var d11TableTooLarge: CraftedImage {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 4 << 20)
        builder.addBitmap(name: "b0", granularityBits: 9)
        builder.bitmaps[0].tableSize = 3
        builder.bitmaps[0].allocatedTableEntries = 3
        return make("D11-table-too-large", "D11", builder,
            "4 MiB disk, g 512, 512 B clusters: 2 entries required, bitmap_table_size 3 (3 allocated); QEMU: Could not read bitmap 'b0' from image: Invalid argument")
    }

    /// D12: two bitmaps with the same name.
    package static var d12: CraftedImage {
        var builder = baseline(bitmapCount: 2)
        builder.bitmaps[1].name = Array("b0".utf8)
        return make("D12-duplicate-names", "D12", builder,
            "two entries named b0; QEMU: Bitmap already exists: b0")
    }

    /// D13: an empty name (`name_size` 0, entry of 24 bytes).
    package static var d13: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].name = []
        return make("D13-empty-name", "D13", builder,
            "name_size 0 with no name bytes (entry is exactly 24 bytes, directory consistent); QEMU 7.2 accepts it and lists a bitmap named ''")
    }

    /// D14: non-zero padding after the name.
    package static var d14: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].padding = [0, 0, 0, 0, 0, 0x5a]
        return make("D14-padding", "D14", builder,
            "name 'b0' is followed by padding 00 00 00 00 00 5a (spec: must be zero; QEMU does not check)")
    }

    /// D15: an in-use bitmap whose table size is wrong; only "in use" must be reported.
    package static var d15InUseWrongSize: CraftedImage {
        var builder = ImageBuilder(version: 3, clusterBits: 9, size: 4 << 20)
        builder.addBitmap(name: "b0", granularityBits: 9, flags: ImageBuilder.Bitmap.inUse | ImageBuilder.Bitmap.auto)
        builder.bitmaps[0].tableSize = 1
        return make("D15-in-use-wrong-size", "D15", builder,
            "flags 0x3 (in_use), 2 entries required but bitmap_table_size 1: stale, must NOT produce D10/D11; QEMU opens it")
    }

    // MARK: Table entry level

    /// T1: a reserved bit (56) set in a serialized table entry.
    package static var t1: CraftedImage {
        var builder = baseline()
        let dataOffset = builder.layout().bitmapDataOffsets[0][0] ?? 0
        builder.bitmaps[0].entryOverrides[0] = dataOffset | (1 << 56)
        return make("T1-reserved-bit", "T1", builder,
            "table entry 0 = data offset | bit 56; QEMU: Could not read bitmap_table table from image for bitmap 'b0': Invalid argument")
    }

    /// T2: bit 0 (all-ones) set on an entry that has an offset.
    package static var t2: CraftedImage {
        var builder = baseline()
        let dataOffset = builder.layout().bitmapDataOffsets[0][0] ?? 0
        builder.bitmaps[0].entryOverrides[0] = dataOffset | 1
        return make("T2-offset-and-bit-0", "T2", builder,
            "table entry 0 = data offset | 1 ('invalid' in qcow2.py); QEMU: Could not read bitmap_table table ...: Invalid argument")
    }

    /// T3: an unaligned data cluster offset (4 KiB clusters, offset + 512).
    package static var t3: CraftedImage {
        var builder = baseline()
        builder.clusterBits = 12
        let dataOffset = builder.layout().bitmapDataOffsets[0][0] ?? 0
        builder.bitmaps[0].entryOverrides[0] = dataOffset + 512
        return make("T3-unaligned-data", "T3", builder,
            "4 KiB clusters, table entry 0 = data offset + 512 (bits 1-8 clear, so only alignment fails); QEMU: Could not read bitmap_table table ...: Invalid argument")
    }

    /// T6: a bitmap table past the end of the file (QEMU reads it as zeros: all clean).
    package static var t6: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].tableOffset = 1 << 30
        return make("T6-table-past-eof", "T6", builder,
            "bitmap_table_offset 1 GiB in a small file; QEMU reads the table as zeros and exports the bitmap all clean")
    }

    /// T4: bits set beyond the end of the disk in the last data cluster.
    package static var t4: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].dataClusters[0]?[100] = 0x80
        return make("T4-tail-bits", "T4", builder,
            "1 MiB / 64 KiB = 16 bits (bytes 0-1); byte 100 of the only data cluster is 0x80 (spec: tail must be zero; QEMU does not check)")
    }

    /// T5: the bitmap table cluster has refcount 0.
    package static var t5: CraftedImage {
        var builder = baseline()
        builder.refcountOverrides[builder.layout().bitmapTableOffsets[0]] = 0
        return make("T5-table-refcount-0", "T5", builder,
            "refcount of the bitmap table cluster is 0; qemu-img check: ERROR ... refcount=0 reference=1 (exit 2)")
    }

    // MARK: Names and headers

    /// A bitmap name that is not UTF-8 (bytes ff fe).
    package static var nameNotUTF8: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].name = [0xff, 0xfe]
        return make("name-not-utf8", "NAME", builder, "bitmap name bytes ff fe (invalid UTF-8); QEMU accepts it")
    }

    /// A bitmap name containing a slash.
    package static var nameWithSlash: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].name = Array("a/b".utf8)
        return make("name-with-slash", "NAME", builder, "bitmap name 'a/b' (must be percent-encoded in URLs)")
    }

    /// A bitmap name containing HTML markup.
    package static var nameWithMarkup: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].name = Array("<img src=x onerror=alert(1)>".utf8)
        return make("name-with-markup", "NAME", builder,
            "bitmap name '<img src=x onerror=alert(1)>' (must be escaped in any HTML/text output)")
    }

    /// A file that ends right after the 112-byte v3 header.
    package static var truncatedHeaderOnly: CraftedImage {
        let bytes = Array(baseline().build().prefix(112))
        return CraftedImage(name: "truncated-header-only", code: "HDR-TRUNCATED", bytes: bytes,
            note: "only the 112-byte header of the baseline: extensions, tables and clusters are past EOF; qemu-img info still opens it, check exits 2")
    }

    /// The first four bytes are not `QFI\xfb`.
    package static var wrongMagic: CraftedImage {
        var builder = baseline()
        builder.magic = 0x5146_49fa
        return make("wrong-magic", "HDR-MAGIC", builder, "magic 0x514649fa; qemu-img probes the file as raw (check: This image format does not support checks, exit 63)")
    }

    /// `version` 4.
    package static var version4: CraftedImage {
        var builder = baseline()
        builder.version = 4
        return make("version-4", "HDR-VERSION", builder, "version 4 with a v3 layout; QEMU: Unsupported qcow2 version 4")
    }

    /// `cluster_bits` 30 in the header (layout still 512-byte clusters).
    package static var clusterBits30: CraftedImage {
        var builder = baseline()
        builder.clusterBitsField = 30
        return make("cluster-bits-30", "H1", builder,
            "cluster_bits 30 written, structures laid out for 512 B; QEMU: Unsupported cluster size: 2^30")
    }

    /// A v3 header claiming `header_length` 100.
    package static var headerLength100: CraftedImage {
        var builder = baseline()
        builder.headerLength = 100
        return make("header-length-100", "HDR-LENGTH", builder,
            "v3 header_length 100 (< 104; extensions start at 104); QEMU: qcow2 header too short")
    }

    /// Incompatible feature bit 5 (unknown) set.
    package static var unknownIncompatibleBit: CraftedImage {
        var builder = baseline()
        builder.incompatibleFeatures = 1 << 5
        return make("unknown-incompatible-bit", "H4", builder,
            "incompatible_features 0x20; QEMU: Unsupported qcow2 feature(s): Unknown incompatible feature: 20")
    }

    /// 65535 bitmaps announced, directory of 2 MiB placed at 1 TiB (far past EOF).
    package static var hugeBitmapCountPastEOF: CraftedImage {
        var builder = baseline()
        builder.bitmapsExtension.nbBitmaps = 65535
        builder.bitmapsExtension.directorySize = 65535 * 32
        builder.bitmapsExtension.directoryOffset = 1 << 40
        return make("huge-bitmap-count-past-eof", "DIR-EOF", builder,
            "nb_bitmaps 65535, directory size 2097120 at offset 1 TiB, file is a few KiB: a reader must not allocate or loop 65535 times before noticing EOF; QEMU reads zeros there: Bitmap '' doesn't satisfy the constraints")
    }

    // MARK: Header rules (H)

    /// H1: `cluster_bits` 22, one above QEMU's maximum (layout still 512-byte clusters).
    package static var h1: CraftedImage {
        var builder = baseline()
        builder.clusterBitsField = 22
        return make("H1-cluster-bits-22", "H1", builder, "cluster_bits 22 (4 MiB clusters); QEMU: Unsupported cluster size: 2^22")
    }

    /// H2: a v3 `header_length` of 108, not a multiple of 8.
    package static var h2: CraftedImage {
        var builder = baseline()
        builder.headerLength = 108
        return make("H2-header-length-108", "H2", builder,
            "header_length 108 (extensions start at 108); spec: a multiple of 8; QEMU does not check")
    }

    /// H3: `header_length` 520, larger than the 512-byte cluster.
    package static var h3: CraftedImage {
        var builder = baseline(bitmapCount: 0)
        builder.headerLength = 520
        return make("H3-header-exceeds-cluster", "H3", builder,
            "header_length 520 with 512 B clusters; QEMU: qcow2 header exceeds cluster size")
    }

    /// H5: the dirty bit (incompatible bit 0).
    package static var h5: CraftedImage {
        var builder = baseline()
        builder.incompatibleFeatures = 0x1
        return make("H5-dirty-bit", "H5", builder, "incompatible_features 0x1 (dirty); QEMU repairs refcounts on a writable open")
    }

    /// H6: the corrupt bit (incompatible bit 1).
    package static var h6: CraftedImage {
        var builder = baseline()
        builder.incompatibleFeatures = 0x2
        return make("H6-corrupt-bit", "H6", builder,
            "incompatible_features 0x2 (corrupt); QEMU: qcow2: Image is corrupt; cannot be opened read/write")
    }

    /// H7: compression type 2 (unknown), with incompatible bit 3.
    package static var h7: CraftedImage {
        var builder = baseline()
        builder.compressionType = 2
        return make("H7-compression-type-2", "H7", builder, "compression_type 2, bit 3 set; QEMU: qcow2: unknown compression type: 2")
    }

    /// H8: `crypt_method` 3.
    package static var h8: CraftedImage {
        var builder = baseline()
        builder.cryptMethod = 3
        return make("H8-crypt-method-3", "H8", builder, "crypt_method 3; QEMU: Unsupported encryption method: 3")
    }

    /// H9: a backing file name claimed 2000 bytes long.
    package static var h9: CraftedImage {
        var builder = baseline()
        builder.backingFile = Array("base.qcow2".utf8)
        builder.backingFileSize = 2000
        builder.extensions = [.backingFormat("qcow2")]
        return make("H9-backing-name-2000", "H9", builder,
            "backing file name 'base.qcow2' with backing_file_size 2000 (> 1023); QEMU: Backing file name too long")
    }

    /// H10: the active L1 table offset 8 bytes past a cluster boundary.
    package static var h10: CraftedImage {
        var builder = baseline()
        builder.l1TableOffset = builder.layout().l1TableOffset + 8
        return make("H10-unaligned-l1", "H10", builder, "l1_table_offset = real offset + 8; QEMU: Active L1 table offset invalid")
    }

    /// H11: `refcount_table_clusters` 0.
    package static var h11: CraftedImage {
        var builder = baseline()
        builder.refcountTableClusters = 0
        return make("H11-no-refcount-table", "H11", builder,
            "refcount_table_clusters 0 (so every refcount reads as 0: T5 too); QEMU: Image does not contain a reference count table")
    }

    /// H12: `refcount_order` 7 (128-bit refcounts).
    package static var h12: CraftedImage {
        var builder = baseline()
        builder.refcountOrder = 7
        return make("H12-refcount-order-7", "H12", builder, "refcount_order 7 (blocks written 64-bit); QEMU: Unsupported refcount order")
    }

    /// H13: `l1_size` 0 for a 1 MiB disk.
    package static var h13: CraftedImage {
        var builder = baseline()
        builder.l1Size = 0
        return make("H13-l1-too-small", "H13", builder, "l1_size 0 for a 1 MiB disk (1 entry needed); QEMU: L1 table is too small")
    }

    /// H14: extended L2 entries with 512-byte clusters.
    package static var h14: CraftedImage {
        var builder = baseline()
        builder.extendedL2 = true
        return make("H14-extended-l2-small-clusters", "H14", builder,
            "incompatible bit 4 (extended L2) with 512 B clusters; QEMU: Unsupported subcluster size")
    }

    /// H15: autoclear bit 1 (raw external data) without an external data file.
    package static var h15: CraftedImage {
        var builder = baseline()
        builder.autoclearFeatures = 0x3
        return make("H15-raw-external-without-file", "H15", builder,
            "autoclear_features 0x3 (bitmaps + raw external data), no external data file; QEMU: data-file-raw requires a data file")
    }

    /// H16: a non-zero byte in the header padding (offset 111).
    package static var h16: CraftedImage {
        var builder = baseline()
        builder.additionalHeaderFields = [0, 0, 0, 0, 0, 0, 0, 0x5a]
        return make("H16-header-padding", "H16", builder, "header bytes 104-111 = 00 00 00 00 00 00 00 5a; spec: padding must be zero")
    }

    /// H17: an unknown compatible feature bit (bit 5).
    package static var h17: CraftedImage {
        var builder = baseline()
        builder.compatibleFeatures = 1 << 5
        return make("H17-unknown-compatible-bit", "H17", builder, "compatible_features 0x20; readers may ignore it (info)")
    }

    /// H18: an internal snapshot in an image with an external data file.
    package static var h18: CraftedImage {
        var builder = baseline()
        builder.incompatibleFeatures = 0x4
        builder.addSnapshot(id: "1", name: "snap")
        return make("H18-snapshot-with-data-file", "H18", builder,
            "incompatible bit 2 (external data file) and one snapshot; QEMU refuses to create such snapshots")
    }

    /// H19: the active L1 table placed past the end of the file.
    package static var h19: CraftedImage {
        var builder = baseline()
        builder.l1TableOffset = 1 << 30
        return make("H19-l1-past-eof", "H19", builder, "l1_table_offset 1 GiB (aligned), file a few KiB")
    }

    // MARK: Header extension rules (X)

    /// X1: an unknown extension claiming 1000 bytes in a 512-byte cluster.
    package static var x1: CraftedImage {
        var builder = baseline()
        builder.extensions = [.bitmaps, .framed(magic: 0x0bad_0001, length: 1000, data: [])]
        return make("X1-extension-too-large", "X1", builder,
            "after the bitmaps extension, magic 0x0bad0001 with length 1000 (cluster is 512 B); QEMU: Header extension too large")
    }

    /// X2: two (empty) feature name tables.
    package static var x2: CraftedImage {
        var builder = baseline()
        builder.extensions = [.featureNameTable([]), .featureNameTable([])]
        return make("X2-extension-twice", "X2", builder, "two feature name table extensions of length 0; spec: each type at most once")
    }

    /// X3: a 16-byte backing format name.
    package static var x3: CraftedImage {
        var builder = baseline()
        builder.backingFile = Array("base.qcow2".utf8)
        builder.extensions = [.backingFormat("0123456789abcdef")]
        return make("X3-backing-format-16", "X3", builder,
            "backing format extension of 16 bytes; QEMU: ext_backing_format: len=16 too large (>=16)")
    }

    /// X4: LUKS encryption (`crypt_method` 2) without the crypto header extension.
    package static var x4: CraftedImage {
        var builder = baseline()
        builder.cryptMethod = 2
        return make("X4-luks-without-crypto-header", "X4", builder,
            "crypt_method 2, no 0x0537be77 extension; QEMU: Missing CRYPTO header for crypt method 2")
    }

    /// X5: a feature name table of 50 bytes.
    package static var x5: CraftedImage {
        var builder = baseline()
        var entry: [UInt8] = [0, 0] + Array("dirty bit".utf8)
        entry += [UInt8](repeating: 0, count: 50 - entry.count)
        builder.extensions = [.raw(magic: ImageBuilder.HeaderExtension.featureNameTableMagic, data: entry)]
        return make("X5-feature-table-50", "X5", builder, "feature name table length 50 (one entry and 2 stray bytes)")
    }

    /// X6: 4100 unknown empty extensions (64 KiB clusters, so they fit in cluster 0).
    package static var x6: CraftedImage {
        var builder = baseline()
        builder.clusterBits = 16
        builder.extensions = [.bitmaps] + Array(repeating: .raw(magic: 0x0bad_0002, data: []), count: 4100)
        return make("X6-4100-extensions", "X6", builder,
            "64 KiB clusters, the bitmaps extension then 4100 empty unknown extensions; qcowscope reads 4096")
    }

    /// X7: a backing format extension without a backing file.
    package static var x7: CraftedImage {
        var builder = baseline()
        builder.extensions = [.backingFormat("qcow2")]
        return make("X7-backing-format-without-file", "X7", builder, "backing format 'qcow2', backing_file_offset 0")
    }

    /// H20: backing_file_offset inside the header (no bitmaps, so nothing else depends on the extensions).
    package static var h20: CraftedImage {
        var builder = baseline(bitmapCount: 0)
        builder.backingFile = Array("base.qcow2".utf8)
        builder.backingFileOffset = 50
        builder.backingFileSize = 4
        return make("H20-backing-name-inside-header", "H20", builder,
            "backing_file_offset 50, size 4 (bytes of the header itself); QEMU reads no extensions")
    }

    /// H21: a backing file name with a NUL inside (QEMU uses `base`).
    package static var h21: CraftedImage {
        var builder = baseline()
        builder.backingFile = Array("base".utf8) + [0] + Array("junk".utf8)
        return make("H21-backing-name-with-nul", "H21", builder, "backing file name 'base\\0junk'; QEMU: backing file 'base'")
    }

    /// H22: a version 2 image cut inside its header, at 60 bytes (QEMU reads the rest as zeros).
    package static var h22: CraftedImage {
        let builder = ImageBuilder(version: 2, clusterBits: 16, size: 1 << 20)
        return CraftedImage(
            name: "H22-v2-header-cut", code: "H22", bytes: Array(builder.build().prefix(60)),
            note: "a version 2 image truncated to 60 bytes; qemu-img info opens it (the rest of the header reads as zeros)")
    }

    /// D16: a bitmap name with a NUL inside (QEMU shows `b`).
    package static var d16: CraftedImage {
        var builder = baseline()
        builder.bitmaps[0].name = [0x62, 0x00, 0x74, 0x1b]
        return make("D16-name-with-nul", "D16", builder, "bitmap name 'b\\0t\\x1b' (name_size 4); QEMU lists bitmap 'b'")
    }

    /// X8: the external data file bit without a data file name extension.
    package static var x8: CraftedImage {
        var builder = baseline()
        builder.incompatibleFeatures = 1 << 2
        return make("X8-data-file-bit-without-name", "X8", builder,
            "incompatible bit 2 (external data file), no 0x44415441 extension; QEMU: 'data-file' is required for this image")
    }

    /// X9: a LUKS image whose crypto header extension has length 0.
    package static var x9: CraftedImage {
        var builder = baseline()
        builder.cryptMethod = 2
        builder.extensions = [.cryptoHeader(offset: UInt64(builder.layoutClusterSize) * 64, length: 0)]
        return make("X9-luks-window-empty", "X9", builder,
            "crypt_method 2, crypto header extension of length 0; QEMU: Request for data outside of extension header")
    }

    // MARK: Snapshot table rules (S)

    /// S1: more snapshots than QEMU reads (QCOW_MAX_SNAPSHOTS, 65536).
    package static var s1: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.nbSnapshots = 70000
        return make("S1-too-many-snapshots", "S1", builder, "nb_snapshots 70000 with one real entry; QEMU: Too many snapshots")
    }

    /// S8: the snapshot table placed past the end of the file (QEMU reads it as zeros).
    package static var s8: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.snapshotsOffset = 1 << 30
        return make("S8-table-past-eof", "S8", builder,
            "one snapshot, snapshots_offset 1 GiB (aligned), file a few KiB; qemu-img snapshot -l lists one entry with empty ID and tag")
    }

    /// S2: a snapshot L1 table offset 8 bytes past a cluster boundary.
    package static var s2: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.snapshots[0].l1TableOffset = builder.layout().snapshotL1Offsets[0] + 8
        return make("S2-unaligned-snapshot-l1", "S2", builder, "snapshot l1_table_offset = real offset + 8; qemu-img check reports it")
    }

    /// S3: a v3 snapshot with 8 bytes of extra data.
    package static var s3: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.snapshots[0].extraData = [UInt8](repeating: 0, count: 8)
        return make("S3-short-extra-data", "S3", builder, "v3 snapshot with extra_data_size 8 (spec: at least 16)")
    }

    /// S4: a snapshot with 1032 bytes of extra data.
    package static var s4: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.snapshots[0].extraData = [UInt8](repeating: 0, count: 1032)
        return make("S4-extra-data-1032", "S4", builder,
            "snapshot extra_data_size 1032; QEMU: Too much extra metadata in snapshot table entry 0")
    }

    /// S5: two snapshots with ID "1".
    package static var s5: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "a")
        builder.addSnapshot(id: "1", name: "b")
        return make("S5-duplicate-id", "S5", builder, "two snapshots with id_str '1'; spec: IDs are unique")
    }

    /// S6: a snapshot L1 table of 4194305 entries (one more than 32 MiB).
    package static var s6: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.snapshots[0].l1Size = 4_194_305
        return make("S6-snapshot-l1-too-large", "S6", builder, "snapshot l1_size 4194305 (> 32 MiB of entries); qemu-img check reports it")
    }

    /// S7: a v3 snapshot whose ID and name are a single NUL (QEMU shows '').
    package static var s7: CraftedImage {
        var builder = baseline()
        builder.addSnapshot(id: "1", name: "snap")
        builder.snapshots[0].id = [0]
        builder.snapshots[0].name = [0]
        return make("S7-snapshot-nul-names", "S7", builder, "snapshot id_str and name each one NUL byte; QEMU lists ID '' TAG ''")
    }
}
