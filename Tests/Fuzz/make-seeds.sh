#!/usr/bin/env bash
# make-seeds.sh SEED_DIR: writes fuzz seeds into SEED_DIR: small real images made by qemu-img /
# qemu-io 7.2 (512-byte clusters, a few KiB each) and every CraftedImages case. File names carry no
# extension (the repository ignores *.qcow2). run-fuzz.sh --reseed merges them into corpus/.
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 SEED_DIR" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
seeds=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/qcowscope-seeds-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Crafted images: compile QCOW2 + the builder + the dumper with plain swiftc.
cd "$root"
swiftc -swift-version 6 -module-name QCOW2 -parse-as-library -wmo -emit-module \
    -emit-module-path "$work/QCOW2.swiftmodule" -c $(find Sources/QCOW2 -name '*.swift' | sort) -o "$work/QCOW2.o" 2>/dev/null
swiftc -swift-version 6 -parse-as-library -module-name DumpCrafted -package-name qcowscope -I "$work" \
    Tests/Fuzz/DumpCrafted.swift Tests/QCOW2TestSupport/ByteWriter.swift Tests/QCOW2TestSupport/CraftedImages.swift \
    Tests/QCOW2TestSupport/ImageBuilder*.swift "$work/QCOW2.o" -o "$work/dump-crafted" 2>/dev/null
"$work/dump-crafted" "$seeds" >/dev/null

# Real images.
cd "$work"
small=cluster_size=512
mk() { local n=$1 s=$2; shift 2; qemu-img create -q -f qcow2 "$@" "$n" "$s"; }
io() { local n=$1; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done; qemu-io -f qcow2 "${a[@]}" "$n" >/dev/null; }

mk plain 1M -o $small; io plain 'write -P 0xab 0 512'
mk v2 1M -o compat=0.10,$small; io v2 'write -P 0xab 4k 512'
mk lazy 1M -o lazy_refcounts=on,$small; io lazy 'write 0 512'
mk zstd 1M -o compression_type=zstd,$small; io zstd 'write 0 512' 'write -c -P 0x5a 8k 512'
mk bitmaps 4M -o $small
qemu-img bitmap --add -g 65536 bitmaps b-enabled
qemu-img bitmap --add -g 65536 --disable bitmaps b-disabled
qemu-img bitmap --add -g 512 bitmaps b-512
qemu-img bitmap --add -g 2147483648 bitmaps b-2g
qemu-img bitmap --add -g 4096 bitmaps 'ünï cødé'
io bitmaps 'write -P 0xab 0 512' 'write -P 0xcd 1M 512' 'write -P 0xef 3584k 512' 'write -P 1 4095k 512'
mk bitmap-1023 1M -o $small; qemu-img bitmap --add bitmap-1023 "$(printf 'L%.0s' $(seq 1023))"
mk inuse 1M -o $small; qemu-img bitmap --add -g 4096 inuse b-inuse
(qemu-io -f qcow2 -c 'write -P 0xee 64k 512' -c 'sigraise 9' inuse >/dev/null; exit $?) 2>/dev/null || true
mk dirty 1M -o lazy_refcounts=on,$small
(qemu-io -f qcow2 -c 'write -P 0xee 0 512' -c 'sigraise 9' dirty >/dev/null; exit $?) 2>/dev/null || true
mk base 1M -o $small; mk overlay 1M -o $small -b base -F qcow2; io overlay 'write 32k 512'
mk snapshots 1M -o $small; io snapshots 'write 0 512'
qemu-img snapshot -c snap-one snapshots; io snapshots 'write 0 512'; qemu-img snapshot -c snap-two snapshots
mk datafile 1M -o data_file=datafile.data,$small; io datafile 'write 0 512'
mk datafile-raw 1M -o data_file=datafile-raw.data,data_file_raw=on,$small
mk extl2 1M -o extended_l2=on,cluster_size=16k; io extl2 'write 0 4k' 'write -z 64k 8k'
mk big-virtual 8G -o cluster_size=4096
qemu-img bitmap --add -g 65536 big-virtual b-64k
mk resized 1M -o $small; qemu-img bitmap --add resized b0; io resized 'write 0 512'; qemu-img resize -q resized 3M
# The map's cluster types: zero (with and without a host cluster), discarded, compressed runs, metadata
# preallocation, and extended L2 subclusters.
mk zeros 1M -o $small; io zeros 'write -P 1 0 2k' 'write -z 0 512' 'write -z -u 1k 512' 'discard 1536 512'
mk compressed 1M -o $small; io compressed 'write -c -P 1 0 512' 'write -c -P 2 512 512' 'write -P 3 1k 512' 'write -c -P 4 8k 512'
mk prealloc 256k -o preallocation=metadata,$small
mk extl2-sub 1M -o extended_l2=on,cluster_size=16k; io extl2-sub 'write -P 1 0 1k' 'write -z 2k 1k' 'discard 4k 2k' 'write -P 2 32k 512'
# Checkpoints: an older bitmap disabled, a later one enabled at another granularity, both with writes.
mk checkpoints 4M -o $small; qemu-img bitmap --add -g 65536 checkpoints c1; io checkpoints 'write 0 512' 'write 1M 64k'
qemu-img bitmap --disable checkpoints c1; qemu-img bitmap --add -g 2097152 checkpoints c2; io checkpoints 'write 2M 512' 'write -z 3M 4k'
for f in plain v2 lazy zstd bitmaps bitmap-1023 inuse dirty overlay snapshots datafile datafile-raw extl2 big-virtual resized \
    zeros compressed prealloc extl2-sub checkpoints; do
    # Keep seeds small: the fuzzer's -max_len is 64 KiB anyway.
    head -c 65536 "$f" > "$seeds/qemu-$f"
done
echo "seeds in $seeds: $(ls "$seeds" | wc -l) files, $(du -sh "$seeds" | cut -f1)"
