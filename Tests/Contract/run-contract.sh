#!/usr/bin/env bash
# run-contract.sh: contract-test the live qcowscoped against api/openapi.yaml.
#
#   1. installs the pinned tools (Tests/Contract/requirements.txt: schemathesis,
#      openapi-spec-validator) into a virtualenv at .build/contract-venv;
#   2. validates api/openapi.yaml as OpenAPI 3.1;
#   3. builds qcowscoped (unless QCOWSCOPED names a binary) and makes a temporary images
#      directory: the demo images (Tests/Scripts/make-demo-images.sh, qemu-img/qemu-io) plus
#      malformed ones (make-malformed-images.py) plus, for /map and /chain, a 3-layer backing
#      chain, an overlay on a raw file and an image with an external data file (below);
#   4. starts the daemon on 127.0.0.1, port 0 (the port is read from its log line
#      "qcowscoped listening on http://127.0.0.1:PORT"), waits for /healthz;
#   5. runs the exact checks of smoke.py (raw bitmap names, 304, HEAD, 405, Link walk, ...);
#   6. runs `schemathesis run --checks all` against http://127.0.0.1:PORT/v1/openapi.yaml
#      (every operation, positive and negative, examples + coverage + fuzzing + stateful
#      phases; see schemathesis.toml), prints the number of generated test cases;
#   7. stops the daemon. Exit status non-zero on any failure: a 5xx, a response that does not
#      match the schema, an undocumented status, header or content type, a wrong acceptance.
#
# Environment:
#   QCOWSCOPED=path      use this daemon binary instead of building one
#   SWIFT_SCRATCH_PATH=d build with `swift build --scratch-path d` (default: .build)
#   MAX_EXAMPLES=n       schemathesis examples per operation and phase (default 100)
#   SEED=n               reproduce a run (schemathesis prints the seed it used)
#   KEEP=1               keep the temporary images directory and the daemon log
# Reports (JUnit, HAR of every request) are left in .build/contract-report.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

SWIFT=${SWIFT:-swift}
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
venv=$root/.build/contract-venv
report=$root/.build/contract-report
spec=$root/api/openapi.yaml

say() { printf 'contract: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in python3 curl qemu-img qemu-io; do
    command -v "$tool" >/dev/null || die "$tool not found (python3, curl, qemu-utils are needed)"
done

# 1. Pinned tools in a virtualenv under .build (never at the top level).
pinned=$(sed -n 's/^schemathesis==//p' "$here/requirements.txt")
if [[ ! -x $venv/bin/schemathesis ]] || [[ $("$venv/bin/schemathesis" --version 2>/dev/null) != *" $pinned" ]] \
    || ! "$venv/bin/python" -c 'import openapi_spec_validator' 2>/dev/null; then
    say "installing schemathesis $pinned into ${venv#"$root"/}"
    mkdir -p "$root/.build"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
say "$("$venv/bin/schemathesis" --version)"

# 2. The spec itself is valid OpenAPI 3.1.
"$venv/bin/python" - "$spec" <<'EOF'
import sys
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
doc, _ = read_from_filename(sys.argv[1])
validate(doc)
print("contract: api/openapi.yaml is valid OpenAPI", doc["openapi"], file=sys.stderr)
EOF

# 3. The daemon binary and the images.
source "$root/Tests/Scripts/daemon-lib.sh"
daemon_binary
daemon_workdir contract
bash "$root/Tests/Scripts/make-demo-images.sh" "$tmp/images" >&2
python3 "$here/make-malformed-images.py" "$tmp/images" >&2

# Backing chains and an external data file, for /map and /chain (1 MiB, 512-byte clusters, like
# the demo images). qcow2 images are named *.qcow2, as the catalog lists them; the raw files are
# not images (no .qcow2 name, no magic), so the listing skips them and /v1/images/NAME is 404,
# but /chain shows raw-base.raw as a layer.
#   base.qcow2 <- mid.qcow2 <- top.qcow2   base is the demo's (0xaa at 0-64k); mid: 0xbb at 16k-32k
#                                          and a compressed cluster at 128k; top: 0xcc at 20k-24k
#                                          and a zero cluster range at 48k-52k (depths 0, 1, 2)
#   raw-base.raw <- raw-overlay.qcow2      -F raw; 0x11 at 0-8k in the raw file, 0x22 at 4k-8k on top
#   datafile.qcow2 + datafile.data         data_file=, data at guest 0-4k and 512k-516k
(
    cd "$tmp/images"
    [[ -f base.qcow2 ]] || die "make-demo-images.sh made no base.qcow2"
    small=cluster_size=512
    qio() { # qio FORMAT NAME COMMAND... (each COMMAND becomes one -c)
        local format=$1 name=$2
        shift 2
        local args=()
        for command in "$@"; do args+=(-c "$command"); done
        qemu-io -f "$format" "${args[@]}" "$name" >/dev/null
    }
    rm -f -- mid.qcow2 top.qcow2 raw-base.raw raw-overlay.qcow2 datafile.qcow2 datafile.data
    qemu-img create -q -f qcow2 -o "$small" -b base.qcow2 -F qcow2 mid.qcow2 1M
    qio qcow2 mid.qcow2 'write -P 0xbb 16k 16k' 'write -c -P 0x5a 128k 512'
    qemu-img create -q -f qcow2 -o "$small" -b mid.qcow2 -F qcow2 top.qcow2 1M
    qio qcow2 top.qcow2 'write -P 0xcc 20k 4k' 'write -z 48k 4k'
    qemu-img create -q -f raw raw-base.raw 1M
    qio raw raw-base.raw 'write -P 0x11 0 8k'
    qemu-img create -q -f qcow2 -o "$small" -b raw-base.raw -F raw raw-overlay.qcow2 1M
    qio qcow2 raw-overlay.qcow2 'write -P 0x22 4k 4k'
    qemu-img create -q -f qcow2 -o "data_file=datafile.data,$small" datafile.qcow2 1M
    qio qcow2 datafile.qcow2 'write -P 0x33 0 4k' 'write -P 0x44 512k 4k'
    [[ $(qemu-img info --backing-chain --output=json top.qcow2 | grep -c '"filename"') -eq 3 ]] \
        || die "top.qcow2 is not a 3-layer chain"
    echo "backing chains and a data file written to $(pwd)"
) >&2

# 4. Start the daemon on a free port and wait until it answers.
daemon_start "$tmp/images" "127.0.0.1:${PORT:-0}"

# 5. Exact checks.
status=0
"$venv/bin/python" "$here/smoke.py" "$base" "$spec" || status=1

# 6. Schemathesis.
rm -rf "$report"
seed=()
[[ -n ${SEED:-} ]] && seed=(--seed "$SEED")
set +e
# From the temporary directory: schemathesis and hypothesis keep their databases (.schemathesis/,
# .hypothesis/) in the working directory, and they must not land in the repository.
(cd "$tmp" && "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$base/v1/openapi.yaml" \
    --url "$base" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --mode all \
    --max-examples "$MAX_EXAMPLES" \
    --workers 2 \
    --request-timeout 30 \
    --no-color \
    --report junit,har --report-dir "$report" \
    "${seed[@]}") 2>&1 | tee "$tmp/schemathesis.log"
st_status=${PIPESTATUS[0]}
set -e
cases=$(grep -A1 '^Test cases:' "$tmp/schemathesis.log" | sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p')
requests=$("$venv/bin/python" -c 'import glob,json,sys; print(sum(len(json.load(open(f))["log"]["entries"]) for f in glob.glob(sys.argv[1]+"/*.json")))' "$report" 2>/dev/null || echo "?")
say "schemathesis: ${cases:-?} generated test cases, $requests HTTP requests, exit status $st_status (reports in ${report#"$root"/})"
[[ $st_status -eq 0 ]] || status=1

# 7. The daemon must still be alive (no crash under fuzzing); cleanup stops it.
kill -0 "$pid" 2>/dev/null || { say "qcowscoped died during the run"; status=1; }
if [[ $status -eq 0 ]]; then say "PASS"; else say "FAIL"; fi
exit "$status"
