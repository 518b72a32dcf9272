#!/usr/bin/env bash
# load.sh [SECONDS] [CONNECTIONS]: load test of a release qcowscoped with wrk (default 60 s, 256 connections).
#
# Builds (release unless CONFIG=debug), makes the demo images, starts the daemon (access log on, as
# deployed), warms the cache, then runs wrk over a mix of endpoints and images (Tests/Reliability/load.lua picks a path per
# request: views of every image, table/extents pages, conditional requests that must get 304, and
# missing images/bitmaps that must get 404). Fails unless:
#   - wrk saw no socket error (connect, read, write, timeout) and every status is 200, 304 or 404,
#     with 304 and 404 in the proportions the plan asks for (so conditional requests really hit);
#   - the daemon's open descriptors (±2, once the closed connections are gone) and threads are the
#     same before and after, and its RSS grew by
#     less than RSS_BOUND_KB (default 32768 KiB) — read from /proc/PID/{fd,status};
#   - the images are byte-for-byte unchanged (sha256) and the daemon is still healthy.
# Environment: SCRATCH_PATH (swift build --scratch-path, default .build), CONFIG (release, or debug for
# a quick run on the test build), THREADS (wrk, default 2),
# KEEP_LOG=1 keeps the daemon's log.
set -euo pipefail
seconds=${1:-60}
connections=${2:-256}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v wrk >/dev/null || { echo "load.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
scratch=${SCRATCH_PATH:-.build}
config=${CONFIG:-release}
swift build -c "$config" --scratch-path "$scratch" --product qcowscoped >&2
bin=$(swift build -c "$config" --scratch-path "$scratch" --show-bin-path)/qcowscoped

work=$(mktemp -d /tmp/qcowscope-load-XXXXXX)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [[ ${KEEP_LOG:-0} == 1 ]] && cp "$work/daemon.log" /tmp/qcowscope-load-daemon.log
    rm -rf "$work"
}
trap cleanup EXIT
bash Tests/Scripts/make-demo-images.sh "$work/images" >/dev/null
(cd "$work/images" && sha256sum -- * > "$work/sha-before")

# Descriptors: room for 256 clients and cached images.
ulimit -n 4096
"$bin" --images "$work/images" --listen 127.0.0.1:0 --connection-limit 1024 --timeout 30 2>"$work/daemon.log" &
pid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$work/daemon.log" | head -1)
    [[ -n $port ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
done
[[ -n $port ]] || { echo "load.sh: daemon did not listen" >&2; exit 1; }
base=http://127.0.0.1:$port

# The plan: every view of every image, pages, conditional requests, and misses.
plan=$work/plan.tsv
: > "$plan"
add() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >> "$plan"; }
images=$(curl -sf "$base/v1/images?limit=1000" | jq -r '.images[].name')
for image in $images; do
    for view in "" /header /extensions /bitmaps /snapshots /findings; do
        path=/v1/images/$image$view
        add 200 "$path"
        etag=$(curl -sfI "$base$path" | awk -F': ' 'tolower($1)=="etag"{print $2}' | tr -d '\r')
        [[ -n $etag ]] && add 304 "$path" "$etag"
    done
    for bitmap in $(curl -sf "$base/v1/images/$image/bitmaps" | jq -r '.bitmaps[].name'); do
        add 200 "/v1/images/$image/bitmaps/$bitmap"
        add 200 "/v1/images/$image/bitmaps/$bitmap/table"
        add 200 "/v1/images/$image/bitmaps/$bitmap/table?offset=0&limit=1"
        add 200 "/v1/images/$image/bitmaps/$bitmap/extents"
        add 200 "/v1/images/$image/bitmaps/$bitmap/extents?start=65536&length=1048576&limit=2"
        add 404 "/v1/images/$image/bitmaps/no-such-$bitmap/extents"
    done
    add 404 "/v1/images/$image.missing"
done
add 200 /v1/images
add 200 /healthz
add 404 /v1/images/..%2Fetc%2Fpasswd/header
add 404 /nowhere
# Every planned request must answer as planned before the load starts.
while IFS=$'\t' read -r want path etag; do
    got=$(curl -s -o /dev/null -w '%{http_code}' ${etag:+-H "If-None-Match: $etag"} "$base$path")
    [[ $got == "$want" ]] || { echo "load.sh: $path answered $got, planned $want" >&2; exit 1; }
done < "$plan"
total_plan=$(wc -l < "$plan")
plan304=$(awk -F'\t' '$1==304' "$plan" | wc -l)
plan404=$(awk -F'\t' '$1==404' "$plan" | wc -l)

snapshot() { # fds threads rss_kb
    echo "$(ls "/proc/$pid/fd" | wc -l) $(awk '/^Threads:/{print $2}' "/proc/$pid/status") $(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")"
}
# Warm-up: one short burst so caches, thread stacks and allocator arenas exist before "before".
wrk -t "${THREADS:-2}" -c "$connections" -d 3s -s Tests/Reliability/load.lua "$base" -- "$plan" >/dev/null
fds() { ls "/proc/$pid/fd" | wc -l; }
settle() { # waits (up to 10 s) until the descriptor count is at most $1 and stable; prints the wait
    local start=$SECONDS prev=-1 now
    while (( SECONDS - start < 10 )); do
        now=$(fds)
        (( now == prev && now <= $1 )) && break
        prev=$now
        sleep 0.5
    done
    echo "$(( SECONDS - start ))"
}
settle 1000000 >/dev/null
read -r fd0 th0 rss0 < <(snapshot)
echo "before: fds=$fd0 threads=$th0 rss=${rss0}KiB; plan: $total_plan requests ($plan304 conditional, $plan404 misses)"
wrk -t "${THREADS:-2}" -c "$connections" -d "${seconds}s" --timeout 5s --latency -s Tests/Reliability/load.lua \
    "$base" -- "$plan" > "$work/wrk.txt"
# The daemon closes the 256 connections as it sees wrk's FINs; give it a moment.
waited=$(settle "$((fd0 + 2))")
read -r fd1 th1 rss1 < <(snapshot)
echo "after:  fds=$fd1 threads=$th1 rss=${rss1}KiB (descriptors settled ${waited} s after wrk ended)"
grep -E 'Requests/sec|Latency  |99%|Socket errors|Non-2xx|statuses:|unexpected:|requests:' "$work/wrk.txt"

fail=0
check() { if ! eval "$1"; then echo "load.sh: FAILED: $2" >&2; fail=1; fi; }
read -r requests connect_err read_err write_err _ timeout_err < <(
    sed -n 's/^requests: \([0-9]*\) errors: connect=\([0-9]*\) read=\([0-9]*\) write=\([0-9]*\) status=\([0-9]*\) timeout=\([0-9]*\)$/\1 \2 \3 \4 \5 \6/p' "$work/wrk.txt")
unexpected=$(sed -n 's/^unexpected: //p' "$work/wrk.txt")
statuses=$(sed -n 's/^statuses: //p' "$work/wrk.txt")
count() { echo "$statuses" | tr ' ' '\n' | sed -n "s/^$1=//p" | grep . || echo 0; }
got304=$(count 304)
got404=$(count 404)
check '[[ $requests -gt 0 ]]' "no requests completed"
check '[[ $connect_err -eq 0 && $read_err -eq 0 && $write_err -eq 0 && $timeout_err -eq 0 ]]' \
    "socket errors: connect=$connect_err read=$read_err write=$write_err timeout=$timeout_err"
check '[[ $unexpected -eq 0 ]]' "$unexpected responses with a status other than 200/304/404 ($statuses)"
# Proportions within 3 percentage points of the plan's (the mix is uniform over plan lines).
within() { awk -v g="$1" -v n="$requests" -v p="$2" -v t="$total_plan" 'BEGIN{d=g/n-p/t; exit !(d<0.03 && d>-0.03)}'; }
check 'within "$got304" "$plan304"' "304s: $got304 of $requests, plan $plan304/$total_plan"
check 'within "$got404" "$plan404"' "404s: $got404 of $requests, plan $plan404/$total_plan"
check '[[ $fd1 -le $((fd0 + 2)) && $fd1 -ge $((fd0 - 2)) ]]' "open descriptors $fd0 -> $fd1: $(ls -l "/proc/$pid/fd" | awk '{print $NF}' | sed 's/[0-9]*//g' | sort | uniq -c | tr '\n' ' ')"
check '[[ $th1 -eq $th0 ]]' "threads $th0 -> $th1"
check '[[ $((rss1 - rss0)) -lt ${RSS_BOUND_KB:-32768} ]]' "RSS grew ${rss0} -> ${rss1} KiB"
check '[[ $(curl -s -o /dev/null -w "%{http_code}" "$base/healthz") == 200 ]]' "daemon unhealthy after the load"
check 'kill -0 "$pid"' "daemon died"
(cd "$work/images" && sha256sum -- * > "$work/sha-after")
check 'cmp -s "$work/sha-before" "$work/sha-after"' "images changed during the load"
fivexx='(GET|HEAD) [^ ]* 5[0-9][0-9] [0-9]+B |libmicrohttpd:'
check '! grep -q -E "$fivexx" "$work/daemon.log"' \
    "daemon logged 5xx or libmicrohttpd errors: $(grep -m3 -E "$fivexx" "$work/daemon.log" || true)"
kill -TERM "$pid"
wait "$pid" && status=0 || status=$?
pid=
check '[[ $status -eq 0 ]]' "daemon exited $status on SIGTERM"
[[ $fail -eq 0 ]] || exit 1
echo "load.sh: OK ($seconds s, $connections connections)"
