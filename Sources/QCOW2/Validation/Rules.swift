// The registry: every rule qcowscope checks, each declared exactly once, and the list of them all.
// Sources/QCOW2/QCOW2.docc/Rules.md documents the same rules; RuleRegistryTests fails when they drift.

extension Rule {
    /// Every rule, in documentation order: header, extensions, snapshots, backing chain, cluster mapping, then the bitmap rules of §2.5.
    public static let all: [Rule] = [
        h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22,
        x1, x2, x3, x4, x5, x6, x7, x8, x9,
        s1, s2, s3, s4, s5, s6, s7, s8,
        b1, b2, b3, b4, b5, b6,
        m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11,
        c1, c2, c3, c4, c5, c6, c7, c8, c9,
        k1, k2, k3, k4, k5, k6, k7, k8, k9,
        e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12,
        d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, d11, d12, d13, d14, d15, d16,
        t1, t2, t3, t4, t5, t6,
    ]

    // MARK: Header (H)

    /// H1: cluster_bits within QEMU's 9-21.
    public static let h1 = Rule(
        "H1", .error, .header,
        summary: "cluster_bits must be 9-21 (clusters of 512 B to 2 MiB); QEMU refuses larger clusters.",
        action: "Convert the image to a supported cluster size with `qemu-img convert -O qcow2 -o cluster_size=65536`.",
        reference: "qcow2-format.md §1.2, §1.11; QEMU qcow2_do_open")
    /// H2: header_length a multiple of 8.
    public static let h2 = Rule(
        "H2", .warning, .header,
        summary: "A version 3 header_length must be a multiple of 8.",
        action: "QEMU opens it anyway; rewrite the header with `qemu-img convert` if other tools must read it.",
        reference: "qcow2-format.md §1.2 (spec only; QEMU does not check)")
    /// H3: the header fits in cluster 0 and in the file.
    public static let h3 = Rule(
        "H3", .error, .header,
        summary: "header_length must not exceed the cluster size or the file.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.2; QEMU qcow2_do_open")
    /// H4: no unknown incompatible feature bits.
    public static let h4 = Rule(
        "H4", .error, .header,
        summary: "Unknown incompatible feature bits must be clear; QEMU refuses to open the image.",
        action: "Open it with the (newer) program that wrote the feature, or restore from a backup if the bits are damage.",
        reference: "qcow2-format.md §1.4; QEMU qcow2_do_open")
    /// H5: the dirty bit.
    public static let h5 = Rule(
        "H5", .warning, .header,
        summary: "The dirty bit is set: refcounts may be inconsistent (lazy refcounts after a crash, or the image is open).",
        action: "If no VM has the image open, run `qemu-img check -r leaks` to rebuild the refcounts.",
        reference: "qcow2-format.md §1.4; QEMU qcow2_do_open")
    /// H6: the corrupt bit.
    public static let h6 = Rule(
        "H6", .error, .header,
        summary: "The corrupt bit is set: QEMU found metadata corruption and will not open the image read/write.",
        action: "Run `qemu-img check`; repair a copy with `qemu-img check -r all`, or restore from a backup.",
        reference: "qcow2-format.md §1.4; QEMU qcow2_do_open")
    /// H7: compression_type and incompatible bit 3 agree.
    public static let h7 = Rule(
        "H7", .error, .header,
        summary: "compression_type must be 0 (zlib) or 1 (zstd), and non-zero exactly when incompatible bit 3 is set.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.2; QEMU validate_compression_type")
    /// H8: crypt_method 0-2.
    public static let h8 = Rule(
        "H8", .error, .header,
        summary: "crypt_method must be 0 (none), 1 (AES) or 2 (LUKS).",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.2, §1.10; QEMU qcow2_do_open")
    /// H9: the backing file name lies inside cluster 0 and is at most 1023 bytes.
    public static let h9 = Rule(
        "H9", .error, .header,
        summary: "The backing file name must lie inside cluster 0 and the file, and be at most 1023 bytes.",
        action: "Set a valid backing file with `qemu-img rebase -u -b NAME -F FORMAT` on a copy.",
        reference: "qcow2-format.md §1.6; QEMU qcow2_do_open")
    /// H10: l1_table_offset, refcount_table_offset and snapshots_offset are cluster aligned.
    public static let h10 = Rule(
        "H10", .error, .header,
        summary: "l1_table_offset, refcount_table_offset and snapshots_offset must be cluster aligned.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.2; QEMU qcow2_validate_table")
    /// H11: the refcount table has 1 cluster to 8 MiB.
    public static let h11 = Rule(
        "H11", .error, .header,
        summary: "refcount_table_clusters must be non-zero and the refcount table at most 8 MiB.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.8, §1.11; QEMU qcow2_do_open")
    /// H12: refcount_order at most 6.
    public static let h12 = Rule(
        "H12", .error, .header,
        summary: "refcount_order must be at most 6 (64-bit refcounts).",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.2, §1.8; QEMU qcow2_do_open")
    /// H13: the active L1 table is large enough and at most 32 MiB.
    public static let h13 = Rule(
        "H13", .error, .header,
        summary: "l1_size must cover the virtual size, and the active L1 table be at most 32 MiB.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.7, §1.11; QEMU qcow2_do_open")
    /// H14: extended L2 entries need clusters of at least 16 KiB.
    public static let h14 = Rule(
        "H14", .error, .header,
        summary: "Extended L2 entries (incompatible bit 4) need cluster_bits of at least 14.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_do_open")
    /// H15: raw external data only with an external data file.
    public static let h15 = Rule(
        "H15", .error, .header,
        summary: "Autoclear bit 1 (raw external data) needs incompatible bit 2 (external data file).",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.4; QEMU qcow2_do_open")
    /// H16: header padding bytes 105-111 are zero.
    public static let h16 = Rule(
        "H16", .warning, .header,
        summary: "The header padding after compression_type (bytes 105-111) must be zero.",
        action: "QEMU ignores the padding; rewrite the image with `qemu-img convert` if other tools must read it.",
        reference: "qcow2-format.md §1.2 (spec only)")
    /// H17: unknown compatible or autoclear feature bits.
    public static let h17 = Rule(
        "H17", .info, .header,
        summary: "Unknown compatible or autoclear feature bits are set (readers may ignore them).",
        action: "Nothing: a writable open by QEMU clears unknown autoclear bits; compatible bits are safe to ignore.",
        reference: "qcow2-format.md §1.4")
    /// H18: snapshot count within QEMU's limits and not with an external data file.
    public static let h18 = Rule(
        "H18", .error, .header,
        summary: "nb_snapshots must be at most 65536, and 0 when the image has an external data file.",
        action: "The header is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.4, §1.9; QEMU qcow2_read_snapshots")
    /// H19: the L1 and refcount tables lie inside the file.
    public static let h19 = Rule(
        "H19", .error, .header,
        summary: "The active L1 table and the refcount table must lie inside the file.",
        action: "The file is truncated: copy it again from its source, or restore it from a backup.",
        reference: "qcow2-format.md §1.7, §1.8")
    /// H20: the backing file name lies after the header, not inside it.
    public static let h20 = Rule(
        "H20", .warning, .header,
        summary: "backing_file_offset, when set, must not lie inside the header (below header_length): QEMU then reads no header extensions.",
        action: "The image's bitmaps and feature names are invisible to QEMU: set the backing file again with `qemu-img rebase -u -b NAME -F FORMAT` on a copy, or restore the image from a backup.",
        reference: "qcow2-format.md §1.5, §1.6; QEMU qcow2_do_open, qcow2_read_extensions")

    /// H21: no NUL inside the backing file name.
    public static let h21 = Rule(
        "H21", .warning, .header,
        summary: "The backing file name should not contain a NUL byte: QEMU uses the name up to it.",
        action: "Set the backing file again with `qemu-img rebase -u -b NAME -F FORMAT` on a copy.",
        reference: "qcow2-format.md §1.6; QEMU qcow2_do_open (bs->auto_backing_file is a C string)")
    /// H22: a version 2 header cut by the end of the file.
    public static let h22 = Rule(
        "H22", .warning, .header,
        summary: "A version 2 header should lie inside the file; QEMU reads the part past the end as zeros, and so does qcowscope.",
        action: "The file was truncated: the fields past the end read as 0; restore the image from a backup.",
        reference: "qcow2-format.md §1.2; QEMU qcow2_do_open (the block layer reads past the end as zeros)")

    // MARK: Header extensions (X)

    /// X1: an extension's data ends inside the extension area.
    public static let x1 = Rule(
        "X1", .error, .headerExtension,
        summary: "A header extension's data must end inside the extension area (before the backing file name and cluster 0's end).",
        action: "The extension area is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.5; QEMU qcow2_read_extensions")
    /// X2: a known extension appears at most once.
    public static let x2 = Rule(
        "X2", .warning, .headerExtension,
        summary: "Each known header extension type should appear at most once.",
        action: "Rewrite the image with `qemu-img convert` so that each extension is written once.",
        reference: "qcow2-format.md §1.5 (spec only)")
    /// X3: the backing format name is shorter than 16 bytes.
    public static let x3 = Rule(
        "X3", .error, .headerExtension,
        summary: "The backing format extension must be shorter than 16 bytes.",
        action: "Set the backing format again with `qemu-img rebase -u -b NAME -F FORMAT` on a copy.",
        reference: "qcow2-format.md §1.5; QEMU qcow2_read_extensions")
    /// X4: the crypto header extension exists exactly with LUKS, is 16 bytes and points at a cluster.
    public static let x4 = Rule(
        "X4", .error, .headerExtension,
        summary: "The crypto header extension must be present exactly for LUKS (crypt_method 2), 16 bytes long, with a cluster-aligned offset.",
        action: "The encryption metadata is damaged: restore the image from a backup.",
        reference: "qcow2-format.md §1.5, §1.10; QEMU qcow2_read_extensions, qcow2_do_open")
    /// X5: the feature name table is a whole number of 48-byte entries.
    public static let x5 = Rule(
        "X5", .warning, .headerExtension,
        summary: "The feature name table length must be a multiple of 48.",
        action: "Only names are affected; rewrite the image with `qemu-img convert` to get a clean table.",
        reference: "qcow2-format.md §1.5")
    /// X6: at most 4096 extensions are read.
    public static let x6 = Rule(
        "X6", .error, .headerExtension,
        summary: "More than 4096 header extensions: qcowscope reads no further.",
        action: "The extension area is damaged or hostile: restore the image from a backup.",
        reference: "qcow2-format.md §1.5; qcowscope Limits.maxExtensions")
    /// X7: a backing format extension only with a backing file.
    public static let x7 = Rule(
        "X7", .warning, .headerExtension,
        summary: "A backing format extension without a backing file has no meaning.",
        action: "Harmless; `qemu-img convert` writes the image without it.",
        reference: "qcow2-format.md §1.5, §1.6")
    /// X8: the external data file bit needs the data file name extension.
    public static let x8 = Rule(
        "X8", .error, .headerExtension,
        summary: "An image with the external data file bit (incompatible bit 2) must name its data file in a data file name extension.",
        action: "QEMU refuses to read it (qemu-img check, map, convert and qemu-io: 'data-file' is required for this image): name the data file with `qemu-img amend -o data_file=NAME` on a copy, or restore the image from a backup.",
        reference: "qcow2-format.md §1.4, §1.5; QEMU qcow2_do_open")
    /// X9: the LUKS header window is large enough and inside the file.
    public static let x9 = Rule(
        "X9", .error, .headerExtension,
        summary: "A LUKS crypto header extension must point at a whole LUKS header (592 bytes or more) inside the file.",
        action: "QEMU refuses to open the image (Volume is not in LUKS format, or Request for data outside of extension header): restore it from a backup; the data cannot be decrypted without the header.",
        reference: "qcow2-format.md §1.5; QEMU qcow2_read_extensions, qcow2_crypto_hdr_read_func")

    // MARK: Snapshot table (S)

    /// S1: the snapshot table can be read.
    public static let s1 = Rule(
        "S1", .error, .snapshotTable,
        summary: "The snapshot table must lie inside the file and every entry be readable (at most 65536 entries, 64 MiB).",
        action: "The snapshot table is damaged or the file truncated: copy it again, or restore from a backup.",
        reference: "qcow2-format.md §1.9; QEMU qcow2_read_snapshots")
    /// S2: snapshot L1 tables are cluster aligned.
    public static let s2 = Rule(
        "S2", .error, .snapshotTable,
        summary: "A snapshot's l1_table_offset must be cluster aligned.",
        action: "Run `qemu-img check`; delete the broken snapshot with `qemu-img snapshot -d` on a copy.",
        reference: "qcow2-format.md §1.9; QEMU qcow2_check_read_snapshot_table")
    /// S3: version 3 snapshots carry at least 16 bytes of extra data.
    public static let s3 = Rule(
        "S3", .error, .snapshotTable,
        summary: "In a version 3 image every snapshot needs at least 16 bytes of extra data.",
        action: "Let QEMU rewrite the table (`qemu-img check -r all` on a copy), or restore from a backup.",
        reference: "qcow2-format.md §1.9; QEMU qcow2_read_snapshots")
    /// S4: at most 1024 bytes of extra data per snapshot.
    public static let s4 = Rule(
        "S4", .error, .snapshotTable,
        summary: "A snapshot entry may carry at most 1024 bytes of extra data.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §1.9; QEMU qcow2_read_snapshots")
    /// S5: snapshot IDs are unique.
    public static let s5 = Rule(
        "S5", .error, .snapshotTable,
        summary: "Snapshot IDs must be unique.",
        action: "Delete one of the duplicates with `qemu-img snapshot -d` on a copy.",
        reference: "qcow2-format.md §1.9 (spec)")
    /// S6: snapshot L1 tables are at most 32 MiB.
    public static let s6 = Rule(
        "S6", .error, .snapshotTable,
        summary: "A snapshot's L1 table must be at most 32 MiB.",
        action: "Run `qemu-img check`; delete the broken snapshot with `qemu-img snapshot -d` on a copy.",
        reference: "qcow2-format.md §1.9, §1.11; QEMU qcow2_check_read_snapshot_table")
    /// S7: snapshot IDs and names without NUL bytes.
    public static let s7 = Rule(
        "S7", .warning, .snapshotTable,
        summary: "A snapshot ID or name should not hold a NUL byte: QEMU reads it as a C string and shows only the bytes before it.",
        action: "Address the snapshot by what QEMU shows (`name`); the stored bytes are in `name_hex` / `id_hex`. Rename it on a copy with `qemu-img snapshot` if tools disagree.",
        reference: "qcow2-format.md §1.9; QEMU qcow2_do_read_snapshots (g_strndup)")
    /// S8: the snapshot table runs past the end of the file (read as zeros).
    public static let s8 = Rule(
        "S8", .warning, .snapshotTable,
        summary: "The snapshot table should lie inside the file; QEMU reads the part past the end as zeros, and so does qcowscope.",
        action: "The file was truncated: the snapshots there lost their names and tables; delete them on a copy (`qemu-img snapshot -d`) or restore the image.",
        reference: "qcow2-format.md §1.9; QEMU qcow2_read_snapshots (the block layer reads past the end as zeros)")

    // MARK: Backing file (B)
    // Checked where the images directory is known (QCOW2API's ImageCatalog), not by the parser.

    /// B1: the backing file exists.
    public static let b1 = Rule(
        "B1", .error, .backingFile,
        summary: "The backing file the header names must exist; QEMU cannot open the image without it.",
        action: "Restore the backing file under the name the overlay stores, or point the overlay at it with `qemu-img rebase -u -b NAME -F FORMAT`.",
        reference: "qcow2-format.md §1.6; QEMU bdrv_open_backing_file")
    /// B2: the backing file could not be looked for.
    public static let b2 = Rule(
        "B2", .info, .backingFile,
        summary: "The backing file is not looked for: its name leaves the images directory or is not a plain file name.",
        action: "Keep backing files in the images directory, named relative to it, so they can be checked.",
        reference: "qcow2-format.md §1.6; qcowscope follows backing files only inside its directory")

    /// B3: The backing chain must not loop: a layer names a file already in the chain.
    public static let b3 = Rule(
        "B3", .error, .backingFile,
        summary: "The backing chain must not loop: a layer names a file already in the chain.",
        action: "QEMU's map and check never finish on such a chain: point the layer at the right base with `qemu-img rebase -u -b NAME -F FORMAT`.",
        reference: "qcow2-format.md §1.6; QEMU bdrv_open_backing_file, qemu-img info --backing-chain")
    /// B4: The backing chain must be at most 64 layers deep below the image.
    public static let b4 = Rule(
        "B4", .error, .backingFile,
        summary: "The backing chain must be at most 64 layers deep below the image.",
        action: "Flatten the chain with `qemu-img commit` or `qemu-img rebase` so it is shorter.",
        reference: "qcow2-format.md §1.6; QEMU bdrv_open_backing_file (its open recursion)")
    /// B5: A backing file must be a regular qcow2 or raw file that can be read.
    public static let b5 = Rule(
        "B5", .error, .backingFile,
        summary: "A backing file must be a regular qcow2 or raw file that can be read.",
        action: "Restore the backing file, or rebase the overlay onto a readable one with `qemu-img rebase -u`.",
        reference: "qcow2-format.md §1.6; QEMU bdrv_open_backing_file")
    /// B6: The external data file the image names must exist in the images directory.
    public static let b6 = Rule(
        "B6", .error, .backingFile,
        summary: "The external data file the image names must exist in the images directory.",
        action: "Restore the data file under the name the image stores, or fix the name with `qemu-img amend -o data_file=NAME`.",
        reference: "qcow2-format.md §1.5; QEMU qcow2_do_open (data-file)")

    // MARK: Cluster mapping (M)
    // Met by the map as it walks the L1 and L2 tables (QCOW2.MapIssue), a page at a time.

    /// M1: An L1 entry's L2 table offset must be cluster aligned.
    public static let m1 = Rule(
        "M1", .error, .clusterTable,
        summary: "An L1 entry's L2 table offset must be cluster aligned.",
        action: "QEMU fails reads there (EIO); the range reads as unallocated here. Restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_get_host_offset")
    /// M2: An L2 table must lie inside the file.
    public static let m2 = Rule(
        "M2", .error, .clusterTable,
        summary: "An L2 table must lie inside the file.",
        action: "QEMU reads the part past the end as zeros (unallocated); the table was lost: restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU check_refcounts_l1, l2_load")
    /// M3: Reserved bits of an L1 entry must be zero.
    public static let m3 = Rule(
        "M3", .error, .clusterTable,
        summary: "Reserved bits of an L1 entry must be zero.",
        action: "`qemu-img check` counts it as a corruption; `qemu-img check -r all` on a copy clears it.",
        reference: "qcow2-format.md §1.7; QEMU check_refcounts_l1")
    /// M4: A data cluster offset must be cluster aligned.
    public static let m4 = Rule(
        "M4", .error, .clusterTable,
        summary: "A data cluster offset must be cluster aligned.",
        action: "QEMU fails reads there (EIO). Restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_get_host_offset")
    /// M5: A data cluster must start before the end of the file.
    public static let m5 = Rule(
        "M5", .error, .clusterTable,
        summary: "A data cluster must start before the end of the file.",
        action: "`qemu-img check` counts it as a corruption; the guest reads zeros there. Restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_inc_refcounts_imrt")
    /// M6: Reserved bits of an L2 entry must be zero (for a compressed cluster, the copied flag too).
    public static let m6 = Rule(
        "M6", .error, .clusterTable,
        summary: "Reserved bits of an L2 entry must be zero (for a compressed cluster, the copied flag too).",
        action: "`qemu-img check` counts it as a corruption; `qemu-img check -r all` on a copy clears it.",
        reference: "qcow2-format.md §1.7; QEMU check_refcounts_l2")
    /// M7: A compressed cluster's data must end inside the file.
    public static let m7 = Rule(
        "M7", .error, .clusterTable,
        summary: "A compressed cluster's data must end inside the file.",
        action: "Reads of the cluster fail; restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_inc_refcounts_imrt")
    /// M8: A version 2 image must not use the zero cluster flag.
    public static let m8 = Rule(
        "M8", .error, .clusterTable,
        summary: "A version 2 image must not use the zero cluster flag.",
        action: "QEMU fails reads there (EIO). Convert the image with `qemu-img convert -O qcow2 -o compat=1.1`.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_get_host_offset")
    /// M9: An extended L2 bitmap must not mark a subcluster both allocated and zero, or allocate subclusters of an unallocated cluster.
    public static let m9 = Rule(
        "M9", .error, .clusterTable,
        summary: "An extended L2 bitmap must not mark a subcluster both allocated and zero, or allocate subclusters of an unallocated cluster.",
        action: "QEMU fails reads there (EIO). Restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_get_subcluster_type")
    /// M10: An image with an external data file must not have compressed clusters.
    public static let m10 = Rule(
        "M10", .error, .clusterTable,
        summary: "An image with an external data file must not have compressed clusters.",
        action: "QEMU fails reads there (EIO). Restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_get_host_offset")
    /// M11: With an external data file, a cluster's host offset must equal its guest offset.
    public static let m11 = Rule(
        "M11", .error, .clusterTable,
        summary: "With an external data file, a cluster's host offset must equal its guest offset.",
        action: "QEMU fails reads there (EIO). Restore the image from a backup.",
        reference: "qcow2-format.md §1.7; QEMU qcow2_get_host_offset")

    // MARK: Refcounts (C): found by the read-only check (`/check`, `qcowscope check`)

    /// C1: no cluster is referenced more often than its refcount says.
    public static let c1 = Rule(
        "C1", .error, .refcounts,
        summary: "A cluster's refcount must not be lower than the number of references to it.",
        action: "A writer may reuse the cluster and overwrite data: stop writing, repair a copy with `qemu-img check -r all`, or restore from a backup.",
        reference: "qcow2-format.md §1.8; QEMU compare_refcounts (`ERROR cluster N refcount=R reference=K`)")
    /// C2: leaked clusters.
    public static let c2 = Rule(
        "C2", .warning, .refcounts,
        summary: "A cluster's refcount should not be higher than the number of references to it (a leaked cluster).",
        action: "Wasted space, no harm to data; `qemu-img check -r leaks` on the image (no writer present) frees it.",
        reference: "qcow2-format.md §1.8; QEMU compare_refcounts (`Leaked cluster N refcount=R reference=K`)")
    /// C3: the copied flag says refcount 1.
    public static let c3 = Rule(
        "C3", .error, .refcounts,
        summary: "The copied flag (bit 63) of an L1 or active L2 entry must be set exactly when the cluster's refcount is 1.",
        action: "Writes may go to a shared cluster or copy needlessly: repair a copy with `qemu-img check -r all`.",
        reference: "qcow2-format.md §1.7, §1.8; QEMU check_oflag_copied")
    /// C4: references stay inside the file.
    public static let c4 = Rule(
        "C4", .error, .refcounts,
        summary: "A referenced range must not end one cluster or more past the end of the file.",
        action: "The file was truncated or an entry is damaged; what lies there reads as zeros. Restore the image from a backup.",
        reference: "qcow2-format.md §1.8; QEMU qcow2_inc_refcounts_imrt")
    /// C5: refcounts do not overflow.
    public static let c5 = Rule(
        "C5", .error, .refcounts,
        summary: "A cluster must not be referenced more often than refcount_bits can count.",
        action: "Raise the width with `qemu-img amend -o refcount_bits=16` on a copy, or `qemu-img convert` to a clean copy.",
        reference: "qcow2-format.md §1.8; QEMU qcow2_inc_refcounts_imrt (`ERROR: overflow cluster`)")
    /// C6: refcount table entries and refcount blocks.
    public static let c6 = Rule(
        "C6", .error, .refcounts,
        summary: "A refcount table entry must have reserved bits 0-8 clear and point at a cluster-aligned refcount block inside the file, referenced once.",
        action: "The refcount structure is damaged: rebuild it on a copy with `qemu-img check -r all`.",
        reference: "qcow2-format.md §1.8; QEMU check_refblocks")
    /// C7: every refcount can be read.
    public static let c7 = Rule(
        "C7", .error, .refcounts,
        summary: "Every cluster's refcount must be readable (its refcount block cluster aligned and readable).",
        action: "`qemu-img check` counts an internal error per cluster; rebuild the refcounts on a copy with `qemu-img check -r all`.",
        reference: "qcow2-format.md §1.8; QEMU qcow2_get_refcount (`Can't get refcount for cluster N`)")
    /// C8: no internal snapshots with an external data file.
    public static let c8 = Rule(
        "C8", .error, .snapshotTable,
        summary: "An image with an external data file must not have internal snapshots.",
        action: "QEMU never writes this; delete the snapshots with `qemu-img snapshot -d` on a copy.",
        reference: "qcow2-format.md §1.9; QEMU calculate_refcounts")
    /// C9: the check ran to the end.
    public static let c9 = Rule(
        "C9", .error, .refcounts,
        summary: "The refcount check must be able to read every table it needs, within its memory limit.",
        action: "Read the message: raise `--check-memory`, fix the storage, or restore the image; `qemu-img check` fails on it too (`Check failed`).",
        reference: "QEMU qcow2_check_refcounts, qcow2_check_read_snapshot_table")

    // MARK: Checkpoints (K)
    // Met by the incremental-backup readiness of a bitmap name across the backing chain
    // (`/v1/images/{image}/checkpoints`): an error-severity K finding means "not ready".

    /// K1: the bitmap is in use in a layer.
    public static let k1 = Rule(
        "K1", .error, .checkpoint,
        summary: "A checkpoint's bitmap must not be in use (flag in_use) in any layer: QEMU refuses an in-use bitmap as inconsistent.",
        action: "With no VM holding the image, a crash left it: take a full backup, then remove the bitmap in every layer with `qemu-img bitmap --remove` and start a new checkpoint.",
        reference: "qcow2-format.md §2.3 (in_use); QEMU bdrv_dirty_bitmap_check (`Bitmap is inconsistent`)")
    /// K2: the bitmap cannot be trusted in a layer for another reason.
    public static let k2 = Rule(
        "K2", .error, .checkpoint,
        summary: "A checkpoint's bitmap must be usable in every layer: no error finding on it or its extension, no table past the end of the file (T6), and the layer's autoclear bit 0 set.",
        action: "Read the layer's findings; take a full backup and recreate the checkpoint: the bits of that layer cannot be trusted.",
        reference: "qcow2-format.md §2.5; QEMU qcow2_load_dirty_bitmaps")
    /// K3: the bitmap is missing in a layer above one that has it.
    public static let k3 = Rule(
        "K3", .error, .checkpoint,
        summary: "A checkpoint's bitmap must be in every layer above the deepest layer that has it: writes to a layer without it were recorded nowhere.",
        action: "The chain was extended without carrying the bitmap (a snapshot taken outside the backup tool): take a full backup and start a new checkpoint.",
        reference: "QEMU qmp_block_dirty_bitmap_merge, as libvirt merges a checkpoint's bitmaps of every layer")
    /// K4: a layer's bitmap covers a different disk size.
    public static let k4 = Rule(
        "K4", .error, .checkpoint,
        summary: "Every layer's bitmap of a checkpoint must cover the image's virtual size: QEMU merges only bitmaps of equal size.",
        action: "A layer was resized after the checkpoint: take a full backup and start a new checkpoint.",
        reference: "QEMU bdrv_merge_dirty_bitmap_locked (`Bitmaps are of different sizes`)")
    /// K5: granularities differ between layers (nothing is lost).
    public static let k5 = Rule(
        "K5", .info, .checkpoint,
        summary: "The layers' bitmaps of a checkpoint have different granularities; merging them loses no dirty byte (the union is at the finest).",
        action: "Nothing to do; a backup reads whole granules of the coarser bitmaps.",
        reference: "QEMU hbitmap_merge (hbitmap_sparse_merge for different granularities)")
    /// K6: no enabled bitmap in the active layer records writes since the checkpoint.
    public static let k6 = Rule(
        "K6", .error, .checkpoint,
        summary: "Writes since a checkpoint must be recorded: its bitmap or a later one must be enabled in the active layer.",
        action: "Writes since the bitmap was disabled are tracked nowhere: take a full backup and start a new checkpoint.",
        reference: "qcow2-format.md §2.3 (auto flag); QEMU block-dirty-bitmap-disable")
    /// K7: the checkpoint's bitmap is disabled; later bitmaps record the writes since.
    public static let k7 = Rule(
        "K7", .info, .checkpoint,
        summary: "A checkpoint's bitmap is disabled in the active layer; the enabled bitmaps there record the writes since, and a backup merges them.",
        action: "Ask for the union with them (`?with=NAME`), as libvirt merges later checkpoints.",
        reference: "qcow2-format.md §2.3 (auto flag); QEMU block-dirty-bitmap-merge")
    /// K8: a writer holds the image.
    public static let k8 = Rule(
        "K8", .error, .checkpoint,
        summary: "No writer may hold the image: while a VM runs its bitmaps live in memory and the file's bits lag behind.",
        action: "Back up through the running VM (libvirt backup-begin or QMP), or shut it down and ask again.",
        reference: "qcow2-format.md §2.3 (in_use while open); QEMU raw_check_lock_bytes (write lock byte 101)")
    /// K9: the chain could not be read to its end.
    public static let k9 = Rule(
        "K9", .error, .checkpoint,
        summary: "Every layer of the chain must be readable to vouch for a checkpoint.",
        action: "Restore or make reachable the backing file the chain's findings name (B1-B6), then ask again.",
        reference: "QEMU bdrv_open_backing_file")

    // MARK: Bitmaps extension (E)

    /// E1: the bitmaps extension is 24 bytes.
    public static let e1 = Rule(
        "E1", .error, .bitmapsExtension,
        summary: "The bitmaps extension must be 24 bytes long.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.1, §2.5; QEMU qcow2_read_extensions")
    /// E2: autoclear bit 0 vouches for the bitmaps.
    public static let e2 = Rule(
        "E2", .warning, .bitmapsExtension,
        summary: "Autoclear bit 0 must be set for the bitmaps to be trusted; when clear, every bitmap is inconsistent.",
        action: "Do not use the bitmaps for incremental backups: take a full backup and recreate them.",
        reference: "qcow2-format.md §1.4, §2.5; QEMU qcow2_read_extensions")
    /// E3: autoclear bit 0 only with a bitmaps extension.
    public static let e3 = Rule(
        "E3", .error, .bitmapsExtension,
        summary: "Autoclear bit 0 must not be set without a bitmaps extension; QEMU's first write then marks the image corrupt.",
        action: "Clear the bit before writing: open the image once with a tool that rewrites the header, or restore from a backup.",
        reference: "qcow2-format.md §1.4, §2.5 (spec)")
    /// E4: reserved32 is zero.
    public static let e4 = Rule(
        "E4", .error, .bitmapsExtension,
        summary: "The bitmaps extension's reserved32 field must be zero.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.1, §2.5; QEMU qcow2_read_extensions")
    /// E5: at least one bitmap.
    public static let e5 = Rule(
        "E5", .error, .bitmapsExtension,
        summary: "nb_bitmaps must be at least 1.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.1, §2.5; QEMU qcow2_read_extensions")
    /// E6: at most 65535 bitmaps.
    public static let e6 = Rule(
        "E6", .error, .bitmapsExtension,
        summary: "nb_bitmaps must be at most 65535 (QCOW2_MAX_BITMAPS).",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.5; QEMU qcow2_read_extensions")
    /// E7: the directory is cluster aligned.
    public static let e7 = Rule(
        "E7", .error, .bitmapsExtension,
        summary: "bitmap_directory_offset must be cluster aligned; an unaligned directory is not read.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.1, §2.5; QEMU qcow2_read_extensions")
    /// E8: the directory is at most 67,107,840 bytes.
    public static let e8 = Rule(
        "E8", .error, .bitmapsExtension,
        summary: "bitmap_directory_size must be at most 67107840 bytes (QCOW2_MAX_BITMAP_DIRECTORY_SIZE); a larger directory is not read.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.5; QEMU qcow2_read_extensions")
    /// E9: the directory is not empty.
    public static let e9 = Rule(
        "E9", .error, .bitmapsExtension,
        summary: "bitmap_directory_size must not be zero.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.5; QEMU bitmap_list_load")
    /// E10: the directory is well framed and inside the file.
    public static let e10 = Rule(
        "E10", .error, .bitmapDirectory,
        summary: "The bitmap directory must lie inside the file, every entry inside the directory, and the last entry end at its end.",
        action: "QEMU refuses the image (\"Broken bitmap directory\"): restore it from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU bitmap_list_load")
    /// E11: the directory holds nb_bitmaps entries.
    public static let e11 = Rule(
        "E11", .error, .bitmapDirectory,
        summary: "The directory must hold exactly nb_bitmaps entries.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.5; QEMU bitmap_list_load")
    /// E12: only version 3 images carry bitmaps.
    public static let e12 = Rule(
        "E12", .error, .bitmapsExtension,
        summary: "Only version 3 images may carry persistent bitmaps; QEMU ignores a bitmaps extension in a version 2 file.",
        action: "Upgrade with `qemu-img amend -o compat=1.1` and recreate the bitmaps.",
        reference: "qcow2-format.md §1.3, §2.5; QEMU qcow2_read_extensions")

    // MARK: Bitmap directory entries (D)

    /// D1: no extra data.
    public static let d1 = Rule(
        "D1", .error, .bitmapDirectory,
        summary: "extra_data_size must be 0: QEMU supports no bitmap extra data.",
        action: "QEMU refuses the image: remove the bitmap with the program that wrote it, or restore from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU bitmap_list_load")
    /// D2: the table is not empty.
    public static let d2 = Rule(
        "D2", .error, .bitmapDirectory,
        summary: "bitmap_table_size must not be zero.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.5; QEMU check_dir_entry")
    /// D3: the table offset is set and cluster aligned.
    public static let d3 = Rule(
        "D3", .error, .bitmapDirectory,
        summary: "bitmap_table_offset must be non-zero and cluster aligned.",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU check_dir_entry")
    /// D4: at most 0x8000000 table entries.
    public static let d4 = Rule(
        "D4", .error, .bitmapDirectory,
        summary: "bitmap_table_size must be at most 134217728 entries (BME_MAX_TABLE_SIZE).",
        action: "QEMU refuses the image: restore it from a backup.",
        reference: "qcow2-format.md §2.5; QEMU check_dir_entry")
    /// D5: granularity_bits 9-31.
    public static let d5 = Rule(
        "D5", .error, .bitmapDirectory,
        summary: "granularity_bits must be 9-31 (512 B to 2 GiB per bit).",
        action: "QEMU refuses the image: remove the bitmap with the program that wrote it, or restore from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU check_dir_entry")
    /// D6: only flags in_use and auto.
    public static let d6 = Rule(
        "D6", .error, .bitmapDirectory,
        summary: "Only flag bits 0 (in_use) and 1 (auto) may be set; QEMU also rejects bit 2 (extra_data_compatible).",
        action: "QEMU refuses the image: remove the bitmap with the program that wrote it, or restore from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU check_dir_entry")
    /// D7: names of at most 1023 bytes.
    public static let d7 = Rule(
        "D7", .error, .bitmapDirectory,
        summary: "name_size must be at most 1023 bytes (BME_MAX_NAME_SIZE).",
        action: "QEMU refuses the image: remove the bitmap with the program that wrote it, or restore from a backup.",
        reference: "qcow2-format.md §2.5; QEMU check_dir_entry")
    /// D8: type 1.
    public static let d8 = Rule(
        "D8", .error, .bitmapDirectory,
        summary: "type must be 1 (dirty tracking bitmap).",
        action: "QEMU refuses the image: remove the bitmap with the program that wrote it, or restore from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU check_dir_entry")
    /// D9: at most 512 MiB of bitmap data.
    public static let d9 = Rule(
        "D9", .error, .bitmapDirectory,
        summary: "bitmap_table_size x cluster size must be at most 512 MiB (BME_MAX_PHYS_SIZE).",
        action: "QEMU refuses the image: restore it from a backup; recreate the bitmap with a larger granularity.",
        reference: "qcow2-format.md §2.5; QEMU check_dir_entry")
    /// D10: the table covers the disk.
    public static let d10 = Rule(
        "D10", .error, .bitmapDirectory,
        summary: "A bitmap that is not in use must have a table large enough for the virtual size.",
        action: "QEMU refuses the image: remove and recreate the bitmap (`qemu-img bitmap --remove`, then `--add`) on a copy.",
        reference: "qcow2-format.md §2.4, §2.5; QEMU check_dir_entry")
    /// D11: the table has exactly the required size.
    public static let d11 = Rule(
        "D11", .error, .bitmapDirectory,
        summary: "A bitmap that is not in use must have exactly the table size its virtual size and granularity require.",
        action: "QEMU cannot load the bitmap: remove and recreate it (`qemu-img bitmap --remove`, then `--add`) on a copy.",
        reference: "qcow2-format.md §2.4, §2.5; QEMU load_bitmap_data")
    /// D12: unique names.
    public static let d12 = Rule(
        "D12", .error, .bitmapDirectory,
        summary: "Bitmap names must be unique.",
        action: "QEMU refuses the image (\"Bitmap already exists\"): restore it from a backup.",
        reference: "qcow2-format.md §2.2, §2.5; QEMU load_bitmap (bdrv_create_dirty_bitmap)")
    /// D13: names are not empty.
    public static let d13 = Rule(
        "D13", .error, .bitmapDirectory,
        summary: "name_size must not be zero.",
        action: "Remove the nameless bitmap with the program that wrote it, or restore from a backup.",
        reference: "qcow2-format.md §2.2, §2.5 (spec)")
    /// D14: zero padding after the name.
    public static let d14 = Rule(
        "D14", .warning, .bitmapDirectory,
        summary: "The padding bytes after a bitmap's name must be zero.",
        action: "QEMU does not check it; the next directory QEMU writes is clean.",
        reference: "qcow2-format.md §2.2, §2.5 (spec only)")
    /// D15: in-use bitmaps.
    public static let d15 = Rule(
        "D15", .info, .bitmapDirectory,
        summary: "The bitmap is in use: a writer has it open or crashed; its table and data may be stale (D10/D11 are not checked).",
        action: "Normal while a VM runs; after a crash do not use the bitmap for incremental backups: take a full backup and recreate it.",
        reference: "qcow2-format.md §2.5, §2.6; QEMU load_bitmap")

    /// D16: no NUL inside a bitmap name.
    public static let d16 = Rule(
        "D16", .warning, .bitmapDirectory,
        summary: "A bitmap name should not contain a NUL byte: QEMU shows and finds the bitmap by the name up to it.",
        action: "Address the bitmap by its stored bytes (`name_hex`); to fix it, remove the bitmap and add it again under a clean name with `qemu-img bitmap`.",
        reference: "qcow2-format.md §2.2; QEMU bitmap_list_load (names are C strings)")

    // MARK: Bitmap tables and data (T)

    /// T1: no reserved bits in table entries; the table can be read.
    public static let t1 = Rule(
        "T1", .error, notChecked: .info, .bitmapTable,
        summary: "Reserved bits 1-8 and 56-63 of every bitmap table entry must be zero, and the table must be readable.",
        action: "QEMU cannot load the bitmap: remove and recreate it on a copy. An info finding means the table was not checked (size or budget limit).",
        reference: "qcow2-format.md §2.3, §2.5; QEMU bitmap_table_load (check_table_entry)")
    /// T2: no all-ones bit with an offset.
    public static let t2 = Rule(
        "T2", .error, .bitmapTable,
        summary: "A table entry with a data cluster offset must have bit 0 (all ones) clear.",
        action: "QEMU cannot load the bitmap: remove and recreate it on a copy.",
        reference: "qcow2-format.md §2.3, §2.5; QEMU check_table_entry")
    /// T3: data clusters aligned and inside the file.
    public static let t3 = Rule(
        "T3", .error, .bitmapTable,
        summary: "A data cluster offset must be cluster aligned and inside the file.",
        action: "QEMU cannot load the bitmap: remove and recreate it on a copy.",
        reference: "qcow2-format.md §2.3, §2.5; QEMU check_table_entry")
    /// T4: tail bits zero.
    public static let t4 = Rule(
        "T4", .warning, .bitmapData,
        summary: "Bits past the end of the virtual disk in the last data cluster must be zero.",
        action: "QEMU does not check it; the bitmap's dirty extents inside the disk are still right.",
        reference: "qcow2-format.md §2.4, §2.5 (spec only)")
    /// T5: bitmap clusters have a refcount.
    public static let t5 = Rule(
        "T5", .error, .bitmapTable,
        summary: "Bitmap tables and data clusters must have a non-zero refcount, or a writer will reuse them.",
        action: "Run `qemu-img check`; repair a copy with `qemu-img check -r all` before writing to the image.",
        reference: "qcow2-format.md §1.8, §2.5; QEMU qcow2_check_bitmaps_refcounts")
    /// T6: the bitmap table lies (partly) past the end of the file.
    public static let t6 = Rule(
        "T6", .warning, .bitmapTable,
        summary: "A bitmap table should lie inside the file; QEMU reads the part past the end as zeros (all clean), and so does qcowscope.",
        action: "The file was truncated: the bitmap's bits there were lost, so take a full backup and recreate the bitmap.",
        reference: "qcow2-format.md §2.4; QEMU bitmap_table_load (file-posix reads past the end as zeros)")
}
