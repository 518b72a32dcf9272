#!/usr/bin/env bash
# run-contract.sh: contract-test the live qcowscoped against api/openapi.yaml.
#
#   1. installs the pinned tools (Tests/Contract/requirements.txt: schemathesis,
#      openapi-spec-validator) into a virtualenv at .build/contract-venv;
#   2. validates api/openapi.yaml as OpenAPI 3.1;
#   3. builds qcowscoped (unless QCOWSCOPED names a binary) and makes a temporary images
#      directory: the demo images (Tests/Scripts/make-demo-images.sh, qemu-img/qemu-io) plus
#      malformed ones (make-malformed-images.py);
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
