#!/usr/bin/env bash
# The binary that ships (the container image, `make static`, `make bench`): release, with the
# Swift runtime and Foundation linked in. Extra arguments go to `swift build`
# (`--scratch-path DIR`, `--show-bin-path`).
#
# -disable-concrete-type-metadata-mangled-name-accessors, for every module (ours and the
# dependencies): the compiler then reaches a generic type's metadata (`Set<Name>`,
# `Option<String>`) through its accessor, with the conformances it needs passed in, instead of
# a mangled name that the runtime decodes on first use, looking each conformance up by a scan
# of all 8,337 conformance records in the binary. `--help` made 36 such scans and a dry run
# 61; with the flag 28 and 40 (the rest is reflection, in ArgumentParser and the stdlib).
# Measured (interleaved medians): --help 13.1 → 11.6 ms, --version 12.6 → 10.9 ms, a dry run
# 57.4 → 55.1 ms; the binary 0.3 MB larger (122.1 → 122.4 MB).
#
# -L scripts/link: the C++ runtime linked in too (see the linker script there), one shared
# library fewer at every start. Given to swiftc, whose -L comes before the toolchain's library
# directories (-Xlinker -L would come after them, and find libstdc++.so first). SwiftPM does
# not know the script is an input: after editing it, delete the binary to relink.
set -euo pipefail
cd "$(dirname "$0")/.."
# libstdc++.a comes with GCC's development package (libstdc++-12-dev on Debian 12, which the
# Swift toolchain needs anyway): without it the link would fail far less clearly.
if [[ " $* " != *" --show-bin-path "* ]]; then
    archive=$("${CLANG:-clang}" -print-file-name=libstdc++.a 2>/dev/null || true)
    if [[ "$archive" != /* || ! -f "$archive" ]]; then
        echo "build-static.sh: libstdc++.a not found (clang -print-file-name=libstdc++.a); install GCC's libstdc++ development package (libstdc++-12-dev on Debian 12)" >&2
        exit 1
    fi
fi
exec "${SWIFT:-swift}" build -c release --static-swift-stdlib --product tsdns-reconcile \
    -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors \
    -Xswiftc -L -Xswiftc "$PWD/scripts/link" "$@"
