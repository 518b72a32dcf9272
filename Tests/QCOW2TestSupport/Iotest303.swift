import Foundation

/// QEMU's iotest 303 ("Test for dumping of qcow2 image metadata"), rebuilt with the real qemu-img and
/// qemu-io, and the expected output of its `303.out`.
///
/// The expected texts below are 303.out's dump part as upstream has it, with the feature name table
/// length qemu-img 7.2 writes (384). The JSON part is the `test('zstd', True)` half, so the
/// incompatible features mask is 8 (compression type). They are written out here by hand from
/// 303.out, not produced by our renderer.
package enum Iotest303 {
    /// `qcow2.py disk dump-header` on the zlib image.
    package static let text = """
        magic                     0x514649fb
        version                   3
        backing_file_offset       0x0
        backing_file_size         0x0
        cluster_bits              16
        size                      10485760
        crypt_method              0
        l1_size                   1
        l1_table_offset           0x30000
        refcount_table_offset     0x10000
        refcount_table_clusters   1
        nb_snapshots              0
        snapshot_offset           0x0
        incompatible_features     []
        compatible_features       []
        autoclear_features        [0]
        refcount_order            4
        header_length             112

        \(extensionsText)
        """

    /// The extension part of ``text``: what `dump-header-exts` prints.
    package static let extensionsText = """
        Header extension:
        magic                     0x6803f857 (Feature table)
        length                    384
        data                      <binary>

        Header extension:
        magic                     0x23852875 (Bitmaps)
        length                    24
        nb_bitmaps                2
        reserved32                0
        bitmap_directory_size     0x40
        bitmap_directory_offset   0x9d0000

        Bitmap name               bitmap-1
        bitmap_table_offset       0x9b0000
        bitmap_table_size         1
        flags                     0x2 (['auto'])
        type                      1
        granularity_bits          15
        name_size                 8
        extra_data_size           0
        Bitmap table   type            size         offset
        0              serialized      65536        10092544

        Bitmap name               bitmap-2
        bitmap_table_offset       0x9c0000
        bitmap_table_size         1
        flags                     0x0 ([])
        type                      1
        granularity_bits          16
        name_size                 8
        extra_data_size           0
        Bitmap table   type            size         offset
        0              all-zeroes      0            0


        """

    /// `qcow2.py disk dump-header -j` on the zstd image.
    package static let json = """
        {
            "magic": 1363560955,
            "version": 3,
            "backing_file_offset": 0,
            "backing_file_size": 0,
            "cluster_bits": 16,
            "size": 10485760,
            "crypt_method": 0,
            "l1_size": 1,
            "l1_table_offset": 196608,
            "refcount_table_offset": 65536,
            "refcount_table_clusters": 1,
            "nb_snapshots": 0,
            "snapshot_offset": 0,
            "incompatible_features": 8,
            "compatible_features": 0,
            "autoclear_features": 1,
            "refcount_order": 4,
            "header_length": 112
        }

        \(extensionsJSON)
        """

    /// The extension array of ``json``: what `dump-header-exts -j` prints.
    package static let extensionsJSON = """
        [
            {
                "name": "Feature table",
                "magic": 1745090647,
                "length": 384,
                "data_str": "<binary>"
            },
            {
                "name": "Bitmaps",
                "magic": 595929205,
                "length": 24,
                "data": {
                    "nb_bitmaps": 2,
                    "reserved32": 0,
                    "bitmap_directory_size": 64,
                    "bitmap_directory_offset": 10289152,
                    "bitmap_directory": [
                        {
                            "name": "bitmap-1",
                            "bitmap_table_offset": 10158080,
                            "bitmap_table_size": 1,
                            "flags": 2,
                            "type": 1,
                            "granularity_bits": 15,
                            "name_size": 8,
                            "extra_data_size": 0,
                            "bitmap_table": [
                                {
                                    "type": "serialized",
                                    "offset": 10092544,
                                    "reserved": 0
                                }
                            ]
                        },
                        {
                            "name": "bitmap-2",
                            "bitmap_table_offset": 10223616,
                            "bitmap_table_size": 1,
                            "flags": 0,
                            "type": 1,
                            "granularity_bits": 16,
                            "name_size": 8,
                            "extra_data_size": 0,
                            "bitmap_table": [
                                {
                                    "type": "all-zeroes",
                                    "offset": 0,
                                    "reserved": 0
                                }
                            ]
                        }
                    ]
                }
            }
        ]

        """

    /// The bitmap directory offset of the 303 image (from 303.out).
    package static let directoryOffset = 0x9d_0000

    /// Builds `disk` exactly as 303 does: 10 MiB, bitmap-1 (g 32 KiB) + 1 MiB writes at 0..5 MiB,
    /// bitmap-2 (g 64 KiB, disabled) + writes at 6 and 7 MiB, each write its own qemu-io run.
    package static func makeImage(_ factory: QemuImageFactory, compression: String) throws -> String {
        let disk = try factory.create("disk-\(compression)", size: 10 << 20, options: ["compression_type=\(compression)"])
        try factory.bitmapAdd(disk, "bitmap-1", granularity: 1 << 15)
        for i in 0..<6 { try factory.write(disk, pattern: nil, offset: UInt64(i) << 20, length: 1 << 20) }
        try factory.bitmapAdd(disk, "bitmap-2", granularity: 1 << 16, disabled: true)
        for i in 6..<8 { try factory.write(disk, pattern: nil, offset: UInt64(i) << 20, length: 1 << 20) }
        return disk
    }

    /// Overwrites bytes of a file in place (the image is then read only by the code under test).
    package static func patch(_ path: String, at offset: Int, _ bytes: [UInt8]) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Big-endian bytes of `value`, `width` bytes wide.
    package static func be(_ value: UInt64, _ width: Int) -> [UInt8] {
        (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(width - 1 - $0))) }
    }
}
