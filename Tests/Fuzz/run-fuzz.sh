#!/usr/bin/env bash
# run-fuzz.sh [SECONDS] [--update] [--reseed]: fuzzes the qcow2 parser and the JSON views for SECONDS
# (default 60) with libFuzzer + AddressSanitizer, starting from the committed corpus Tests/Fuzz/corpus.
#
# Fails (non-zero) on any crash, trap, sanitizer report, leak, timeout (-timeout=2) or out-of-memory
# (-rss_limit_mb=512); the input is left in .build/fuzz/artifacts/ and the fuzzer's output names it.
# New inputs go to a scratch copy of the corpus, so the committed one never changes unless asked:
#   --update   merge the new inputs back into Tests/Fuzz/corpus, minimised (-set_cover_merge=1, then
#              the largest inputs dropped until it is under 1.9 MB)
#   --reseed   also merge fresh seeds (Tests/Fuzz/make-seeds.sh: qemu-img images + CraftedImages)
# Reproduce one input: .build/fuzz/qcow2-fuzz FILE
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=60
update=0
reseed=0
for arg in "$@"; do
    case $arg in
        --update) update=1 ;;
        --reseed) reseed=1; update=1 ;;
        ''|*[!0-9]*) echo "usage: $0 [SECONDS] [--update] [--reseed]" >&2; exit 2 ;;
        *) seconds=$arg ;;
    esac
done
out=$root/.build/fuzz
fuzzer=$("$root/Tests/Fuzz/build-fuzz.sh" "$out")
corpus=$root/Tests/Fuzz/corpus
mkdir -p "$corpus" "$out/artifacts"
scratch=$(mktemp -d /tmp/qcowscope-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cp -a "$corpus/." "$scratch/"
if [[ $reseed == 1 ]]; then
    "$root/Tests/Fuzz/make-seeds.sh" "$scratch/seeds"
    mv "$scratch/seeds"/* "$scratch/" && rmdir "$scratch/seeds"
fi
common=(-timeout=2 -rss_limit_mb=512 -max_len=65536 -dict="$root/Tests/Fuzz/qcow2.dict"
        -artifact_prefix="$out/artifacts/")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64:symbolize=1}
echo "fuzzing for $seconds s from $(ls "$corpus" | wc -l) corpus files"
set +e
"$fuzzer" "${common[@]}" -max_total_time="$seconds" -print_final_stats=1 "$scratch" 2>"$out/fuzz.log"
status=$?
set -e
grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$out/fuzz.log" || true
if [[ $status -ne 0 ]]; then
    grep -E -A40 'ERROR: |==ERROR|Fatal error|deadly signal|timeout after|out-of-memory|SUMMARY' "$out/fuzz.log" | head -80 >&2
    echo "run-fuzz.sh: the fuzzer failed (exit $status); full log: $out/fuzz.log; input: $(ls -t "$out/artifacts" | head -1)" >&2
    exit 1
fi
if [[ $update == 1 ]]; then
    fresh=$(mktemp -d /tmp/qcowscope-corpus-XXXXXX)
    "$fuzzer" "${common[@]}" -set_cover_merge=1 "$fresh" "$scratch" 2>>"$out/fuzz.log"
    # Keep the committed corpus under ~1.9 MB: drop the largest inputs first.
    while (( $(cat "$fresh"/* | wc -c) > 1900000 )); do rm -f "$fresh/$(ls -S "$fresh" | head -1)"; done
    rm -rf "$corpus" && mkdir -p "$corpus" && cp "$fresh"/* "$corpus/" && rm -rf "$fresh"
    echo "corpus updated: $(ls "$corpus" | wc -l) files, $(du -sh "$corpus" | cut -f1)"
fi
echo "run-fuzz.sh: no crash, leak or timeout in $seconds s"
