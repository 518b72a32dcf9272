#!/usr/bin/env bash
# build-fuzz.sh [OUT_DIR]: builds the libFuzzer target Tests/Fuzz/FuzzTarget.swift with swiftc
# (no SwiftPM, so normal builds never pay for it): the QCOW2 and QCOW2API sources are compiled as
# modules with -sanitize=fuzzer,address and linked with the target. Skips the build when the binary
# is newer than every source. Prints the fuzzer's path. OUT_DIR defaults to .build/fuzz.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/.build/fuzz}
mkdir -p "$out"
cd "$root"
bin=$out/qcow2-fuzz
if [[ -x $bin && -z $(find Sources/QCOW2 Sources/QCOW2API Sources/CSystemShim Tests/Fuzz/FuzzTarget.swift \
        "$0" -newer "$bin" -print -quit) ]]; then
    echo "$bin"
    exit 0
fi
swiftc=${SWIFTC:-swiftc}
flags=(-swift-version 6 -O -g -sanitize=fuzzer,address -parse-as-library
       -enable-upcoming-feature ExistentialAny -enable-upcoming-feature MemberImportVisibility
       -enable-upcoming-feature InternalImportsByDefault)
mapfile -t qcow2 < <(find Sources/QCOW2 -name '*.swift' | sort)
mapfile -t api < <(find Sources/QCOW2API -name '*.swift' | sort)
# swift-http-types, which QCOW2API's HTTP layer speaks: the package checkout SwiftPM resolved.
[[ -d .build/checkouts/swift-http-types ]] || swift package resolve >/dev/null
mapfile -t httptypes < <(find .build/checkouts/swift-http-types/Sources/HTTPTypes -name '*.swift' | sort)
quiet() { grep -v -e 'warning: public import of' -e '^ *[0-9]* |' -e '^ *|' -e '^$' >&2 || true; }
"$swiftc" "${flags[@]}" -module-name QCOW2 -wmo -emit-module -emit-module-path "$out/QCOW2.swiftmodule" \
    -c "${qcow2[@]}" -o "$out/QCOW2.o" 2> >(quiet)
"$swiftc" -swift-version 5 -O -g -sanitize=fuzzer,address -parse-as-library -module-name HTTPTypes -wmo \
    -emit-module -emit-module-path "$out/HTTPTypes.swiftmodule" -c "${httptypes[@]}" -o "$out/HTTPTypes.o" 2> >(quiet)
"$swiftc" "${flags[@]}" -module-name QCOW2API -wmo -enable-testing -I "$out" -I Sources/CSystemShim \
    -emit-module -emit-module-path "$out/QCOW2API.swiftmodule" -c "${api[@]}" -o "$out/QCOW2API.o" 2> >(quiet)
"$swiftc" "${flags[@]}" -use-ld=lld -module-name QCOW2Fuzz -I "$out" -I Sources/CSystemShim \
    Tests/Fuzz/FuzzTarget.swift "$out/QCOW2.o" "$out/HTTPTypes.o" "$out/QCOW2API.o" -o "$bin.tmp" 2> >(quiet)
mv "$bin.tmp" "$bin"
echo "$bin"
