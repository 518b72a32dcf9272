#!/usr/bin/env bash
# test-install.sh: `make install` into temporary DESTDIRs, then checks what landed there.
#
#   1. make install DESTDIR=$(mktemp -d) (default PREFIX=/usr/local): every expected file exists with
#      its mode, and nothing else: both binaries (identical to the release build, both run --version and
#      print the same version), both systemd units (ExecStart pointing at the installed daemon), the
#      sample config in share/ and /etc, bash/zsh/fish completions of both binaries (the bash ones load in
#      bash), a man page per binary and per subcommand;
#   2. a second make install over a changed /etc config keeps it;
#   3. make uninstall removes every file but that changed config;
#   4. make install PREFIX=/opt/qcowscope SYSCONFDIR=/opt/qcowscope/etc: the unit's paths follow.
# Prints "install: N passed, M failed"; exit status 1 on any failure. KEEP=1 keeps the directories.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
SWIFT=${SWIFT:-swift}

passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "install: FAIL: $what" >&2
    fi
}
mode_is() { [[ $(stat -c %a "$2") == "$1" ]]; }
contains() { grep -qF -- "$2" "$1"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/qcowscope-install.XXXXXX")
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then echo "install: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

log=$work/make.log
install_into() { # install_into DESTDIR [make variables...]
    local dest=$1
    shift
    if ! make --no-print-directory install DESTDIR="$dest" SWIFT="$SWIFT" "$@" >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "install: make install DESTDIR=$dest $* failed (log: $log)" >&2
        KEEP=1
        exit 1
    fi
}

# 1. The default prefix.
dest=$work/default
echo "install: make install DESTDIR=$dest" >&2
install_into "$dest"
built=$("$SWIFT" build -c release --show-bin-path)
prefix=$dest/usr/local
expected=()
versions=()
cli_subcommands=0
for program in qcowscoped qcowscope; do
    binary=$prefix/bin/$program
    expected+=("$binary")
    check "$program installed, mode 0755" mode_is 755 "$binary"
    check "$program identical to the release build" cmp -s "$binary" "$built/$program"
    check "$program --version runs" "$binary" --version
    version=$("$binary" --version 2>/dev/null || true)
    check "$program --version prints a version (got '$version')" test -n "$version"
    versions+=("$version")

    completion=$prefix/share/bash-completion/completions/$program
    expected+=("$completion")
    check "bash completion of $program, mode 0644" mode_is 644 "$completion"
    check "bash completion of $program registers itself when sourced" \
        bash -c 'source "$1" && complete -p "$2"' _ "$completion" "$program"
    completion=$prefix/share/zsh/site-functions/_$program
    expected+=("$completion")
    check "zsh completion of $program, mode 0644" mode_is 644 "$completion"
    check "zsh completion of $program starts with #compdef $program" \
        test "$(head -n 1 "$completion" 2>/dev/null)" == "#compdef $program"
    completion=$prefix/share/fish/vendor_completions.d/$program.fish
    expected+=("$completion")
    check "fish completion of $program, mode 0644" mode_is 644 "$completion"
    check "fish completion of $program completes $program" contains "$completion" "complete -c '$program'"

    # One page for the binary and one per subcommand (as the binary itself lists them).
    pages=("$program")
    mapfile -t subcommands < <("$binary" --experimental-dump-help |
        python3 -c 'import json, sys; [print(s["commandName"]) for s in json.load(sys.stdin)["command"].get("subcommands", [])]')
    for subcommand in "${subcommands[@]}"; do pages+=("$program.$subcommand"); done
    [[ $program == qcowscope ]] && cli_subcommands=${#subcommands[@]}
    for page in "${pages[@]}"; do
        file=$prefix/share/man/man1/$page.1
        expected+=("$file")
        check "man page $page.1, mode 0644" mode_is 644 "$file"
        title=$(tr '[:lower:]' '[:upper:]' <<<"$page")
        check "man page $page.1 is titled $title(1)" contains "$file" ".Dt $title 1"
        check "man page $page.1 has a NAME section" contains "$file" ".Sh NAME"
    done
done
check "qcowscoped and qcowscope print the same version (${versions[*]})" test "${versions[0]}" == "${versions[1]}"
check "qcowscope lists subcommands, so it has pages for them (found $cli_subcommands)" test "$cli_subcommands" -gt 0

unit=$prefix/lib/systemd/system/qcowscoped.service
expected+=("$unit" "$prefix/lib/systemd/system/qcowscoped.socket" "$prefix/lib/systemd/system/qcowscoped-unix.socket")
check "qcowscoped.service, mode 0644" mode_is 644 "$unit"
check "qcowscoped.service starts the installed daemon with the /etc config" \
    contains "$unit" "ExecStart=/usr/local/bin/qcowscoped --config /etc/qcowscope/qcowscoped.json"
check "qcowscoped.socket is deploy/qcowscoped.socket" cmp -s "$prefix/lib/systemd/system/qcowscoped.socket" deploy/qcowscoped.socket
check "qcowscoped-unix.socket is deploy/qcowscoped-unix.socket" \
    cmp -s "$prefix/lib/systemd/system/qcowscoped-unix.socket" deploy/qcowscoped-unix.socket
check "qcowscoped.service differs from deploy/ at most in ExecStart" \
    test "$(diff <(grep -v '^ExecStart=' deploy/qcowscoped.service) <(grep -v '^ExecStart=' "$unit"))" == ""
for config in "$prefix/share/qcowscope/qcowscoped.json" "$dest/etc/qcowscope/qcowscoped.json"; do
    expected+=("$config")
    check "$config is deploy/qcowscoped.json" cmp -s "$config" deploy/qcowscoped.json
    check "$config, mode 0644" mode_is 644 "$config"
done

# Nothing but the expected files.
actual=$(cd "$dest" && find . -type f -o -type l | sed 's|^\./|/|' | sort)
wanted=$(printf '%s\n' "${expected[@]}" | sed "s|^$dest||" | sort)
check "exactly the expected files are installed ($(wc -l <<<"$wanted") files)" test "$actual" == "$wanted"
if [[ $actual != "$wanted" ]]; then diff <(echo "$wanted") <(echo "$actual") >&2 || true; fi

# 2. A changed /etc config survives a second install...
etc_config=$dest/etc/qcowscope/qcowscoped.json
sed -i 's|"log_level": "info"|"log_level": "warning"|' "$etc_config"
install_into "$dest"
check "a second make install keeps a changed /etc config" contains "$etc_config" '"log_level": "warning"'
check "a second make install still installs the sample in share/" \
    cmp -s "$prefix/share/qcowscope/qcowscoped.json" deploy/qcowscoped.json

# 3. ... and make uninstall, which removes everything else.
if make --no-print-directory uninstall DESTDIR="$dest" >>"$log" 2>&1; then uninstalled=1; else uninstalled=0; fi
check "make uninstall succeeds" test "$uninstalled" == 1
left=$(cd "$dest" && find . -type f -o -type l | sed 's|^\./|/|' | sort)
check "make uninstall leaves only the changed config (left: $(tr '\n' ' ' <<<"$left"))" \
    test "$left" == "/etc/qcowscope/qcowscoped.json"

# 4. Another prefix and config directory: the unit follows them.
dest=$work/opt
install_into "$dest" PREFIX=/opt/qcowscope SYSCONFDIR=/opt/qcowscope/etc
unit=$dest/opt/qcowscope/lib/systemd/system/qcowscoped.service
check "PREFIX=/opt/qcowscope: the daemon is in /opt/qcowscope/bin" "$dest/opt/qcowscope/bin/qcowscoped" --version
check "PREFIX=/opt/qcowscope: ExecStart follows PREFIX and SYSCONFDIR" \
    contains "$unit" "ExecStart=/opt/qcowscope/bin/qcowscoped --config /opt/qcowscope/etc/qcowscope/qcowscoped.json"
check "SYSCONFDIR=/opt/qcowscope/etc: the config is there" \
    cmp -s "$dest/opt/qcowscope/etc/qcowscope/qcowscoped.json" deploy/qcowscoped.json
check "PREFIX=/opt/qcowscope: nothing lands in /usr or /etc" test ! -e "$dest/usr" -a ! -e "$dest/etc"

echo "install: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
