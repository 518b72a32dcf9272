#!/usr/bin/env bash
# Tests/Benchmarks/run.sh: the qcowscope benchmark (`make bench`). How to read its output: Tests/Benchmarks/README.md.
#
#   bash Tests/Benchmarks/run.sh [--quick] [--only throughput|extents|map|check|checkpoints|metrics] [--duration S] [--threads N] [--keep]
#                                [--scratch-path DIR | --bin-dir DIR] [--no-install]
#
# On a fresh Debian machine with Swift on PATH: installs what is missing (wrk, hyperfine, nginx-light
# or nginx, libmicrohttpd-dev, qemu-utils, libnbd-bin, curl, strace, gcc, pkg-config, python3; as root or with
# sudo), builds qcowscoped and qcowscope in release mode and the C floor with gcc, then runs
# bench.py, which starts every server, measures, prints one table and writes .build/bench/results.json.
#
#   --quick            smoke run (3 s wrk runs, fewer samples; about 2 minutes)
#   --only throughput  only section 1: req/s and p99 of the hot paths vs the C floor and nginx (issue 21)
#   --only extents     only section 6: dirty extents/totals of a 16 TiB disk vs nbdinfo over qemu-nbd
#   --only map         only section 9: the allocation map of 1 TiB disks vs qemu-img map
#   --only check       only section 10: the check of a 1 TiB disk vs qemu-img check, the scrubber's cost
#   --only checkpoints only section 11: checkpoints of a 4 x 1 TiB chain vs qemu-img bitmap --merge + qemu-nbd + nbdinfo
#   --only metrics     only section 12: GET /metrics of a daemon over 1,000 images (target < 50 ms)
#   --duration S       seconds per wrk run (default 10)
#   --threads N        server threads (default: the cores the servers are pinned to)
#   --keep             keep the temporary work directory (images, configs, logs) under .build/bench
#   --scratch-path DIR swift build --scratch-path (default .build)
#   --bin-dir DIR      use qcowscoped and qcowscope from DIR, do not build
#   --no-install       never call apt-get; fail if a tool is missing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

scratch=.build
bin_dir=
install=1
pass=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick | --keep) pass+=("$1") ;;
        --duration | --threads | --only)
            [[ $# -ge 2 ]] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            pass+=("$1" "$2"); shift ;;
        --scratch-path)
            [[ $# -ge 2 ]] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            scratch=$2; shift ;;
        --bin-dir)
            [[ $# -ge 2 ]] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            bin_dir=$2; shift ;;
        --no-install) install=0 ;;
        -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

out=$root/.build/bench
mkdir -p "$out"

# --- tools -----------------------------------------------------------------------------------
missing=()
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need wrk wrk
need hyperfine hyperfine
need qemu-img qemu-utils
need qemu-io qemu-utils
need qemu-nbd qemu-utils
need nbdinfo libnbd-bin
need curl curl
need strace strace
need gcc gcc
need pkg-config pkg-config
need python3 python3
need taskset util-linux
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    if apt-cache show nginx-light >/dev/null 2>&1; then missing+=(nginx-light); else missing+=(nginx); fi
fi
if ! pkg-config --exists libmicrohttpd 2>/dev/null; then missing+=(libmicrohttpd-dev); fi
if ! pkg-config --exists libcurl 2>/dev/null; then missing+=(libcurl4-gnutls-dev); fi
if [[ ${#missing[@]} -gt 0 ]]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ $install -eq 0 ]]; then
        echo "run.sh: missing packages: ${missing[*]} (--no-install given)" >&2
        exit 1
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "run.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "run.sh: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
        --no-install-recommends "${missing[@]}" >&2
fi
export PATH=$PATH:/usr/sbin:/sbin  # nginx lives in /usr/sbin

# --- build -----------------------------------------------------------------------------------
if [[ -z $bin_dir ]]; then
    command -v swift >/dev/null || { echo "run.sh: swift not on PATH" >&2; exit 1; }
    echo "run.sh: swift build -c release --scratch-path $scratch (qcowscoped, qcowscope)" >&2
    swift build -c release --scratch-path "$scratch" --product qcowscoped >&2
    swift build -c release --scratch-path "$scratch" --product qcowscope >&2
    bin_dir=$(swift build -c release --scratch-path "$scratch" --show-bin-path)
fi
for tool in qcowscoped qcowscope; do
    [[ -x $bin_dir/$tool ]] || { echo "run.sh: $bin_dir/$tool not found" >&2; exit 1; }
done

echo "run.sh: gcc floor.c (libmicrohttpd $(pkg-config --modversion libmicrohttpd))" >&2
# shellcheck disable=SC2046
gcc -O2 -Wall -Wextra -Werror -o "$out/floor" "$here/floor.c" $(pkg-config --cflags --libs libmicrohttpd) -lpthread

# --- run -------------------------------------------------------------------------------------
# bench.py stops its servers and removes its temp directory itself (and its children die with it:
# PR_SET_PDEATHSIG). It runs in the background so that this trap can forward INT/TERM/HUP at once.
bench_pid=
forward() {
    [[ -n $bench_pid ]] && kill -TERM "$bench_pid" 2>/dev/null || true
}
trap forward INT TERM HUP
python3 "$here/bench.py" --bin-dir "$bin_dir" --floor "$out/floor" --out "$out" "${pass[@]}" &
bench_pid=$!
status=0
while :; do
    wait "$bench_pid" && status=0 || status=$?
    # wait returns >128 when a trapped signal interrupted it; the child may still be running.
    kill -0 "$bench_pid" 2>/dev/null || break
done
exit "$status"
