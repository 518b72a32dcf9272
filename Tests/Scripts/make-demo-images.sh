#!/usr/bin/env bash
# make-demo-images.sh DIR: fill DIR with a small set of real QCOW2 demo images for qcowscoped.
#
# Uses qemu-img / qemu-io (Debian package qemu-utils, tested with 7.2). Idempotent: every file
# this script owns is deleted and made again; other files in DIR are left alone. Runs in well
# under 5 seconds (512-byte clusters, 1-10 MiB virtual sizes, no LUKS).
#
# Files:
#   plain.qcow2           v3, 1 MiB, 512 B clusters, one 4 KiB write
#   bitmaps.qcow2         v3, 4 MiB, bitmaps b-enabled (64 KiB, auto) and b-disabled (disabled), writes
#   bitmap-in-use.qcow2   bitmap b-inuse left in-use by a simulated crash (qemu-io sigraise 9)
#   v2.qcow2              compat=0.10
#   base.qcow2            backing file of overlay.qcow2
#   overlay.qcow2         overlay with -b base.qcow2 -F qcow2
#   snapshots.qcow2       two internal snapshots snap-one, snap-two
#   zstd.qcow2            compression_type=zstd with one compressed cluster
#   notes.txt             not a qcow2 image: the daemon must skip it
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
for tool in qemu-img qemu-io; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install qemu-utils)" >&2; exit 1; }
done

dir=$1
mkdir -p "$dir"
cd "$dir"
export LC_ALL=C

owned=(plain.qcow2 bitmaps.qcow2 bitmap-in-use.qcow2 v2.qcow2 base.qcow2 overlay.qcow2
       snapshots.qcow2 zstd.qcow2 notes.txt)
rm -f -- "${owned[@]}"

small=cluster_size=512

create() { # create NAME SIZE [qemu-img create options...]
    local name=$1 size=$2
    shift 2
    qemu-img create -q -f qcow2 "$@" "$name" "$size"
}

io() { # io NAME COMMAND... (each COMMAND becomes one -c)
    local name=$1
    shift
    local args=()
    for command in "$@"; do args+=(-c "$command"); done
    qemu-io -f qcow2 "${args[@]}" "$name" >/dev/null
}

# Plain v3 image.
create plain.qcow2 1M -o "$small"
io plain.qcow2 'write -P 0xab 0 4k'

# Two bitmaps: one enabled, one disabled, then writes (only b-enabled records them).
create bitmaps.qcow2 4M -o "$small"
qemu-img bitmap --add -g 65536 bitmaps.qcow2 b-enabled
qemu-img bitmap --add -g 65536 --disable bitmaps.qcow2 b-disabled
io bitmaps.qcow2 'write -P 0xab 0 64k' 'write -P 0xcd 1M 4k' 'write -P 0xef 3M 512'

# In-use bitmap: write, then kill qemu-io with SIGKILL before it can store the bitmap.
create bitmap-in-use.qcow2 1M -o "$small"
qemu-img bitmap --add bitmap-in-use.qcow2 b-inuse
io bitmap-in-use.qcow2 'write -P 0xab 0 4k'
set +e
# The subshell (not exec-optimised thanks to "exit $?") absorbs bash's "Killed" message.
(qemu-io -f qcow2 -c 'write -P 0xee 64k 4k' -c 'sigraise 9' bitmap-in-use.qcow2 >/dev/null; exit $?) 2>/dev/null
status=$?
set -e
if [[ $status -ne 137 ]]; then
    echo "$0: expected qemu-io to die by SIGKILL (137), got $status" >&2
    exit 1
fi
if ! qemu-img info bitmap-in-use.qcow2 | grep -q 'in-use'; then
    echo "$0: bitmap-in-use.qcow2 has no in-use bitmap after the crash" >&2
    exit 1
fi

# Version 2 image.
create v2.qcow2 1M -o "compat=0.10,$small"
io v2.qcow2 'write -P 0xab 0 4k'

# Backing chain: base + overlay (relative backing name, explicit backing format).
create base.qcow2 1M -o "$small"
io base.qcow2 'write -P 0xaa 0 64k'
create overlay.qcow2 1M -o "$small" -b base.qcow2 -F qcow2
io overlay.qcow2 'write -P 0xbb 32k 4k'

# Internal snapshots.
create snapshots.qcow2 1M -o "$small"
io snapshots.qcow2 'write -P 0x11 0 4k'
qemu-img snapshot -c snap-one snapshots.qcow2
io snapshots.qcow2 'write -P 0x22 0 4k'
qemu-img snapshot -c snap-two snapshots.qcow2

# zstd compression type with one compressed cluster.
create zstd.qcow2 1M -o "compression_type=zstd,$small"
io zstd.qcow2 'write -P 0xab 0 4k' 'write -c -P 0x5a 8k 512'

# A file that is not a QCOW2 image.
printf 'Demo images for qcowscoped.\nThis file is not a QCOW2 image and must be skipped.\n' > notes.txt

echo "demo images written to $(pwd)"
