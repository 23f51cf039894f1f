#!/usr/bin/env bash
# Builds the real nodes' images as OCI archives into DIR (no registry, no
# container engine): `ctr -n k8s.io images import` loads them.
#
#   build.sh DIR             cafe.local/pause:1 and the test application
#                            cafe.local/testapp:v1, :v2, :v3 and :crash
#   build.sh --operator DIR  cafe.local/cafe-operator:dev, the Dockerfile's
#                            layout: a static release binary, user 65532
#
# The test application's versions differ only in VERSION (and CRASH=1: exits
# at start), so a release is a change of image, as in production.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
operator=0
if [ "${1:-}" = --operator ]; then
    operator=1
    shift
fi
out="${1:?usage: build.sh [--operator] DIR}"
mkdir -p "$out"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tools/" ./...)
mk() { "$tools/mkimage" "$@"; }

if [ "$operator" = 1 ]; then
    # A static binary (glibc, crt-static): the image has nothing else to link.
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin cafe-operator)
    bin="$repo/target/x86_64-unknown-linux-gnu/release/cafe-operator"
    mk -o "$out/cafe-operator.tar" -name cafe.local/cafe-operator:dev \
        -entrypoint /cafe-operator -cmd run -user 65532:65532 -port 8080 \
        "$bin=/cafe-operator:0755"
    echo "$out/cafe-operator.tar"
    exit 0
fi

mk -o "$out/pause.tar" -name cafe.local/pause:1 -entrypoint /pause "$tools/pause=/pause:0755"
for v in v1 v2 v3; do
    mk -o "$out/testapp-$v.tar" -name "cafe.local/testapp:$v" -entrypoint /testapp \
        -env "VERSION=$v" -user 65532:65532 -port 8080 "$tools/testapp=/testapp:0755"
done
mk -o "$out/testapp-crash.tar" -name cafe.local/testapp:crash -entrypoint /testapp \
    -env VERSION=crash -env CRASH=1 -user 65532:65532 -port 8080 "$tools/testapp=/testapp:0755"
