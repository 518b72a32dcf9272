#!/usr/bin/env python3
"""make-malformed-images.py DIR: add malformed and awkward images to a directory made by
Tests/Scripts/make-demo-images.sh, for the contract test.

Every file is derived from a demo image by patching a few bytes (no qemu needed), so the
daemon sees real qcow2 structures with exactly one thing wrong. Standard library only.

Files:
  short.qcow2             8 bytes (magic + version): unreadable, 422 (truncated)
  empty.qcow2             0 bytes: not listed (no magic), 422 when asked for
  badversion.qcow2        plain.qcow2 with version 9: 422 (unsupported_version)
  bitmap-names.qcow2      bitmaps.qcow2 with bitmap names "b/enabled" and "b\\xffdisabled"
  d5.qcow2                bitmaps.qcow2, first bitmap granularity_bits 40 (finding D5)
  badtable.qcow2          bitmaps.qcow2, second bitmap's table entry 0 = reserved bits + bit 0 (T1)
  huge.qcow2              plain.qcow2 with size 2^64-1 (u64 above 2^53 in every document)
  hugebm.qcow2            bitmaps.qcow2 with size 2^64-1 (extents and table at the u64 limits)
  zerobm.qcow2            bitmaps.qcow2 with size 0 (empty ranges)
  snap-count.qcow2        snapshots.qcow2 claiming 5 snapshots (snapshot table findings)
  uni c\u00f8de+%.qcow2      plain.qcow2 under a name that needs percent-encoding
  caf\u00e9.qcow2 twice      NFC and NFD spellings: different bytes, canonically equal strings
  \\xff.qcow2             a non-UTF-8 file name: never listed, 404 over HTTP
  outside.qcow2           symlink to /etc/passwd: 404
  inside.qcow2            symlink to plain.qcow2: served
  subdir.qcow2/           a directory: 404
  fifo.qcow2              a FIFO: 404, must never block
"""
import os
import shutil
import struct
import sys

BITMAPS_MAGIC = 0x23852875


def read(path):
    with open(path, "rb") as f:
        return bytearray(f.read())


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def bitmap_directory(img):
    """(directory offset, [entry offsets]) of the image's bitmap directory."""
    header_length = struct.unpack_from(">I", img, 100)[0]
    cluster_size = 1 << struct.unpack_from(">I", img, 20)[0]
    pos = header_length
    while pos + 8 <= cluster_size:
        magic, length = struct.unpack_from(">II", img, pos)
        if magic == 0:
            break
        if magic == BITMAPS_MAGIC:
            nb, _, _size, offset = struct.unpack_from(">IIQQ", img, pos + 8)
            entries = []
            e = offset
            for _ in range(nb):
                entries.append(e)
                extra, name_size = struct.unpack_from(">I", img, e + 20)[0], struct.unpack_from(">H", img, e + 18)[0]
                e += (24 + extra + name_size + 7) // 8 * 8
            return offset, entries
        pos += 8 + (length + 7) // 8 * 8
    raise SystemExit("no bitmaps extension")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: make-malformed-images.py DIR")
    d = sys.argv[1]
    p = lambda name: os.path.join(d, name)

    write(p("short.qcow2"), b"QFI\xfb\x00\x00\x00\x03")
    write(p("empty.qcow2"), b"")

    img = read(p("plain.qcow2"))
    struct.pack_into(">I", img, 4, 9)
    write(p("badversion.qcow2"), img)

    img = read(p("bitmaps.qcow2"))
    # Old directory copies may still hold the names in freed clusters: patching them too is harmless.
    assert b"b-enabled" in img and b"b-disabled" in img
    img = img.replace(b"b-enabled", b"b/enabled").replace(b"b-disabled", b"b\xffdisabled")
    write(p("bitmap-names.qcow2"), img)

    img = read(p("bitmaps.qcow2"))
    _, entries = bitmap_directory(img)
    img[entries[0] + 17] = 40
    write(p("d5.qcow2"), img)

    img = read(p("bitmaps.qcow2"))
    _, entries = bitmap_directory(img)
    table = struct.unpack_from(">Q", img, entries[1])[0]
    raw = struct.unpack_from(">Q", img, table)[0]
    struct.pack_into(">Q", img, table, raw | 0xFF00000000000001)
    write(p("badtable.qcow2"), img)

    img = read(p("plain.qcow2"))
    struct.pack_into(">Q", img, 24, 2**64 - 1)
    write(p("huge.qcow2"), img)

    for name, size in (("hugebm.qcow2", 2**64 - 1), ("zerobm.qcow2", 0)):
        img = read(p("bitmaps.qcow2"))
        struct.pack_into(">Q", img, 24, size)
        write(p(name), img)

    img = read(p("snapshots.qcow2"))
    struct.pack_into(">I", img, 60, 5)
    write(p("snap-count.qcow2"), img)

    shutil.copyfile(p("plain.qcow2"), p("uni c\u00f8de+%.qcow2"))
    shutil.copyfile(p("plain.qcow2"), p("caf\u00e9.qcow2"))
    shutil.copyfile(p("plain.qcow2"), p("cafe\u0301.qcow2"))
    write(os.path.join(os.fsencode(d), b"\xff.qcow2"), read(p("plain.qcow2")))

    for name, target in (("outside.qcow2", "/etc/passwd"), ("inside.qcow2", "plain.qcow2")):
        if os.path.lexists(p(name)):
            os.unlink(p(name))
        os.symlink(target, p(name))
    os.makedirs(p("subdir.qcow2"), exist_ok=True)
    if not os.path.exists(p("fifo.qcow2")):
        os.mkfifo(p("fifo.qcow2"))
    print(f"malformed images written to {d}")


if __name__ == "__main__":
    main()
