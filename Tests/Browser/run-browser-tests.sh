#!/usr/bin/env bash
# run-browser-tests.sh: test qcowscoped's built-in web view (/ui/) in a real browser.
#
#   1. installs Debian's chromium and chromium-driver with apt when missing (root needed then),
#      and the pinned selenium (Tests/Browser/requirements.txt) into .build/browser-venv;
#   2. builds qcowscoped (unless QCOWSCOPED names a binary);
#   3. makes a temporary images directory: the demo images (Tests/Scripts/make-demo-images.sh,
#      qemu-img/qemu-io), xss.qcow2 (a bitmap named <img src=x onerror=alert(1)>) and
#      paging.qcow2 (64 MiB, a 512-byte-granularity bitmap: 32 table entries, 1024 map cells);
#   4. starts the daemon on 127.0.0.1, port 0 (the port is read from its log line
#      "qcowscoped listening on http://127.0.0.1:PORT"), waits for /healthz;
#   5. runs ui_tests.py: headless Chromium against /ui/ (list, sort, filter, paging, image and
#      bitmap pages, the canvas dirty map and its tooltip, XSS, keyboard, a 500 px window, live
#      updates with If-None-Match, the bearer-token form, every page of the contract test's
#      malformed images, dark mode, no console errors or CSP violations);
#      it prints "N passed, M failed" and saves screenshots in .build/browser-screenshots/;
#   6. stops the daemon. Exit status non-zero on any failure.
#
# Environment:
#   QCOWSCOPED=path      use this daemon binary instead of building one
#   SWIFT_SCRATCH_PATH=d build with `swift build --scratch-path d` (default: .build)
#   KEEP=1               keep the temporary images directory and the daemon log
#   ONLY=name[,name]     run only these tests (see ui_tests.py --list)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

SWIFT=${SWIFT:-swift}
venv=$root/.build/browser-venv
shots=$root/.build/browser-screenshots

say() { printf 'browser: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# 1. Chromium, its driver, and the pinned selenium.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "chromium and chromium-driver are missing: apt-get install -y chromium chromium-driver (as root)"
    say "installing chromium and chromium-driver with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2 \
        || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2; }
fi
for tool in python3 curl qemu-img qemu-io chromium chromedriver; do
    command -v "$tool" >/dev/null || die "$tool not found (python3, curl, qemu-utils, chromium, chromium-driver are needed)"
done
pinned=$(sed -n 's/^selenium==//p' "$here/requirements.txt")
if [[ $("$venv/bin/python" -c 'import selenium; print(selenium.__version__)' 2>/dev/null) != "$pinned" ]]; then
    say "installing selenium $pinned into ${venv#"$root"/}"
    mkdir -p "$root/.build"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

# 2. The daemon binary and a temporary directory (removed, with the daemon stopped, on exit).
source "$root/Tests/Scripts/daemon-lib.sh"
daemon_binary
daemon_workdir browser

# 3. Images.
images=$tmp/images
bash "$root/Tests/Scripts/make-demo-images.sh" "$images" >&2
(
    cd "$images"
    # A bitmap whose name is markup: the page must show it as text (names are byte strings).
    qemu-img create -q -f qcow2 -o cluster_size=512 xss.qcow2 1M
    qemu-img bitmap --add -g 4096 xss.qcow2 '<img src=x onerror=alert(1)>'
    qemu-io -f qcow2 -c 'write -P 0x11 0 8k' -c 'write -P 0x22 512k 4k' xss.qcow2 >/dev/null
    # Many table entries and map cells: 64 MiB, 512-byte granularity (2 MiB of guest per entry).
    qemu-img create -q -f qcow2 -o cluster_size=512 paging.qcow2 64M
    qemu-img bitmap --add -g 512 paging.qcow2 fine
    qemu-io -f qcow2 -c 'write -P 0x33 0 1M' -c 'write -P 0x44 20M 512' -c 'write -P 0x55 40M 96k' \
        -c 'write -P 0x66 63M 1M' paging.qcow2 >/dev/null
)

# The demo images plus the contract test's malformed ones, served by a second daemon in one test.
odd=()
if [[ -f $root/Tests/Contract/make-malformed-images.py ]]; then
    bash "$root/Tests/Scripts/make-demo-images.sh" "$tmp/odd" >&2
    python3 "$root/Tests/Contract/make-malformed-images.py" "$tmp/odd" >&2
    odd=(--odd-images "$tmp/odd")
fi

# 4. The daemon on a free port.
daemon_start "$images"

# 5. The tests.
mkdir -p "$shots"
rm -f "$shots"/*.png
only=()
[[ -n ${ONLY:-} ]] && only=(--only "$ONLY")
status=0
"$venv/bin/python" "$here/ui_tests.py" --base "$base" --images "$images" --daemon "$daemon" \
    --screenshots "$shots" --work "$tmp" "${odd[@]}" "${only[@]}" || status=$?

kill -0 "$pid" 2>/dev/null || { say "qcowscoped died during the run"; status=1; }
exit "$status"
