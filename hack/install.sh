#!/usr/bin/env bash
# `make install`: the operator, installed with its Helm chart on the local
# control plane as a user would install it in production, on the real nodes.
# Builds the operator's image, imports it into the real nodes, then
# `helm upgrade --install` with deploy/local-values.yaml. Starts the cluster
# unless one is running (and leaves it running: `make cluster-down` stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh

namespace="${CAFE_INSTALL_NAMESPACE:-cafe-system}"
echo "== the operator's image (a static release binary; the first build takes a few minutes)"
tests/images/build.sh --operator target/images >/dev/null
start_unless_running
export PATH="$K8S_BIN:$HELM_BIN:$PATH"
echo "== importing it into the real nodes"
tests/cluster/load-image.sh target/images/cafe-operator.tar
echo "== helm upgrade --install cafe-operator charts/cafe-operator -n $namespace"
helm upgrade --install cafe-operator charts/cafe-operator \
    --namespace "$namespace" --create-namespace \
    --values deploy/local-values.yaml "$@" \
    --wait --timeout 300s
kubectl -n "$namespace" get pods -o wide
echo "installed: kubectl -n $namespace logs deploy/cafe-operator  (KUBECONFIG=$KUBECONFIG_FILE)"
