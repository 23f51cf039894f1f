#!/usr/bin/env bash
# `make demo-multicluster`: one release over three data centers that each run
# their own Kubernetes. Starts the local control plane (the host, cell-a) and
# two member control planes (dc-2 with cell-b, dc-3 with cell-c), registers
# the members with least-privilege kubeconfigs, runs the operator in each
# (host role here, member role there), and walks a release: Beta one pod per
# cell in every cluster, confirmation, a data center dropping off mid-group
# (the group waits and stalls naming it), its return, and an emergency freeze.
# The clusters are left running: `tests/cluster/members.sh down` and
# `make cluster-down` stop them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Building cafe-operator and kubectl-cafe (release)"
cargo build --release --quiet --bins
OPERATOR="$REPO_ROOT/target/release/cafe-operator"
export PATH="$REPO_ROOT/target/release:$PATH"
export CAFE_OPERATOR_BIN="$OPERATOR"

step "Starting the host control plane and the members dc-2 and dc-3"
tests/cluster/up.sh
tests/cluster/members.sh up
export KUBECONFIG="$KUBECONFIG_FILE"
kubectl() { "$K8S_BIN/kubectl" "$@"; }
member() { local m="$1"; shift; "$K8S_BIN/kubectl" --kubeconfig "$REPO_ROOT/.cluster-$m/kubeconfig" "$@"; }
"$OPERATOR" crd | kubectl apply --server-side --force-conflicts -f - >/dev/null

NS=shop
for c in host dc-2 dc-3; do
    run() { if [ "$c" = host ]; then kubectl "$@"; else member "$c" "$@"; fi; }
    run delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
done

step "Starting the operators: the host's here, one in each member (--role member)"
pids=()
"$OPERATOR" run --metrics-bind-address 127.0.0.1:18081 --health-probe-bind-address 0 \
    >"$LOGS/operator-host.log" 2>&1 &
pids+=($!)
for m in dc-2 dc-3; do
    KUBECONFIG="$REPO_ROOT/.cluster-$m/kubeconfig" "$OPERATOR" run --role member \
        --metrics-bind-address 0 --health-probe-bind-address 0 \
        >"$LOGS/operator-$m.log" 2>&1 &
    pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

for _ in $(seq 1 60); do kubectl get namespace "$NS" >/dev/null 2>&1 || break; sleep 1; done
kubectl create namespace "$NS" >/dev/null
kubectl create namespace cafe-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
for m in dc-2 dc-3; do
    for _ in $(seq 1 60); do member "$m" get namespace "$NS" >/dev/null 2>&1 || break; sleep 1; done
    member "$m" create namespace "$NS" >/dev/null
    tests/cluster/members.sh kubeconfig "$m" >"$STATE/$m.kubeconfig"
    kubectl -n cafe-system create secret generic "$m" --from-file=kubeconfig="$STATE/$m.kubeconfig" \
        --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done

step "Registering the members and the CafeDeployment (examples/multi-cluster.yaml)"
kubectl apply -f examples/multi-cluster.yaml
kubectl wait --for condition=Ready --timeout=60s membercluster/dc-2 membercluster/dc-3
kubectl get memberclusters

wait_phase() { # PHASE SECONDS
    for _ in $(seq 1 "$2"); do
        [ "$(kubectl -n "$NS" get cafedeployment payments -o jsonpath='{.status.phase}')" = "$1" ] && return 0
        sleep 1
    done
    echo "timed out waiting for phase $1" >&2
    return 1
}
images() {
    for c in host dc-2 dc-3; do
        if [ "$c" = host ]; then
            printf '   %-5s %s\n' "$c" "$(kubectl -n "$NS" get pods -l app=payments -o jsonpath='{.items[*].spec.containers[0].image}')"
        else
            printf '   %-5s %s\n' "$c" "$(member "$c" -n "$NS" get pods -l app=payments -o jsonpath='{.items[*].spec.containers[0].image}')"
        fi
    done
}

step "Creating: Beta one pod per cell (one in each cluster), then a confirmation"
wait_phase WaitingForConfirm 90
kubectl cafe -n "$NS" confirm payments
wait_phase Healthy 90
kubectl cafe -n "$NS" get payments

step "Releasing nginx:1.26: the Beta group is one pod in each data center"
kubectl cafe -n "$NS" set image payments app=nginx:1.26
wait_phase WaitingForConfirm 90
images

step "dc-3 drops off; the person confirms the next group"
tests/cluster/members.sh stop-apiserver dc-3
kubectl cafe -n "$NS" confirm payments
echo "   the reachable data centers finish their part; cell-c waits (Unknown), and past"
echo "   progressDeadlineSeconds (60 s) the release stalls naming the cluster:"
wait_phase Stalled 150
kubectl -n "$NS" get cafedeployment payments -o jsonpath='{.status.release.message}{"\n"}'
kubectl get memberclusters

step "dc-3 comes back: its part is released, no group is replayed"
tests/cluster/members.sh start-apiserver dc-3
wait_phase Healthy 240
images

step "Emergency: freeze every release, everywhere"
kubectl cafe freeze --reason "demo: incident 4711" --name demo-freeze
kubectl cafe -n "$NS" set image payments app=nginx:1.27
wait_phase Frozen 60
kubectl -n "$NS" get cafedeployment payments -o jsonpath='{.status.phase}: {.status.release.message}{"\n"}'
kubectl cafe unfreeze demo-freeze
wait_phase WaitingForConfirm 90
kubectl cafe -n "$NS" rollback payments
wait_phase Healthy 120
images
kubectl delete releasefreeze demo-freeze >/dev/null

step "Done. The three clusters keep running:"
echo "   kubectl get memberclusters; kubectl cafe -n $NS get payments"
echo "   member: kubectl --kubeconfig .cluster-dc-2/kubeconfig -n $NS get inplacesets,pods"
echo "   stop: tests/cluster/members.sh down; make cluster-down"
