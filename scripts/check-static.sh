#!/usr/bin/env bash
# The container image's claim: the release binary, built with the static Swift standard
# library (by scripts/build-static.sh, as the Dockerfile builds it), needs nothing at run
# time but the base system and libcurl (with the TLS library libcurl4 brings), which it loads
# itself when a command needs it.
# Prints its size, NEEDED entries and ldd, and shows libcurl loading.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT="${SWIFT:-swift}"
SCRATCH=.build-static
binary="$SCRATCH/release/tsdns-reconcile"
stripped="$(mktemp)"
build_log="$(mktemp)"
trap 'rm -f "$stripped" "$build_log"' EXIT
if ! SWIFT="$SWIFT" scripts/build-static.sh --scratch-path "$SCRATCH" > "$build_log" 2>&1; then
    cat "$build_log"
    echo "FAIL: the static build failed"
    exit 1
fi
strip -o "$stripped" "$binary"
echo "static binary: $binary, $(stat -c %s "$binary") bytes ($(stat -c %s "$stripped") stripped)"
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "NEEDED: $(tr "\n" " " <<< "$needed")"
# The base system (glibc, the GCC runtime of Debian's base) and libcurl4's own dependencies;
# no libswift*, no libFoundation*, no ICU, and no libstdc++: build-static.sh links it in.
allowed='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libutil\.so\.1|ld-linux-x86-64\.so\.2|libgcc_s\.so\.1|libz\.so\.1|libcurl\.so\.4|libssl\.so\.3|libcrypto\.so\.3)$'
status=0
for library in $needed; do
    if [[ "$library" == libstdc++.so.* ]]; then
        echo "FAIL: the static binary loads $library: build-static.sh should link libstdc++.a in (scripts/link/)"
        status=1
    elif ! [[ "$library" =~ $allowed ]]; then
        echo "FAIL: the static binary needs $library, which the runtime image does not have"
        status=1
    fi
done
echo "ldd:"
ldd "$binary" | sed 's/^/  /'
if ldd "$binary" | grep -E 'libswift|libFoundation|libicu|not found'; then
    echo "FAIL: the binary still needs the Swift runtime or a library that is missing"
    status=1
fi
"$binary" --version
# libcurl is not linked but loaded by the commands that send: a request must reach the network.
answer=$("$binary" ctl --server http://127.0.0.1:9 status 2>&1 || true)
if ! grep -q "Couldn't connect to server" <<< "$answer"; then
    echo "$answer"
    echo "FAIL: the static binary cannot load libcurl.so.4"
    status=1
else
    echo "libcurl loads when needed: $(head -1 <<< "$answer")"
fi
[ "$status" -eq 0 ] && echo "static binary check: OK"
exit "$status"
