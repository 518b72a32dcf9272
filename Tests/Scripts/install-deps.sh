#!/usr/bin/env bash
# install-deps.sh GROUP...: installs the Debian 12 packages a Makefile target needs, only those that
# dpkg says are missing, and nothing else (no PyPI package: the test runners put theirs in venvs
# under .build). Needs root (or sudo) when something is missing.
#
#   build   swift build: pkg-config, libmicrohttpd-dev, libcurl4-gnutls-dev (the CLI's --server)
#                                                                    (make build, release, install)
#   demo    build + qemu-utils (qemu-img, qemu-io: the demo images)  (make demo)
#   test    demo + everything make test runs: libnbd-bin (nbdinfo), curl, jq, python3, python3-venv,
#           openssl, systemd (systemd-analyze), prometheus, chromium, chromium-driver, fuse3 and
#           python3-fusepy (the storage-fault tests: a FUSE filesystem that stalls and fails)   (make test)
#   load    demo + curl, jq, wrk                                     (make load)
#   --list  print the packages of the groups instead of installing them
set -euo pipefail

build=(pkg-config libmicrohttpd-dev libcurl4-gnutls-dev)
demo=("${build[@]}" qemu-utils)
test=("${demo[@]}" libnbd-bin curl jq python3 python3-venv openssl systemd prometheus chromium chromium-driver fuse3 python3-fusepy)
load=("${demo[@]}" curl jq wrk)

list=0
want=()
for group in "$@"; do
    case $group in
        build) want+=("${build[@]}") ;;
        demo) want+=("${demo[@]}") ;;
        test) want+=("${test[@]}") ;;
        load) want+=("${load[@]}") ;;
        --list) list=1 ;;
        *) echo "install-deps.sh: unknown group '$group' (build, demo, test, load)" >&2; exit 2 ;;
    esac
done
[[ ${#want[@]} -gt 0 ]] || { echo "usage: $0 [--list] build|demo|test|load..." >&2; exit 2; }
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
if [[ $list == 1 ]]; then
    printf '%s\n' "${want[@]}"
    exit 0
fi

need=()
for package in "${want[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || need+=("$package")
done

if [[ ${#need[@]} -gt 0 ]]; then
    echo "qcowscope: installing ${need[*]}" >&2
    if [[ $(id -u) -eq 0 ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "qcowscope: missing packages: ${need[*]}; run as root: apt-get install -y ${need[*]}" >&2
        exit 1
    fi
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "qcowscope: swift is not on PATH; install Swift 6.3 (swift.org) and retry" >&2
    exit 1
fi
