#!/usr/bin/env bash
# Imports OCI image archives into every real node's containerd (the k8s.io
# namespace kubelet uses), e.g. the operator's own image:
#   tests/images/build.sh --operator DIR && tests/cluster/load-image.sh DIR/cafe-operator.tar
# and, when the cluster's registry runs (registry-lib.sh), pushes them there
# too, so that a node that forgot one pulls it.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -gt 0 ] || die "usage: load-image.sh ARCHIVE..."
[ "$REAL_NODES" = 1 ] || die "the cluster runs without real nodes (CAFE_REAL_NODES=0): nowhere to load an image"
for archive in "$@"; do
    for name in "${REAL_NODE_NAMES[@]}"; do
        sock="$NODES_STATE/$name/containerd.sock"
        [ -S "$sock" ] || die "node $name is not running (no $sock): run 'make cluster-up'"
        "$CONTAINERD_BIN/ctr" --address "$sock" -n k8s.io images import "$archive" >/dev/null 2>>"$LOGS/images.log"
    done
    say "imported $archive into ${REAL_NODE_NAMES[*]}"
    if [ "$REGISTRY_ON" = 1 ] && pid_alive registry; then
        say "pushed $(registry_push "$archive") to the registry"
    fi
done
