# daemon-lib.sh: sourced by the runners that test a live qcowscoped (contract, browser).
# Expects `root` (the repository), `SWIFT`, and `say`/`die` from the runner.
#
#   daemon_binary              sets $daemon: $QCOWSCOPED, or the qcowscoped built now
#                              (SWIFT_SCRATCH_PATH=dir builds with --scratch-path dir)
#   daemon_workdir NAME        sets $tmp (a new temporary directory) and an EXIT trap that stops the
#                              daemon and removes $tmp (kept with KEEP=1 or on failure)
#   daemon_start IMAGES [ADDR] starts $daemon on ADDR (default 127.0.0.1:0), logging to $tmp/daemon.log;
#                              sets $pid, $port and $base once /healthz answers

daemon_binary() {
    if [[ -n ${QCOWSCOPED:-} ]]; then
        daemon=$QCOWSCOPED
    else
        local scratch=()
        [[ -n ${SWIFT_SCRATCH_PATH:-} ]] && scratch=(--scratch-path "$SWIFT_SCRATCH_PATH")
        say "building qcowscoped"
        "$SWIFT" build "${scratch[@]}" --product qcowscoped >&2
        daemon=$("$SWIFT" build "${scratch[@]}" --show-bin-path)/qcowscoped
    fi
    [[ -x $daemon ]] || die "no daemon binary at $daemon"
}

daemon_cleanup() {
    local status=$?
    if [[ -n ${pid:-} ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 || $status -ne 0 ]]; then
        say "kept $tmp (images/, daemon.log)"
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}

daemon_workdir() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/qcowscope-$1.XXXXXX")
    pid=
    trap daemon_cleanup EXIT
    trap 'exit 130' INT TERM
}

daemon_start() {
    local images=$1 listen=${2:-127.0.0.1:0}
    : >"$tmp/daemon.log"
    "$daemon" --images "$images" --listen "$listen" >"$tmp/daemon.log" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; die "qcowscoped exited at startup"; }
        port=$(sed -n 's#.*qcowscoped listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$tmp/daemon.log" | head -n 1)
        [[ -n $port ]] && break
        sleep 0.1
    done
    [[ -n $port ]] || { cat "$tmp/daemon.log" >&2; die "no 'listening on' line from qcowscoped"; }
    base=http://127.0.0.1:$port
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "$base/healthz" || die "$base/healthz does not answer"
    say "qcowscoped (pid $pid) serving $images on $base"
}
