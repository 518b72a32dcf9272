#!/usr/bin/env bash
# faultfs-selftest.sh: checks Tests/Reliability/faultfs.py end to end (needs root or FUSE rights,
# /dev/fuse, python3-fusepy, libfuse2). Mounts a 1 MiB random file and checks passthrough, stall
# (and ending it early by removing the rule), eio, short, shrink, refused writes, the stats file,
# one-line mount errors and SIGTERM during a stall. Prints PASS/FAIL lines; exit 1 on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
faultfs="$py $here/faultfs.py"
work=$(mktemp -d /tmp/faultfs-selftest-XXXXXX)
src=$work/src mnt=$work/mnt ctl=$work/faultfs-control.json stats=$work/faultfs-stats.json
pid= failures=0

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    fi
    if grep -qs " $mnt " /proc/self/mountinfo; then
        fusermount -u -q "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; failures=$((failures + 1)); }
# check NAME COMMAND...: PASS if the command succeeds, else FAIL with its output.
check() {
    local name=$1 out; shift
    if out=$("$@" 2>&1); then pass "$name${out:+ ($out)}"; else fail "$name" "$out"; fi
}
rules() {  # rules 'JSON-LIST': atomically replace the control file
    printf '{"rules": %s}\n' "$1" > "$ctl.tmp" && mv "$ctl.tmp" "$ctl"
}
# pyread OFFSET SIZE [MIN MAX]: pread the big file; print "bytes seconds" (or the errno name);
# with MIN/MAX, fail unless MIN <= seconds < MAX.
pyread() {
    $py - "$mnt/big.bin" "$@" <<'EOF'
import errno, os, sys, time
path, off, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
t = time.monotonic()
try:
    n = len(os.pread(fd, size, off))
except OSError as e:
    print(errno.errorcode[e.errno]); sys.exit(0)
dt = time.monotonic() - t
print(n, "%.2fs" % dt)
if len(sys.argv) > 5 and not float(sys.argv[4]) <= dt < float(sys.argv[5]):
    sys.exit(1)
EOF
}
expect() {  # expect WANT COMMAND...: the command's first output word must be WANT
    local want=$1 out; shift
    out=$("$@" 2>&1) || return 1
    echo "$out"; [ "${out%% *}" = "$want" ]
}
stat_count() {  # stat_count FILE KIND FAULT-NAME: print a counter from the stats file
    $py -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["files"].get(sys.argv[2], {}).get(sys.argv[3], {}).get(sys.argv[4], 0))' "$stats" "$@"
}
stalling() {  # exit 0 while a stall is in progress
    $py -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["active_stalls"] < 1)' "$stats"
}
wait_for() {  # wait_for SECONDS COMMAND...: poll until the command succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.05; done
}

mkdir -p "$src/dir" "$mnt"
head -c 1048576 /dev/urandom > "$src/big.bin"
echo hello > "$src/dir/small.txt"
ln -s dir/small.txt "$src/link"
rules '[]'

$faultfs "$src" "$mnt" > "$work/out" 2> "$work/err" &
pid=$!
if wait_for 10 grep -q "^faultfs: mounted $src at $mnt\$" "$work/out"; then
    pass "mounted"
else
    fail "mounted" "$(cat "$work/out" "$work/err")"; exit 1
fi

check "passthrough bytes equal the source" cmp "$src/big.bin" "$mnt/big.bin"
check "dd passthrough (1 MiB, bs=64k)" bash -c "dd if='$mnt/big.bin' bs=64k status=none | cmp - '$src/big.bin'"
check "directory and symlink passthrough" bash -c \
    "[ \"\$(ls '$mnt/dir')\" = small.txt ] && [ \"\$(readlink '$mnt/link')\" = dir/small.txt ] && [ \"\$(cat '$mnt/link')\" = hello ]"

rules '[{"file": "big.bin", "op": "read", "from": 65536, "to": null, "fault": "stall", "seconds": 3}]'
check "stall: pread at 0 is fast" pyread 0 4096 0 0.5
check "stall: pread at 131072 stalls >= 2.5 s" pyread 131072 4096 2.5 10
check "stall: counted in stats" test "$(stat_count big.bin faults stall)" -ge 1

rules '[{"file": "big.bin", "from": 65536, "fault": "stall", "seconds": 20}]'
pyread 131072 4096 > "$work/stalled" 2>&1 &
reader=$!
if wait_for 5 stalling; then
    t0=$(date +%s.%N)
    rules '[]'
    wait "$reader"
    t1=$(date +%s.%N)
    check "stall: removing the rule ends it early (< 1.5 s)" \
        $py -c "import sys; d=$t1-$t0; print('%.2fs, read: %s' % (d, open('$work/stalled').read().strip())); sys.exit(d >= 1.5)"
else
    fail "stall: removing the rule ends it early" "stall never started"; kill "$reader"
fi

rules '[{"file": "big.bin", "from": 524288, "fault": "eio"}]'
check "eio: read just before the offset succeeds" expect 4096 pyread 520192 4096
check "eio: read at the offset fails with EIO" expect EIO pyread 524288 4096
check "eio: read crossing the offset fails with EIO" expect EIO pyread 520192 8192
rules '[{"file": "big.bin", "fault": "eio", "errno": "ENXIO"}]'
check "errno: ENXIO by name" expect ENXIO pyread 0 4096

rules '[{"file": "big.bin", "fault": "short", "bytes": 100}]'
check "short: returns 100 of 4096 bytes" expect 100 pyread 0 4096
rules '[{"file": "big.bin", "fault": "short"}]'
check "short: default is half" expect 2048 pyread 0 4096

rules '[{"file": "big.bin", "fault": "shrink", "size": 1000}]'
check "shrink: stat reports 1000 bytes" test "$(stat -c %s "$mnt/big.bin")" = 1000
check "shrink: read crossing the size is cut" expect 1000 pyread 0 4096
check "shrink: read past the size is empty" expect 0 pyread 2000 4096
rules '[]'
check "rules removed: stat reports 1 MiB again" test "$(stat -c %s "$mnt/big.bin")" = 1048576

check "open for writing fails (EROFS)" $py -c "
import errno, os, sys
try: os.open('$mnt/big.bin', os.O_WRONLY)
except OSError as e: print(errno.errorcode[e.errno]); sys.exit(e.errno != errno.EROFS)
sys.exit('opened for writing')"
check "source unchanged" cmp "$src/big.bin" <(dd if="$mnt/big.bin" bs=1M status=none)

mkdir "$work/busy"; touch "$work/busy/x"
check "mount error is one line and exit 2" bash -c "
    $faultfs '$src' '$work/missing' 2> '$work/e1'; rc1=\$?
    $faultfs '$src' '$work/busy' 2> '$work/e2'; rc2=\$?
    cat '$work/e1' '$work/e2'
    [ \$rc1 = 2 ] && [ \$rc2 = 2 ] && [ \$(wc -l < '$work/e1') = 1 ] && [ \$(wc -l < '$work/e2') = 1 ] &&
    grep -q '^faultfs: cannot mount' '$work/e1' && grep -q '^faultfs: cannot mount' '$work/e2'"

rules '[{"file": "big.bin", "fault": "stall", "seconds": 20, "interruptible": true}]'
dd if="$mnt/big.bin" of=/dev/null bs=4k count=1 status=none &
reader=$!
if wait_for 5 stalling; then
    t0=$(date +%s.%N)
    kill -TERM "$reader"; wait "$reader"
    t1=$(date +%s.%N)
    check "interruptible stall: SIGTERM ends the reader (< 1 s)" \
        $py -c "import sys; d=$t1-$t0; print('%.2fs' % d); sys.exit(d >= 1)"
else
    fail "interruptible stall" "stall never started"; kill "$reader"
fi

rules '[{"file": "big.bin", "fault": "stall", "seconds": 60}]'
pyread 0 4096 > "$work/stalled" 2>&1 &
reader=$!
if wait_for 5 stalling; then
    t0=$SECONDS
    kill -TERM "$pid"
    if wait_for 5 bash -c "! kill -0 $pid"; then
        wait "$pid"; rc=$?
        check "SIGTERM during a stall: exits 0 within 5 s, unmounted" bash -c \
            "echo 'rc=$rc, reader: '\$(cat '$work/stalled'); [ $rc = 0 ] && ! grep -qs ' $mnt ' /proc/self/mountinfo"
        pid=
    else
        fail "SIGTERM during a stall" "still running after 5 s"
    fi
    wait "$reader" 2>/dev/null
else
    fail "SIGTERM during a stall" "stall never started"
fi

if [ $failures -eq 0 ]; then echo "PASS faultfs self-test"; exit 0; fi
echo "FAIL faultfs self-test: $failures check(s) failed"; exit 1
