#!/usr/bin/env python3
"""make-check-cases.py OUTDIR [--only NAME,...] [--jobs N]: build the qemu-img check agreement corpus.

Every case of table 4.2 of the qemu-check-map notes (qemu-check-map.md, the project reference, "Cases run on
qemu-img 7.2.22") whose image `qemu-img check` opens read-only, the ones it refuses to open, and the
hand cases "unaligned header size", "huge virtual" and "size rounding" of 4.3, made with the real
qemu-img / qemu-io (Debian 12, QEMU 7.2) and q2.py beside this script.

Left out: the repair cases (r_*, *_fix, lazy_crash_repair: they need -r), the human-output cases
(h_*), backing_loop (hangs qemu-img), raw_format_check (not qcow2) and locking (needs a background
writer).

Each case NAME is built in OUTDIR/NAME/ (deleted first), the image is OUTDIR/NAME/t.qcow2 (paths:
OUTDIR/paths/a/t.qcow2), backing and data files lie beside it under the recipe's relative names.
OUTDIR/manifest.json lists the cases built:
    {"name": ..., "image": "NAME/t.qcow2", "opens": true|false, "notes": ...[, "secret": "abc"]}
`opens` says whether `qemu-img check -U --output=json` prints JSON (from the notes), when run in
OUTDIR/NAME as the notes did: QEMU opens an external data file name (t.data) relative to the current
directory, not to the image, so the datafile cases do not open from anywhere else. An image with
"secret" is LUKS-encrypted and must be opened with
    --object secret,id=sec0,data=SECRET --image-opts driver=qcow2,file.filename=IMAGE,encrypt.key-secret=sec0

Recipes are written in the notation of section 4.1 of the notes and interpreted here (no shell):
    mk F [SIZE] [OPTS]   qemu-img create -f qcow2 [OPTS] F [SIZE]
    io F [c1; c2]        qemu-io -c 'c1' -c 'c2' F
    t                    t.qcow2 (also a/t for a/t.qcow2)
    BASE                 mk t 1M ; io t [write -P 1 0 192k]
    B192                 io t [write -P 1 0 192k]  (BASE without its mk; 4.1 does not spell it out,
                         the verbatim recipes in qemu-check-map-cases.md do)
    SRC                  src.raw: sparse 1 MiB, b'A' x 128 KiB at 0, 64 KiB of pseudo-random bytes
                         at 192 KiB (seeded, so that the corpus is reproducible; the notes used
                         os.urandom) and b'B' x 4 KiB at 320 KiB
    PY{code}             Python with q2.py's names, P = the image path and q = Q2(P)
    ... || true          the step may fail (also `|| echo snapfail`)
    sigraise 9           qemu-io kills itself; the step must end with SIGKILL and no error message
    $PWD, $(( ... ))     the case directory, integer arithmetic
Any other failing step stops with a message naming the case and a non-zero exit status.

Deterministic except for what qemu writes from the clock or the RNG: snapshot dates and the LUKS
keyslots (and backing_abs holds the absolute path of OUTDIR). The check results depend on none of
these. The whole corpus takes about 7 seconds on 2 cores, most of it encrypted_luks (two PBKDF2
runs of about 2.5 s, in parallel with the rest); the two 1 TiB files are sparse (8 KiB on disk
each, but do not checksum or copy them without --sparse). Python standard library only.
"""

import argparse
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import q2  # noqa: E402  (beside this script)

LUKS_SECRET = "abc"
STEP_TIMEOUT = 120  # seconds; the slowest step (LUKS create) takes about 5


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # where in the notes
    opens: bool  # qemu-img check -U --output=json prints JSON
    recipe: str
    notes: str


# Table 4.2, in its order, minus the cases left out (see the docstring). The recipes are the table's,
# with three edits: bitmap_autoclear_cleared spells out "clear autoclear bit 0 (header byte 88)",
# bitmap_inuse_crash loses its trailing " ; ", encrypted_luks is the two commands of
# qemu-check-map-cases.md (file.filename=t.qcow2, without the "check/map with ..." remark).
CASES = [
    Case('fresh', "4.2 #1", True,
         'mk t 1M',
         'file is 196616 B; end counts the L1 cluster'),
    Case('fresh_zero_size', "4.2 #2", True,
         'mk t 0',
         'l1_size 0; no total-clusters key'),
    Case('written', "4.2 #3", True,
         'mk t 1M ; io t [write -P 0xaa 0 64k; write -P 0xbb 192k 128k; write -P 1 1000k 4k]',
         'guest gaps are not fragmentation'),
    Case('zero_write', "4.2 #4", True,
         'mk t 1M ; io t [write -P 0xaa 0 128k; write -z 0 64k; write -z 256k 64k; write -z -u 64k 64k]',
         'cluster 0 ZERO_ALLOC (COPIED kept), cluster 1 ZERO_PLAIN via -u'),
    Case('zero_write_unmap_alloc', "4.2 #5", True,
         'mk t 1M ; io t [write -P 0xaa 0 192k; write -z -u 64k 64k]',
         ''),
    Case('discard', "4.2 #6", True,
         'mk t 1M ; io t [write -P 0xaa 0 256k; discard 64k 64k; discard 192k 64k]',
         ''),
    Case('discard_partial', "4.2 #7", True,
         'mk t 1M ; io t [write -P 0xaa 0 256k; discard 4k 8k]',
         ''),
    Case('compressed_zlib', "4.2 #8", True,
         'SRC ; qemu-img convert -c -O qcow2 src.raw t',
         'human map: "File contains external, encrypted or compressed clusters." rc 1; host cluster 5 refcount 3'),
    Case('compressed_zstd', "4.2 #9", True,
         'SRC ; qemu-img convert -c -O qcow2 -o compression_type=zstd src.raw t',
         'incompatible bit 3; identical counts'),
    Case('compressed_mixed', "4.2 #10", True,
         'SRC ; qemu-img convert -c -O qcow2 src.raw t ; io t [write -P 0x11 512k 128k; write -P 0x12 64k 64k]',
         ''),
    Case('compressed_qemuio', "4.2 #11", True,
         'mk t 1M ; io t [write -c -P 0x11 0 64k; write -c -P 0x22 64k 64k; write -P 0x33 128k 64k; write -c -P 0x44 192k 64k]',
         ''),
    Case('extl2_partial', "4.2 #12", True,
         'mk t 1M -o extended_l2=on ; io t [write -P 0xaa 0 2k; write -P 0xbb 8k 4k; write -z 16k 2k; write -P 0xcc 64k 64k; write -z 200k 8k]',
         ''),
    Case('extl2_discard', "4.2 #13", True,
         'mk t 1M -o extended_l2=on ; io t [write -P 0xaa 0 128k; discard 64k 64k; write -z -u 4k 4k]',
         ''),
    Case('extl2_backing', "4.2 #14", True,
         'mk b.qcow2 1M ; io b.qcow2 [write -P 0x55 0 1M] ; mk t -o extended_l2=on -b b.qcow2 -F qcow2 ; io t [write -P 0xaa 4k 2k; write -P 0xab 64k 4k]',
         ''),
    Case('extl2_cs2M_partial', "4.2 #15", True,
         'mk t 8M -o extended_l2=on,cluster_size=2M ; io t [write -P 0xaa 0 64k; write -P 0xbb 192k 64k]',
         'file ends 10 MiB+256 KiB < cluster end: legal'),
    Case('cs512', "4.2 #16", True,
         'mk t 1M -o cluster_size=512 ; io t [write -P 0xaa 0 4k; write -P 0xbb 300k 1k; write -P 0xcc 700k 512]',
         ''),
    Case('cs512_big', "4.2 #17", True,
         'mk t 64M -o cluster_size=512 ; io t [write -P 0xaa 0 1M; write -P 0xbb 40M 1M]',
         '66 map entries (64 data, one per L2 table); frag 0 (per-L2 reset)'),
    Case('cs2M', "4.2 #18", True,
         'mk t 16M -o cluster_size=2M ; io t [write -P 0xaa 0 4k; write -P 0xbb 4M 2M; write -P 0xcc 15M 4k]',
         ''),
    Case('rc1', "4.2 #19", True,
         'mk t 1M -o refcount_bits=1 ; io t [write -P 0xaa 0 128k]',
         ''),
    Case('rc64', "4.2 #20", True,
         'mk t 1M -o refcount_bits=64 ; io t [write -P 0xaa 0 128k]',
         ''),
    Case('rc1_snapshot', "4.2 #21", True,
         'mk t 1M -o refcount_bits=1 ; io t [write -P 0xaa 0 128k] ; qemu-img snapshot -c s1 t || echo snapfail',
         'snapshot -c fails "-22 (Invalid argument)" and leaks 1 cluster'),
    Case('compat010', "4.2 #22", True,
         'mk t 1M -o compat=0.10 ; io t [write -P 0xaa 0 128k; write -z 64k 64k; discard 0 64k]',
         'v2: write -z / discard deallocate (no backing)'),
    Case('snap1', "4.2 #23", True,
         'mk t 1M ; io t [write -P 0xaa 0 192k] ; qemu-img snapshot -c s1 t',
         'L2 + data refcount 2, COPIED cleared; sn L1 + table refcount 1'),
    Case('snap1_cow', "4.2 #24", True,
         'mk t 1M ; io t [write -P 0xaa 0 192k] ; qemu-img snapshot -c s1 t ; io t [write -P 0xbb 64k 64k; write -P 0xcc 512k 64k]',
         ''),
    Case('snap2_delete', "4.2 #25", True,
         'mk t 1M ; io t [write -P 0xaa 0 192k] ; qemu-img snapshot -c s1 t ; io t [write -P 0xbb 64k 64k] ; qemu-img snapshot -c s2 t ; qemu-img snapshot -d s1 t',
         ''),
    Case('snap_vmstate_like', "4.2 #26", True,
         'mk t 1M ; io t [write -P 0xaa 0 64k] ; qemu-img snapshot -c s1 t ; qemu-img snapshot -c s2 t ; qemu-img snapshot -c s3 t',
         ''),
    Case('chain3', "4.2 #27", True,
         'mk base.qcow2 1M ; io base.qcow2 [write -P 1 0 256k; write -z 512k 64k] ; mk mid.qcow2 -b base.qcow2 -F qcow2 ; io mid.qcow2 [write -P 2 64k 64k; write -z 128k 64k; discard 192k 64k] ; mk t -b mid.qcow2 -F qcow2 ; io t [write -P 3 0 4k]',
         'human map lists t.qcow2 and mid.qcow2 rows'),
    Case('chain_short_backing', "4.2 #28", True,
         'mk base.qcow2 256k ; io base.qcow2 [write -P 1 0 256k] ; mk t 1M -b base.qcow2 -F qcow2 ; io t [write -P 3 0 4k; write -P 4 768k 64k]',
         ''),
    Case('chain_short_backing_mid', "4.2 #29", True,
         'mk base.qcow2 256k ; io base.qcow2 [write -P 1 0 256k] ; mk mid.qcow2 512k -b base.qcow2 -F qcow2 ; mk t 1M -b mid.qcow2 -F qcow2',
         ''),
    Case('chain_raw_backing', "4.2 #30", True,
         "qemu-img create -f raw base.raw 1M ; qemu-io -f raw -c 'write -P 1 0 64k' -c 'write -P 2 512k 4k' base.raw ; mk t -b base.raw -F raw ; io t [write -P 3 128k 64k]",
         'raw holes are present+zero with offsets'),
    Case('chain_raw_backing_short', "4.2 #31", True,
         "qemu-img create -f raw base.raw 100000 ; qemu-io -f raw -c 'write -P 1 0 4k' base.raw ; mk t 1M -b base.raw -F raw",
         'raw size 100000 behaves as 100352'),
    Case('paths', "4.2 #32", True,
         'mkdir -p a/b c ; mk c/base.qcow2 1M ; mk a/b/mid.qcow2 -b ../../c/base.qcow2 -F qcow2 ; mk a/t -b b/mid.qcow2 -F qcow2',
         'image a/t.qcow2 (the recipe\'s layout); info: full-backing-filename a/b/mid.qcow2, a/b/../../c/base.qcow2'),
    Case('missing_backing', "4.2 #33", False,
         'mk base.qcow2 1M ; mk t -b base.qcow2 -F qcow2 ; rm base.qcow2',
         'check/map: "Could not open backing file: Could not open \'base.qcow2\'"; info chain rc 1; plain info OK'),
    Case('missing_backing_mid', "4.2 #34", False,
         'mk base.qcow2 1M ; mk mid.qcow2 -b base.qcow2 -F qcow2 ; mk t -b mid.qcow2 -F qcow2 ; rm base.qcow2',
         'check: open fails, base.qcow2 (backing file of mid.qcow2) is missing'),
    Case('backing_abs', "4.2 #36", True,
         'mk base.qcow2 1M ; mk t -b $PWD/base.qcow2 -F qcow2',
         'backing file name is the absolute path of base.qcow2 (depends on OUTDIR); doc records no check output'),
    Case('backing_noformat', "4.2 #37", True,
         'mk base.qcow2 1M ; mk t -b base.qcow2 -F qcow2 ; qemu-img rebase -u -b base.qcow2 t || true',
         'rebase -u without -F (may fail); doc records no check output'),
    Case('datafile', "4.2 #38", True,
         'mk t 1M -o data_file=t.data ; io t [write -P 1 0 64k; write -P 2 256k 128k; write -z 512k 64k; write -P 3 640k 64k; write -z -u 640k 64k]',
         'offsets are identity offsets in t.data; human File column t.data; data file name t.data is relative to the current directory: check from the case directory'),
    Case('datafile_raw', "4.2 #39", True,
         'mk t 1M -o data_file=t.data,data_file_raw=on ; io t [write -P 1 0 64k; write -P 2 256k 128k; write -z 512k 64k]',
         'all 16 clusters preallocated in L2; data file name t.data is relative to the current directory: check from the case directory'),
    Case('datafile_raw_existing', "4.2 #40", True,
         'python3 -c "f=open(\'t.data\',\'wb\');f.write(b\'X\'*65536);f.truncate(1<<20)" ; mk t 1M -o data_file=t.data,data_file_raw=on',
         'data file name t.data is relative to the current directory: check from the case directory'),
    Case('datafile_missing', "4.2 #41", False,
         'mk t 1M -o data_file=t.data ; io t [write -P 1 0 64k] ; rm t.data',
         'check: open fails, data file t.data is missing; info works (data file not opened under NO_IO)'),
    Case('datafile_snapshot_attempt', "4.2 #42", True,
         'mk t 1M -o data_file=t.data ; io t [write -P 1 0 64k] ; qemu-img snapshot -c s1 t || true',
         'snapshot creation refused; data file name t.data is relative to the current directory: check from the case directory'),
    Case('prealloc_metadata', "4.2 #43", True,
         'mk t 1M -o preallocation=metadata',
         'heuristic true: data+zero; human map prints nothing'),
    Case('prealloc_metadata_written', "4.2 #44", True,
         'mk t 1M -o preallocation=metadata ; io t [write -P 1 64k 64k; write -P 2 512k 4k]',
         ''),
    Case('prealloc_falloc', "4.2 #45", True,
         'mk t 1M -o preallocation=falloc',
         'heuristic false (blocks allocated)'),
    Case('prealloc_full', "4.2 #46", True,
         'mk t 1M -o preallocation=full',
         ''),
    Case('prealloc_metadata_big', "4.2 #47", True,
         'mk t 64M -o preallocation=metadata ; io t [write -P 1 0 1M]',
         ''),
    Case('prealloc_meta_extl2', "4.2 #48", True,
         'mk t 1M -o preallocation=metadata,extended_l2=on ; io t [write -P 1 0 4k]',
         'ext-L2 prealloc = UNALLOCATED_ALLOC subclusters'),
    Case('lazy_crash', "4.2 #49", True,
         'mk t 1M -o lazy_refcounts=on ; io t [write -P 1 0 1M; sigraise 9] || true',
         '16 x (ERROR cluster + ERROR OFLAG_COPIED); dirty-flag true'),
    Case('lazy_crash2', "4.2 #50", True,
         'mk t 1M -o lazy_refcounts=on ; io t [write -P 1 0 128k; flush; write -P 2 256k 64k; sigraise 9] || true',
         ''),
    Case('lazy_crash_open_rw', "4.2 #52", True,
         'mk t 1M -o lazy_refcounts=on ; io t [write -P 1 0 1M; sigraise 9] || true ; io t [read 0 4k]',
         'qemu-io RW open repaired silently'),
    Case('nolazy_crash', "4.2 #53", True,
         'mk t 1M ; io t [write -P 1 0 1M; sigraise 9] || true',
         ''),
    Case('bitmap', "4.2 #54", True,
         'mk t 1M ; io t [write -P 1 0 128k] ; qemu-img bitmap --add t b0 ; qemu-img bitmap --add -g 512 t b1 ; io t [write -P 2 512k 64k]',
         'bitmap dir is last 64 B of file; end > file_len'),
    Case('bitmap_autoclear_cleared', "4.2 #55", True,
         'mk t 1M ; io t [write -P 1 0 128k] ; qemu-img bitmap --add t b0 ; qemu-img bitmap --add -g 512 t b1 ; io t [write -P 2 512k 64k] ; PY{poke64(P, 88, q.autoclear & ~1)}',
         'warning + unterminated "Some clusters may be leaked..." on stderr (also for map/info)'),
    Case('bitmap_inuse_crash', "4.2 #57", True,
         'mk t 1M ; io t [write -P 1 0 128k] ; qemu-img bitmap --add t b0 ; qemu-img bitmap --add -g 512 t b1 ; io t [write -P 2 512k 64k] ; io t [write -P 3 256k 64k; sigraise 9] || true',
         'in-use bitmap not reported by check'),
    Case('c_leak', "4.2 #58", True,
         'BASE ; PY{import os; os.truncate(P, 0x90000); set_refcount(P, 8, 1)}',
         'stderr: Leaked cluster 8 refcount=1 reference=0'),
    Case('c_leak_beyond_eof', "4.2 #59", True,
         'BASE ; PY{set_refcount(P, 12, 1)}',
         'refcount 1 on cluster 12 (past EOF) invisible'),
    Case('c_refcount0_used', "4.2 #60", True,
         'BASE ; PY{set_refcount(P, 6, 0)}',
         'ERROR cluster 6 refcount=0 reference=1 + ERROR OFLAG_COPIED'),
    Case('c_refcount2_unshared', "4.2 #61", True,
         'BASE ; PY{set_refcount(P, 6, 2)}',
         'Leaked cluster 6 refcount=2 reference=1 + OFLAG_COPIED'),
    Case('c_l2_past_eof', "4.2 #62", True,
         'BASE ; PY{poke64(P, 0x40000 + 3*8, (1<<63) | 0x1000000)}',
         'exceeding-EOF + OFLAG_COPIED refcount=0; map prints the bogus offset'),
    Case('c_l2_past_eof_nocopied', "4.2 #63", True,
         'BASE ; PY{poke64(P, 0x40000 + 3*8, 0x1000000)}',
         'only exceeding-EOF'),
    Case('c_l2_at_eof', "4.2 #64", True,
         'BASE ; PY{poke64(P, 0x40000 + 3*8, (1<<63) | 0x80000)}',
         'cluster starting at file_len = past EOF'),
    Case('c_l2_unaligned_data', "4.2 #65", True,
         'BASE ; PY{poke64(P, 0x40000 + 1*8, (1<<63) | 0x60200)}',
         'check: alignment + cluster 7 reference=2; map: Cluster allocation offset 0x60200 unaligned'),
    Case('c_l1_unaligned', "4.2 #66", True,
         'BASE ; PY{poke64(P, 0x30000, (1<<63) | 0x40200)}',
         'map: L2 table offset 0x40200 unaligned'),
    Case('c_double_ref', "4.2 #67", True,
         'BASE ; PY{poke64(P, 0x40000 + 5*8, (1<<63) | 0x50000)}',
         'ERROR cluster 5 refcount=1 reference=2; map shows offset 327680 twice'),
    Case('c_copied_missing', "4.2 #68", True,
         'BASE ; PY{poke64(P, 0x40000 + 0*8, 0x50000)}',
         'ERROR OFLAG_COPIED data cluster: l2_entry=50000 refcount=1'),
    Case('c_copied_missing_l1', "4.2 #69", True,
         'BASE ; PY{poke64(P, 0x30000, 0x40000)}',
         'ERROR OFLAG_COPIED L2 cluster: l1_index=0 ...'),
    Case('c_reftable_points_to_l2', "4.2 #70", True,
         'BASE ; PY{poke64(P, 0x10000, 0x40000)}',
         'refblock = L2 table: refblock refcount=2 + 8 mismatches + 4 COPIED'),
    Case('c_l1_points_to_refblock', "4.2 #71", True,
         'BASE ; PY{poke64(P, 0x30000, (1<<63) | 0x20000)}',
         'refblock parsed as L2'),
    Case('c_truncated_data', "4.2 #72", True,
         'BASE ; PY{import os; os.truncate(P, 0x60000)}',
         'no COPIED errors: on-disk refcounts still 1'),
    Case('c_truncated_l2', "4.2 #73", True,
         'BASE ; PY{import os; os.truncate(P, 0x40000)}',
         ''),
    Case('c_truncated_midcluster', "4.2 #74", True,
         'BASE ; PY{import os; os.truncate(P, 0x78000)}',
         'heuristic fires: tail past EOF reported PZD'),
    Case('c_truncated_header_only', "4.2 #75", True,
         'BASE ; PY{import os; os.truncate(P, 0x10000)}',
         'opens fine; L1 and reftable past EOF'),
    Case('c_reftable_unaligned', "4.2 #76", True,
         'BASE ; PY{poke64(P, 0x10000, 0x20200)}',
         'JSON printed, then "qemu-img: Check failed"'),
    Case('c_reftable_reserved', "4.2 #77", True,
         'BASE ; PY{poke64(P, 0x10000, 0x20001)}',
         ''),
    Case('c_refblock_outside', "4.2 #78", True,
         'BASE ; PY{poke64(P, 0x10008, 0x1000000)}',
         ''),
    Case('c_l1_reserved', "4.2 #80", True,
         'BASE ; PY{poke64(P, 0x30000, (1<<63) | (1<<62) | 0x40000)}',
         ''),
    Case('c_l2_reserved', "4.2 #81", True,
         'BASE ; PY{poke64(P, 0x40000 + 8, (1<<63) | 0x60000 | 0x2)}',
         ''),
    Case('c_l2_zero_flag_v2', "4.2 #82", True,
         'mk t 1M -o compat=0.10 ; B192 ; PY{poke64(P, 0x40000 + 8, (1<<63) | 0x60000 | 0x1)}',
         'check silent; map EIO "Zero cluster entry found in pre-v3 image"'),
    Case('c_compressed_copied', "4.2 #83", True,
         'mk t 1M ; io t [write -c -P 1 0 64k] ; PY{q=Q2(P); e=q.u64(0x40000); poke64(P, 0x40000, e | (1<<63))}',
         ''),
    Case('c_extl2_bad_bitmap', "4.2 #84", True,
         'mk t 1M -o extended_l2=on ; io t [write -P 1 0 64k] ; PY{poke64(P, 0x40000 + 8, 0x00000001ffffffff)}',
         'map EIO "Invalid cluster entry found"'),
    Case('c_extl2_unalloc_with_allocbits', "4.2 #85", True,
         'mk t 1M -o extended_l2=on ; io t [write -P 1 0 64k] ; PY{poke64(P, 0x40000 + 16 + 8, 0x3)}',
         ''),
    Case('c_corrupt_bit', "4.2 #86", True,
         'BASE ; PY{q=Q2(P); poke64(P, 72, q.incompat | 2)}',
         'corrupt bit not reported; qemu-io RW open refused'),
    Case('c_rc1_overflow', "4.2 #88", True,
         'mk t 1M -o refcount_bits=1 ; B192 ; PY{poke64(P, 0x40000 + 5*8, (1<<63) | 0x50000)}',
         'ERROR: overflow cluster offset=0x50000'),
    Case('c_rc1_overflow_nocopied', "4.2 #89", True,
         'mk t 1M -o refcount_bits=1 ; B192 ; PY{poke64(P, 0x40000 + 5*8, 0x50000)}',
         ''),
    Case('c_rc2_overflow', "4.2 #90", True,
         'mk t 1M -o refcount_bits=2 ; B192 ; PY{[poke64(P, 0x40000 + i*8, 0x50000) for i in range(3,8)]}',
         '3 overflows + 1 mismatch + 5 COPIED'),
    Case('s_l1_unaligned', "4.2 #91", True,
         'BASE ; qemu-img snapshot -c s1 t ; PY{so=q.snap_off; l1=q.u64(so); poke64(P, so, l1 + 0x200)}',
         ''),
    Case('s_l1_too_large', "4.2 #92", True,
         "BASE ; qemu-img snapshot -c s1 t ; PY{import struct; so=q.snap_off; poke(P, so+8, struct.pack('>I', 0x400000+1))}",
         ''),
    Case('s_incomplete_extra', "4.2 #93", True,
         "BASE ; qemu-img snapshot -c s1 t ; PY{import struct; so=q.snap_off; poke(P, so+36, struct.pack('>I', 8))}",
         ''),
    Case('s_nb_snapshots_huge', "4.2 #94", False,
         "BASE ; qemu-img snapshot -c s1 t ; PY{import struct; poke(P, 60, struct.pack('>I', 70000))}",
         '"ERROR snapshot table too large" + hint, "Check failed: File too large"'),
    Case('s_table_offset_unaligned', "4.2 #95", False,
         "BASE ; qemu-img snapshot -c s1 t ; PY{import struct; poke(P, 64, struct.pack('>Q', q.snap_off + 3))}",
         '"Check failed: Invalid argument"; map: open fails'),
    Case('s_table_past_eof', "4.2 #96", True,
         "BASE ; qemu-img snapshot -c s1 t ; PY{import struct; poke(P, 64, struct.pack('>Q', 0x10000000))}",
         'zeros parsed as 1 empty snapshot'),
    Case('s_refcount_dropped', "4.2 #97", True,
         'BASE ; qemu-img snapshot -c s1 t ; PY{set_refcount(P, 5, 1)}',
         ''),
    Case('s_l2_shared_copied', "4.2 #98", True,
         'BASE ; qemu-img snapshot -c s1 t ; PY{poke64(P, 0x40000, (1<<63) | 0x50000)}',
         ''),
    Case('big_file_2p31_clusters', "4.2 #99", False,
         'mk t 1M -o cluster_size=512 ; io t [write -P 1 0 4k] ; truncate -s $(( (1<<31) * 512 + 512 )) t',
         'file 2^31 x 512 + 512 B (1 TiB, sparse): "Check failed: File too large"'),
    Case('big_file_just_below', "4.2 #100", True,
         'mk t 1M -o cluster_size=512 ; io t [write -P 1 0 4k] ; truncate -s $(( 2147483647 * 512 )) t',
         'file exactly INT_MAX 512 B clusters (1 TiB, sparse): OK'),
    Case('chain_compressed_backing', "4.2 #112", True,
         'python3 -c "f=open(\'src.raw\',\'wb\');f.write(b\'A\'*262144);f.truncate(1<<20)" ; qemu-img convert -c -O qcow2 src.raw base.qcow2 ; mk t -b base.qcow2 -F qcow2 ; io t [write -P 3 64k 64k]',
         ''),
    Case('encrypted_luks', "4.2 #113", True,
         "qemu-img create -f qcow2 --object secret,id=sec0,data=abc -o encrypt.format=luks,encrypt.key-secret=sec0 t 1M ; qemu-io --object secret,id=sec0,data=abc --image-opts driver=qcow2,file.filename=t.qcow2,encrypt.key-secret=sec0 -c 'write -P 1 0 64k'",
         'check needs --object secret,id=sec0,data=abc --image-opts driver=qcow2,file.filename=...,encrypt.key-secret=sec0; filename = image-opts string; map has no offsets'),
    Case('chain_backing_diff_cluster', "4.2 #114", True,
         'mk base.qcow2 1M -o cluster_size=4k ; io base.qcow2 [write -P 1 0 12k; write -P 2 100k 4k] ; mk t -b base.qcow2 -F qcow2 ; io t [write -P 3 64k 4k]',
         ''),
    Case('frag_compressed_between', "4.2 #115", True,
         'mk t 1M ; io t [write -P 1 0 192k; write -c -P 2 192k 64k] ; PY{c=q.u64(0x40000+3*8); poke64(P,0x40000+3*8,(1<<63)|0x70000); poke64(P,0x40000+2*8,(1<<63)|0x60000); poke64(P,0x40000+1*8,c)}',
         'compressed does not reset contiguity'),
    Case('frag_reverse_order', "4.2 #116", True,
         'mk t 1M ; io t [write -P 1 192k 64k; write -P 2 128k 64k; write -P 3 64k 64k; write -P 4 0 64k]',
         ''),
    Case('frag_two_l2_tables', "4.2 #117", True,
         'mk t 8M -o cluster_size=4k ; io t [write -P 1 2040k 16k]',
         'non-contiguous across tables, frag 0'),
    Case('unknown_incompat', "4.2 #119", False,
         'mk t 1M ; PY{poke64(P, 72, q.incompat | (1<<40))}',
         'incompatible bit 40 unknown to QEMU: all commands rc 1 at open'),
    Case('dirty_no_lazy', "4.2 #120", True,
         'mk t 1M ; io t [write -P 1 0 64k] ; PY{poke64(P, 72, q.incompat | 1)}',
         'dirty bit ignored by check'),
    Case('v2_basic', "4.2 #121", True,
         'mk t 1M -o compat=0.10 ; io t [write -P 1 0 64k; write -P 1 256k 64k] ; qemu-img snapshot -c s1 t',
         ''),
    Case('bitmap_table_entry_unaligned', "4.2 #122", False,
         'mk t 1M ; io t [write -P 1 0 128k] ; qemu-img bitmap --add t b0 ; qemu-img bitmap --add -g 512 t b1 ; io t [write -P 2 512k 64k] ; PY{poke64(P, 0xe0000, 0xd0200)}',
         "open fails (bitmap load): Could not read bitmap_table table from image for bitmap 'b1'"),
    Case('bitmap_data_refcount0', "4.2 #123", True,
         'mk t 1M ; io t [write -P 1 0 128k] ; qemu-img bitmap --add t b0 ; qemu-img bitmap --add -g 512 t b1 ; io t [write -P 2 512k 64k] ; PY{set_refcount(P, 13, 0)}',
         'no COPIED check for bitmaps: 1 corruption'),
    Case('bitmap_dir_refcount2', "4.2 #124", True,
         'mk t 1M ; io t [write -P 1 0 128k] ; qemu-img bitmap --add t b0 ; qemu-img bitmap --add -g 512 t b1 ; io t [write -P 2 512k 64k] ; PY{set_refcount(P, 15, 2)}',
         ''),
    Case('l2_entry_beyond_virtual_size', "4.2 #125", True,
         'BASE ; PY{import os; os.truncate(P, 0x90000); set_refcount(P, 8, 1); poke64(P, 0x40000+20*8, (1<<63)|0x80000)}',
         'entry 20 of 16-cluster disk counted in alloc'),
    Case('shrink', "4.2 #126", True,
         'mk t 1M ; io t [write -P 1 0 1M] ; qemu-img resize --shrink t 300k',
         'resize --shrink 300k: total 5'),
    # Section 4.3 (run by hand in the notes; their results there are partial).
    Case('unaligned_header_size', "4.3 unaligned header size", True,
         'mk t 1M ; io t [write -P 1 0 1M] ; PY{poke64(P, 24, 1000001)}',
         'header size 1000001 (not a multiple of 512): virtual 999936, tot 16, alloc 16'),
    Case('unaligned_header_size_300', "4.3 unaligned header size", True,
         'mk t 1M ; io t [write -P 1 0 1M] ; PY{poke64(P, 24, 300)}',
         'header size 300: virtual 0, no total-clusters, alloc 16'),
    Case('huge_virtual', "4.3 huge virtual", True,
         'mk t 200T ; io t [write -P 1 150T 64k]',
         '200 TiB virtual (sparse, 3.6 MB file): tot 3355443200 > 2^31'),
    Case('size_rounding', "4.3 size rounding", True,
         'mk t 1000000 ; io t [write -P 1 900000 50000]',
         'size 1000000 rounds to virtual 1000448; tot 16 (image named u.qcow2 in the notes)'),
]

CASE_BY_NAME = {c.name: c for c in CASES}
IMAGE_OF = {'paths': 'a/t.qcow2'}  # the one case whose image is not NAME/t.qcow2
SECRET_OF = {'encrypted_luks': LUKS_SECRET}

SRC_SEED = 0x51C0  # SRC's 64 KiB of "random" bytes


class StepFailed(Exception):
    pass


def split_top(text, sep=';'):
    """Split text at sep outside quotes, [...] and {...}; drop empty parts."""
    parts, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in '\'"':
            quote = ch
        elif ch in '[{':
            depth += 1
        elif ch in ']}':
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(''.join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        raise ValueError(f'unbalanced recipe: {text!r}')
    parts.append(''.join(cur).strip())
    return [p for p in parts if p]


def image_name(token):
    """`t` is t.qcow2 (`a/t` is a/t.qcow2), other tokens are literal."""
    return token + '.qcow2' if token == 't' or token.endswith('/t') else token


def arith(match):
    expr = match.group(1)
    if not re.fullmatch(r'[0-9<>*+\-() ]+', expr):
        raise ValueError(f'unsupported $(( {expr} ))')
    return str(eval(expr, {'__builtins__': {}}))  # digits and operators only


def expand(recipe):
    """Recipe text -> list of (step text, may_fail)."""
    steps = []
    for part in split_top(recipe):
        may_fail = False
        m = re.fullmatch(r'(.*?)\s*\|\|\s*(true|echo \w+)', part, re.S)
        if m:
            part, may_fail = m.group(1), True
        if part == 'BASE':
            steps += [('mk t 1M', False), ('io t [write -P 1 0 192k]', False)]
        elif part == 'B192':
            steps.append(('io t [write -P 1 0 192k]', False))
        else:
            steps.append((part, may_fail))
    return steps


def make_src(path):
    with open(path, 'wb') as f:
        f.truncate(1 << 20)
        f.seek(0)
        f.write(b'A' * 131072)
        f.seek(196608)
        f.write(random.Random(SRC_SEED).randbytes(65536))
        f.seek(327680)
        f.write(b'B' * 4096)


def run(argv, cwd, step, may_fail):
    env = dict(os.environ, LC_ALL='C')
    # qemu-img 7.2 fails LUKS creation now and then on a busy machine ("Unable to get accurate CPU
    # usage", from its PBKDF2 benchmark, when its thread got no CPU time measured): such a step is
    # tried up to eight times, a moment apart (three in a row failed once under a full test run).
    for attempt in range(8):
        if attempt:
            time.sleep(0.3)
        try:
            p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, errors='replace', timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise StepFailed(f'{step!r} timed out after {STEP_TIMEOUT} s')
        except OSError as e:
            raise StepFailed(f'{step!r}: cannot run {argv[0]}: {e}')
        if p.returncode == 0 or 'Unable to get accurate CPU usage' not in p.stderr:
            break
        for leftover in ('t.qcow2',):
            try:
                os.remove(os.path.join(cwd, leftover))
            except OSError:
                pass
    if 'sigraise 9' in step:
        # qemu-io prints a failed command's error on stdout ("write failed: ...", "command ... not found").
        if (p.returncode != -signal.SIGKILL or p.stderr.strip()
                or re.search(r'failed|not found|error', p.stdout, re.I)):
            raise StepFailed(f'{step!r}: expected qemu-io to be killed by SIGKILL without errors, '
                             f'got rc={p.returncode}; stdout: {p.stdout.strip()}; stderr: {p.stderr.strip()}')
    elif p.returncode != 0 and not may_fail:
        raise StepFailed(f'{step!r} (argv {shlex.join(argv)}) exited with rc={p.returncode}; '
                         f'stderr: {p.stderr.strip()}')


def do_step(step, may_fail, cwd):
    image = os.path.join(cwd, 't.qcow2')
    if step == 'SRC':
        make_src(os.path.join(cwd, 'src.raw'))
        return
    m = re.fullmatch(r'PY\{(.*)\}', step, re.S)
    if m:
        scope = {k: getattr(q2, k) for k in dir(q2) if not k.startswith('_')}
        scope['P'] = image
        scope['q'] = q2.Q2(image) if os.path.exists(image) else None
        try:
            exec(m.group(1), scope)
        except Exception as e:
            if not may_fail:
                raise StepFailed(f'{step!r} raised {type(e).__name__}: {e}')
        return
    m = re.fullmatch(r'io (\S+) \[(.*)\]', step, re.S)
    if m:
        argv = ['qemu-io']
        for cmd in split_top(m.group(2)):
            argv += ['-c', cmd]
        run(argv + [image_name(m.group(1))], cwd, step, may_fail)
        return
    step_sh = step.replace('$PWD', shlex.quote(cwd))
    step_sh = re.sub(r'\$\(\((.*?)\)\)', arith, step_sh)
    argv = shlex.split(step_sh)
    if argv[0] == 'mk':
        target = image_name(argv[1])
        rest = argv[2:]
        size = []
        if rest and not rest[0].startswith('-'):
            size, rest = [rest[0]], rest[1:]
        run(['qemu-img', 'create', '-f', 'qcow2'] + rest + [target] + size, cwd, step, may_fail)
    elif argv[0] in ('qemu-img', 'qemu-io'):
        run([argv[0]] + [image_name(a) for a in argv[1:]], cwd, step, may_fail)
    elif argv[0] == 'python3' and argv[1] == '-c':
        run([sys.executable] + argv[1:], cwd, step, may_fail)
    elif argv[0] == 'truncate' and argv[1] == '-s' and len(argv) == 4:
        os.truncate(os.path.join(cwd, image_name(argv[3])), int(argv[2]))
    elif argv[0] == 'rm' and len(argv) == 2:
        os.remove(os.path.join(cwd, argv[1]))
    elif argv[:2] == ['mkdir', '-p']:
        for d in argv[2:]:
            os.makedirs(os.path.join(cwd, d), exist_ok=True)
    else:
        raise StepFailed(f'{step!r}: unknown recipe step')


def build(case, outdir):
    cwd = os.path.join(outdir, case.name)
    if os.path.lexists(cwd):
        shutil.rmtree(cwd)
    os.makedirs(cwd)
    start = time.monotonic()
    for step, may_fail in expand(case.recipe):
        do_step(step, may_fail, cwd)
    image = os.path.join(case.name, IMAGE_OF.get(case.name, 't.qcow2'))
    if not os.path.exists(os.path.join(outdir, image)):
        raise StepFailed(f'the recipe made no {image}')
    entry = {'name': case.name, 'image': image, 'opens': case.opens,
             'notes': f'{case.source}: {case.notes}' if case.notes else case.source}
    if case.name in SECRET_OF:
        entry['secret'] = SECRET_OF[case.name]
    return entry, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('outdir')
    ap.add_argument('--only', help='comma-separated case names: build only these (an existing manifest '
                                   'keeps its other entries)')
    ap.add_argument('--jobs', type=int, default=max(2, os.cpu_count() or 2),
                    help='cases built in parallel (default: the number of CPUs, at least 2)')
    ap.add_argument('--list', action='store_true', help='print the case names and exit')
    args = ap.parse_args()

    if args.list:
        print('\n'.join(c.name for c in CASES))
        return 0
    cases = CASES
    if args.only:
        names = [n for n in args.only.split(',') if n]
        unknown = [n for n in names if n not in CASE_BY_NAME]
        if unknown:
            print(f'make-check-cases: unknown case(s): {", ".join(unknown)} (see --list)', file=sys.stderr)
            return 2
        cases = [c for c in CASES if c.name in names]
    for tool in ('qemu-img', 'qemu-io'):
        if shutil.which(tool) is None:
            print(f'make-check-cases: {tool} not found (Debian package qemu-utils)', file=sys.stderr)
            return 2

    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)
    start = time.monotonic()
    # The slow case first, so that it overlaps with the rest.
    order = sorted(cases, key=lambda c: c.name not in SECRET_OF)
    results, failures = {}, []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {c.name: pool.submit(build, c, outdir) for c in order}
        for case in cases:
            try:
                results[case.name] = futures[case.name].result()
            except (StepFailed, ValueError, OSError) as e:
                failures.append(case.name)
                print(f'make-check-cases: case {case.name}: {e}', file=sys.stderr)
    manifest_path = os.path.join(outdir, 'manifest.json')
    if failures:
        if os.path.exists(manifest_path):
            os.remove(manifest_path)
        print(f'make-check-cases: FAILED: {len(failures)} of {len(cases)} case(s): {", ".join(failures)}; '
              f'no {manifest_path}', file=sys.stderr)
        return 1
    entries = {name: r[0] for name, r in results.items()}
    if args.only and os.path.exists(manifest_path):
        # Keep the other cases of an existing manifest (in table order).
        with open(manifest_path) as f:
            for e in json.load(f):
                entries.setdefault(e['name'], e)
    manifest = [entries[c.name] for c in CASES if c.name in entries]
    tmp = manifest_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')
    os.replace(tmp, manifest_path)
    slowest = max(results.items(), key=lambda kv: kv[1][1])
    print(f'make-check-cases: built {len(cases)} case(s), manifest lists {len(manifest)}, in {outdir} '
          f'({time.monotonic() - start:.1f} s; '
          f'slowest {slowest[0]} {slowest[1][1]:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
