#!/usr/bin/env bash
# Builds the real nodes' images as OCI archives into DIR (no registry, no
# container engine): `ctr -n k8s.io images import` loads them, and
# tests/cluster/registry.sh push pushes them to the local cluster's registry.
#
#   build.sh DIR             cafe.local/pause:1 and the test application
#                            cafe.local/testapp:v1, :v2, :v3 and :crash
#   build.sh --operator DIR  cafe.local/cafe-operator:dev, the Dockerfile's
#                            layout: a static release binary, user 65532
#   build.sh --shop DIR      cafe.local/shop:v1, :v2, :v3, production-sized:
#                            the test application plus a layer of ~200 MB of
#                            its own per version (below)
#
# The test application's versions differ only in VERSION (and CRASH=1: exits
# at start), so a release is a change of image, as in production.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mode=test
case "${1:-}" in
--operator | --shop)
    mode="${1#--}"
    shift
    ;;
esac
out="${1:?usage: build.sh [--operator | --shop] DIR}"
mkdir -p "$out"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
# -buildvcs=false: the same sources give the same binaries in any commit, so
# the shop images' cache key (below) changes only when the programs do.
(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$tools/" ./...)
mk() { "$tools/mkimage" "$@"; }

if [ "$mode" = operator ]; then
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

if [ "$mode" = shop ]; then
    # Production-sized images, for the registry only (never imported into
    # the nodes: a pod pulls them, as in production). Each is the test
    # application's layer (the same bytes as cafe.local/testapp's, as a
    # shared base layer is) plus a gzip layer of its own of FILLER_BYTES
    # pseudo-random, so incompressible, bytes at /srv/assets.bin, seeded by
    # the version: a release from v1 to v2 pulls ~200 MB.
    #
    # Each is written as an OCI image layout directory DIR/shop-vN (crane
    # pushes a directory as it is; ~200 MB is not worth packing into an
    # archive and unpacking again) and kept while its key, a digest of the
    # programs and the arguments, is unchanged (DIR/shop-vN.key): the
    # filler is the same bytes every time, so an unchanged key means the
    # same image, and up.sh builds them once per cache, not once per cluster.
    FILLER_BYTES="${CAFE_SHOP_FILLER_BYTES:-200000000}"
    for v in v1 v2 v3; do
        args=(-name "cafe.local/shop:$v" -entrypoint /testapp -env "VERSION=$v"
            -user 65532:65532 -port 8080
            -filler-bytes "$FILLER_BYTES" -filler-seed "shop-$v" -filler-path /srv/assets.bin
            "$tools/testapp=/testapp:0755")
        key="$({ sha256sum "$tools/testapp" "$tools/mkimage" | cut -d' ' -f1; printf '%s\n' "${args[@]}"; } |
            sed "s|$tools|TOOLS|" | sha256sum | cut -c1-16)"
        if [ -f "$out/shop-$v/index.json" ] && [ "$(cat "$out/shop-$v.key" 2>/dev/null)" = "$key" ]; then
            continue
        fi
        rm -rf "$out/shop-$v" "$out/shop-$v.key" "$out/.shop-$v.new"
        mk -layout "$out/.shop-$v.new" "${args[@]}"
        mv "$out/.shop-$v.new" "$out/shop-$v"
        echo "$key" >"$out/shop-$v.key"
        echo "built cafe.local/shop:$v ($(du -sh "$out/shop-$v" | cut -f1)) in $out/shop-$v" >&2
    done
    exit 0
fi

mk -o "$out/pause.tar" -name cafe.local/pause:1 -entrypoint /pause "$tools/pause=/pause:0755"
for v in v1 v2 v3; do
    mk -o "$out/testapp-$v.tar" -name "cafe.local/testapp:$v" -entrypoint /testapp \
        -env "VERSION=$v" -user 65532:65532 -port 8080 "$tools/testapp=/testapp:0755"
done
mk -o "$out/testapp-crash.tar" -name cafe.local/testapp:crash -entrypoint /testapp \
    -env VERSION=crash -env CRASH=1 -user 65532:65532 -port 8080 "$tools/testapp=/testapp:0755"
