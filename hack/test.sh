#!/usr/bin/env bash
# `make test`: everything CI checks, on a fresh machine. Builds what is missing
# (cluster binaries are cached by version outside the repo), starts the local
# control plane unless one is already running, runs the checks and all tests,
# and stops the cluster it started, even on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh

command -v cargo >/dev/null 2>&1 ||
    die "cargo is not on PATH: install Rust (rustup or your distribution's cargo), then run 'make test' again"

started_cluster=0
started_members=0
scratch="$(mktemp -d)"
cluster_build=
cleanup() {
    [ -z "$cluster_build" ] || kill -- "-$cluster_build" 2>/dev/null || true
    if [ "$started_members" = 1 ]; then
        tests/cluster/members.sh down || true
    fi
    if [ "$started_cluster" = 1 ]; then
        tests/cluster/down.sh || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# The Debian packages the cluster and the checks below use (nft, iptables,
# libseccomp-dev, ..., and Chromium with its WebDriver for the console's
# stories): a fresh machine has none of them.
CAFE_BROWSER=1 tests/cluster/deps.sh

# The cluster's binaries (first run only; then cached) build while cargo
# does: each leaves the other's idle moments (links, serial crates) to it.
# Its own process group, so that a failed check stops all of it.
setsid tests/cluster/build.sh >"$scratch/cluster-build.log" 2>&1 &
cluster_build=$!

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== links in the docs, and no import cycle in src/"
hack/check-links.sh
python3 hack/check-imports.py

echo "== building the tests (once: the operator binary is built with them)"
cargo test --no-run --quiet

echo "== the operator's image (a static release binary, user 65532: the Dockerfile's layout)"
tests/images/build.sh --operator target/images

echo "== local control plane"
wait "$cluster_build" || {
    cat "$scratch/cluster-build.log"
    die "building the local control plane failed (above)"
}
cluster_build=
cat "$scratch/cluster-build.log"
if [ -f "$PIDS/kube-apiserver.pid" ] && pid_alive kube-apiserver; then
    echo "reusing the running cluster ($KUBECONFIG_FILE)"
else
    started_cluster=1
    # What the machine looks like without the cluster, to check cluster-down.
    tests/cluster/machine-state.sh >"$scratch/machine-before"
    tests/cluster/up.sh
fi
export KUBECONFIG="$KUBECONFIG_FILE"
export PATH="$K8S_BIN:$HELM_BIN:$PATH"
# The metric-analysis stories query the cluster's Prometheus and register
# their exporters with it.
export CAFE_PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
export CAFE_PROMETHEUS_TARGETS="$PROMETHEUS_TARGETS"

tests/cluster/load-image.sh target/images/cafe-operator.tar
# The helm story installs the chart with this image on the real nodes.
export CAFE_OPERATOR_IMAGE=cafe.local/cafe-operator:dev

echo "== installing the CRDs"
target/debug/cafe-operator crd | kubectl apply --server-side --force-conflicts -f -
kubectl wait --for condition=Established --timeout=60s \
    crd/cafedeployments.cafe.sofastack.io crd/inplacesets.cafe.sofastack.io \
    crd/memberclusters.cafe.sofastack.io crd/releasefreezes.cafe.sofastack.io

echo "== cargo test (unit, CRD freshness, e2e on the local control plane)"
# Each e2e test runs its own operator: 4 at a time keep a 2-core machine responsive.
# The chaos story restarts the API server, so it runs alone afterwards.
cargo test -- --include-ignored --test-threads 4 --skip chaos:: --skip real_nodes:: --skip real_operator:: --skip multicluster::
echo "== several clusters: a host and two member control planes, one release over all (alone)"
started_members=1
tests/cluster/members.sh up
cargo test --test e2e -- --include-ignored --test-threads 1 --nocapture multicluster::
tests/cluster/members.sh down
started_members=0
echo "== real nodes: real containers, requests through kube-proxy during releases (alone)"
# --nocapture: the failed-request counts are printed (the table in
# docs/local-cluster.md, "How many requests failed during a release").
cargo test --test e2e -- --include-ignored --test-threads 1 --nocapture real_nodes:: real_operator::
echo "== chaos: SIGKILLs and an API server restart during a release (alone)"
cargo test --test e2e -- --include-ignored --test-threads 1 chaos::

if [ "$started_cluster" = 1 ]; then
    echo "== make cluster-down leaves the machine as it found it, and the cluster starts again"
    started_cluster=0
    tests/cluster/down.sh
    tests/cluster/machine-state.sh >"$scratch/machine-after"
    diff -u "$scratch/machine-before" "$scratch/machine-after" ||
        die "make cluster-down left the differences above on this machine"
    started_cluster=1
    tests/cluster/up.sh
    # The second teardown comes while the real nodes start and stop pods.
    tests/cluster/down-while-busy.sh
    started_cluster=0
    tests/cluster/machine-state.sh >"$scratch/machine-after"
    diff -u "$scratch/machine-before" "$scratch/machine-after" ||
        die "the second make cluster-down left the differences above on this machine"
    echo "up -> down -> up -> down with pods starting and stopping: nothing left behind"
fi
