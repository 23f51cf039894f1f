#!/usr/bin/env bash
# `make bench [BENCH_ARGS="--pods 10000 ..."]`: benches/bench/ on the local
# control plane. Starts the cluster unless one is running (and then stops it
# again at the end); the benchmark removes the nodes and namespaces it made.
# Results: the screen and target/bench/results.md (or --out FILE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh

started_cluster=0
started_members=0
cleanup() {
    if [ "$started_members" = 1 ]; then
        tests/cluster/members.sh down || true
    fi
    if [ "$started_cluster" = 1 ]; then
        tests/cluster/down.sh || true
    fi
}
trap cleanup EXIT

echo "== building the benchmark and the operator (release)"
cargo bench --bench bench --no-run --quiet

start_unless_running
export PATH="$K8S_BIN:$PATH"

echo "== installing the CRDs"
# The operator binary `cargo bench` built (the bench profile is the release one).
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
"$target_dir/release/cafe-operator" crd | kubectl apply --server-side --force-conflicts -f - >/dev/null
kubectl wait --for condition=Established --timeout=60s \
    crd/cafedeployments.cafe.sofastack.io crd/inplacesets.cafe.sofastack.io >/dev/null

# Part (g) three-clusters releases over three clusters: the two members too
# (unless running). --parts names it by letter or by name.
parts="$(printf '%s\n' "$@" | sed -n 's/^--parts=\{0,1\}//p')"
case " $* " in *" --parts "*) parts="$(printf '%s ' "$@" | sed -n 's/.*--parts \([^ ]*\).*/\1/p')" ;; esac
if [ -z "$parts" ] || [[ ",$parts," == *,g,* || ",$parts," == *,three-clusters,* ]]; then
    if [ -f "$REPO_ROOT/.cluster-dc-2/pids/kube-apiserver.pid" ]; then
        echo "== reusing the running member clusters"
    else
        started_members=1
        # Part (g) three-clusters releases simulated pods: the members' real
        # nodes would only add their agents' load to the figures.
        CAFE_MEMBER_REAL_NODES="${CAFE_MEMBER_REAL_NODES:-0}" \
            CAFE_OPERATOR_BIN="$target_dir/release/cafe-operator" tests/cluster/members.sh up
    fi
fi

cargo bench --bench bench -- "$@"
