#!/usr/bin/env bash
# The member clusters of the multi-cluster stories and demo: two more local
# control planes, dc-2 and dc-3, each with its own etcd, API server, scheduler,
# controller manager and kwok nodes (cells cell-a, cell-b, cell-c), on ports of
# their own, state in .cluster-dc-2 and .cluster-dc-3. Each has one real node
# too, in the cell it serves (dc-2: real-dc-2-cell-b, dc-3: real-dc-3-cell-c),
# whose network is a namespace of its own (nodes.sh): the machine reaches the
# member's pods and Services, and its API server, through a veth. No
# Prometheus there (the host cluster, .cluster, has it). CAFE_MEMBER_REAL_NODES=0
# leaves the members' real nodes out.
#
#   members.sh up                  start both (idempotent), install the CRDs and
#                                  the host's least-privilege identity in each
#   members.sh down                stop both and remove their state
#   members.sh env NAME            the environment that addresses member NAME
#                                  (for lib.sh-based scripts: eval it)
#   members.sh kubeconfig NAME     a kubeconfig for the host's identity in NAME
#                                  (a fresh ServiceAccount token that EXPIRES
#                                  AFTER 48 HOURS: before then, put the output of
#                                  this command again in the member's kubeconfig
#                                  Secret in the host; the host rebuilds its
#                                  client when the Secret changes)
#   members.sh rotate NAME         recreate that identity: every token issued
#                                  before stops working (the host reads the
#                                  member Unauthorized until a fresh kubeconfig
#                                  is in its Secret)
#   members.sh stop-apiserver NAME / start-apiserver NAME
#                                  stop the member's API server (the data
#                                  center drops off) and start it again
set -euo pipefail
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPTS/../.." && pwd)"
MEMBERS=(dc-2 dc-3)
OPERATOR_BIN="${CAFE_OPERATOR_BIN:-$ROOT/target/debug/cafe-operator}"

# member_env NAME: the ports and state directory of member NAME.
member_env() {
    local k cell
    case "$1" in
    dc-2) k=1 cell=cell-b ;;
    dc-3) k=2 cell=cell-c ;;
    *) echo "members: unknown member $1 (known: ${MEMBERS[*]})" >&2; exit 2 ;;
    esac
    echo "CAFE_CLUSTER_DIR=$ROOT/.cluster-$1"
    echo "CAFE_REAL_NODES=${CAFE_MEMBER_REAL_NODES:-1}"
    echo "CAFE_NODES_SLOT=$k"
    echo "CAFE_NODES_NETNS=cafe-$1"
    echo "CAFE_REAL_NODE_CELL=$cell"
    echo "CAFE_PROMETHEUS=0"
    echo "CAFE_ETCD_PORT=$((23790 + 2 * k))"
    echo "CAFE_ETCD_PEER_PORT=$((23800 + 2 * k))"
    echo "CAFE_APISERVER_PORT=$((16443 + k))"
    echo "CAFE_KCM_PORT=$((10357 + 100 * k))"
    echo "CAFE_SCHEDULER_PORT=$((10359 + 100 * k))"
    echo "CAFE_KWOK_PORT=$((10347 + 100 * k))"
}

# in_member NAME COMMAND...: runs COMMAND with member NAME's environment.
in_member() {
    local name="$1"
    shift
    # shellcheck disable=SC2046
    env $(member_env "$name") "$@"
}

kubectl_in() {
    local name="$1"
    shift
    in_member "$name" bash -c '. "$0/lib.sh"; "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"' "$SCRIPTS" "$@"
}

# The host's identity in a member: what writing InPlaceSets there needs, and
# nothing more (docs/multi-cluster.md explains each rule).
IDENTITY='
apiVersion: v1
kind: Namespace
metadata: {name: cafe-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cafe-host, namespace: cafe-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cafe-host}
rules:
- apiGroups: [cafe.sofastack.io]
  resources: [inplacesets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  resourceNames: [inplacesets.cafe.sofastack.io]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cafe-host}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cafe-host}
subjects:
- {kind: ServiceAccount, name: cafe-host, namespace: cafe-system}
'

kubeconfig() {
    local name="$1" token server ca
    token="$(kubectl_in "$name" -n cafe-system create token cafe-host --duration 48h)"
    server="$(kubectl_in "$name" config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
    ca="$(kubectl_in "$name" config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
- name: cafe-host
  user: {token: "$token"}
contexts:
- name: $name
  context: {cluster: $name, user: cafe-host}
current-context: $name
EOF
}

case "${1:-}" in
up)
    [ -x "$OPERATOR_BIN" ] || (cd "$ROOT" && cargo build --quiet)
    for m in "${MEMBERS[@]}"; do
        in_member "$m" "$SCRIPTS/up.sh"
        "$OPERATOR_BIN" crd | kubectl_in "$m" apply --server-side --force-conflicts -f - >/dev/null
        printf '%s\n' "$IDENTITY" | kubectl_in "$m" apply -f - >/dev/null
        kubectl_in "$m" wait --for condition=Established --timeout=60s crd/inplacesets.cafe.sofastack.io >/dev/null
        echo "members: $m ready (kubeconfig: $ROOT/.cluster-$m/kubeconfig)" >&2
    done
    ;;
down)
    for m in "${MEMBERS[@]}"; do in_member "$m" "$SCRIPTS/down.sh"; done
    ;;
env) member_env "${2:?members.sh env NAME}" ;;
kubeconfig) kubeconfig "${2:?members.sh kubeconfig NAME}" ;;
rotate)
    kubectl_in "${2:?members.sh rotate NAME}" -n cafe-system delete serviceaccount cafe-host --wait >/dev/null
    printf '%s\n' "$IDENTITY" | kubectl_in "$2" apply -f - >/dev/null
    ;;
stop-apiserver)
    in_member "${2:?members.sh stop-apiserver NAME}" bash -c '
        . "$0/lib.sh"
        pid_alive kube-apiserver || die "member $1: its kube-apiserver is not running"
        pid="$(cat "$PIDS/kube-apiserver.pid")"
        # Its command line, to start it again as it ran.
        cp "/proc/$pid/cmdline" "$STATE/kube-apiserver.cmdline"
        stop_component kube-apiserver
        say "member $1: kube-apiserver stopped"' "$SCRIPTS" "$2"
    ;;
start-apiserver)
    in_member "${2:?members.sh start-apiserver NAME}" bash -c '
        . "$0/lib.sh"
        [ -f "$STATE/kube-apiserver.cmdline" ] || die "member $1: no stopped kube-apiserver to start"
        start_apiserver_as "$STATE/kube-apiserver.cmdline"
        say "member $1: kube-apiserver started again"' "$SCRIPTS" "$2"
    ;;
*)
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
