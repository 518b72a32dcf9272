#!/usr/bin/env python3
"""Craft the large QCOW2 images the benchmark needs, as sparse files, following the qcow2 spec.

    mkimages.py table   FILE   bitmap 'big' with a 1,048,576-entry table (8 MiB) + bitmap 'small' with 16 entries
    mkimages.py bitmaps FILE [N]  N (default 65,535, QEMU's maximum) bitmaps with short names
    mkimages.py findings FILE  4,096 bitmaps sharing one 96-entry table whose entries all set a
                               reserved bit (rule T1 once per entry and bitmap: 393,216 findings)

Layout (512-byte clusters, v3, refcount_order 4): cluster 0 holds the 112-byte header, the
bitmaps extension and the end marker; then the L1 table (all zero: no guest data), every bitmap
table, the bitmap directory, the refcount blocks and the refcount table. Every cluster up to the
end of the file has refcount 1, so `qemu-img check` finds no leak and no corruption. Only non-zero
bytes are written: the tables are holes.

Why the 1M-entry bitmap is in-use: a 1,048,576-entry table with 512-byte clusters covers 2^32 bits,
which needs a virtual size QEMU cannot give a 512-byte-cluster image (its L1 table would pass 32 MiB),
and a table larger than the virtual size needs is refused by QEMU when it loads the bitmap
(qcowscope rule D11). QEMU does not load in-use bitmaps (their data is stale), so `qemu-img info`
opens the image and lists the bitmap; qcowscoped reports it with D15 (in use) and serves its table.
"""
import os
import struct
import sys

CLUSTER_BITS = 9
CLUSTER = 1 << CLUSTER_BITS
BITMAPS_MAGIC = 0x23852875
IN_USE, AUTO = 1, 2


def clusters(nbytes):
    return (nbytes + CLUSTER - 1) // CLUSTER


def required_table_size(size, granularity_bits):
    bits = -(-size // (1 << granularity_bits))
    return clusters(-(-bits // 8))


def write_image(path, size, bitmaps):
    """bitmaps: list of dicts name(bytes), granularity_bits, table_size, flags, entries {index: raw}."""
    l2_entries = CLUSTER // 8
    l1_size = -(-size // (CLUSTER * l2_entries))
    next_cluster = 1  # cluster 0: header
    l1_offset = next_cluster * CLUSTER
    next_cluster += max(1, clusters(l1_size * 8))
    for b in bitmaps:
        if "share" in b:  # the table of an earlier bitmap
            b["offset"] = bitmaps[b["share"]]["offset"]
            continue
        b["offset"] = next_cluster * CLUSTER
        next_cluster += clusters(b["table_size"] * 8)
    directory = bytearray()
    for b in bitmaps:
        name = b["name"]
        entry = struct.pack(">QIIBBHI", b["offset"], b["table_size"], b["flags"], 1, b["granularity_bits"], len(name), 0)
        entry += name
        entry += b"\0" * (-len(entry) % 8)
        directory += entry
    dir_offset = next_cluster * CLUSTER
    next_cluster += clusters(len(directory))
    data_clusters = next_cluster

    # Refcount blocks and table, to a fixed point: every cluster of the file (these included) counts.
    per_block = CLUSTER * 8 // 16
    blocks, table_clusters = 1, 1
    while True:
        total = data_clusters + blocks + table_clusters
        need_blocks = -(-total // per_block)
        need_table = clusters(need_blocks * 8)
        if (need_blocks, need_table) == (blocks, table_clusters):
            break
        blocks, table_clusters = need_blocks, need_table
    blocks_start = data_clusters
    reftable_offset = (blocks_start + blocks) * CLUSTER
    total = data_clusters + blocks + table_clusters

    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3, 0, 0, CLUSTER_BITS, size, 0, l1_size, l1_offset, reftable_offset, table_clusters,
        0, 0, 0, 0, 1, 4, 112)
    header += b"\0" * 8  # compression_type 0 (zlib) + padding to header_length 112
    assert len(header) == 112
    header += struct.pack(">II", BITMAPS_MAGIC, 24)
    header += struct.pack(">IIQQ", len(bitmaps), 0, len(directory), dir_offset)
    header += b"\0" * 8  # end of extensions
    assert len(header) <= CLUSTER

    refblocks = bytearray(blocks * CLUSTER)
    for c in range(total):
        struct.pack_into(">H", refblocks, c * 2, 1)
    reftable = bytearray(table_clusters * CLUSTER)
    for i in range(blocks):
        struct.pack_into(">Q", reftable, i * 8, (blocks_start + i) * CLUSTER)

    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.truncate(total * CLUSTER)
        f.seek(0)
        f.write(header)
        for b in bitmaps:
            for index, raw in sorted(b.get("entries", {}).items()):
                f.seek(b["offset"] + index * 8)
                f.write(struct.pack(">Q", raw))
        f.seek(dir_offset)
        f.write(directory)
        # Skip all-zero refcount clusters? There are none: every cluster has refcount 1.
        f.seek(blocks_start * CLUSTER)
        f.write(refblocks)
        f.seek(reftable_offset)
        f.write(reftable)
    os.replace(tmp, path)
    return total * CLUSTER


def table_image(path):
    size = 4 << 30  # 4 GiB: 'small' with 64 KiB granularity needs exactly 16 table entries
    big_entries = 1 << 20
    small_entries = required_table_size(size, 16)
    assert small_entries == 16
    bitmaps = [
        # The first and the last entry are "all ones" (raw 1), the rest all-zeroes.
        dict(name=b"big", granularity_bits=9, table_size=big_entries, flags=IN_USE | AUTO,
             entries={0: 1, big_entries - 1: 1}),
        dict(name=b"small", granularity_bits=16, table_size=small_entries, flags=AUTO, entries={}),
    ]
    return write_image(path, size, bitmaps)


def bitmaps_image(path, count):
    size = 1 << 20
    table = required_table_size(size, 16)
    bitmaps = [dict(name=b"b%05d" % i, granularity_bits=16, table_size=table, flags=AUTO, entries={})
               for i in range(count)]
    return write_image(path, size, bitmaps)


def findings_image(path):
    size = 24 << 30  # 96 table entries at 64 KiB granularity and 512-byte clusters
    table = required_table_size(size, 16)
    assert table == 96
    shared = {i: 0x2 for i in range(table)}  # bit 1 is reserved in a bitmap table entry
    bitmaps = [dict(name=b"f%04d" % i, granularity_bits=16, table_size=table, flags=AUTO,
                    entries=shared if i == 0 else {}, **({} if i == 0 else {"share": 0}))
               for i in range(4096)]
    return write_image(path, size, bitmaps)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("table", "bitmaps", "findings"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "table":
        n = table_image(argv[2])
    elif argv[1] == "findings":
        n = findings_image(argv[2])
    else:
        count = int(argv[3]) if len(argv) > 3 else 65535
        if not 1 <= count <= 65535:
            print("mkimages.py: bitmap count must be 1..65535", file=sys.stderr)
            return 2
        n = bitmaps_image(argv[2], count)
    print(f"{argv[2]}: {n} bytes apparent, {os.stat(argv[2]).st_blocks * 512} allocated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
