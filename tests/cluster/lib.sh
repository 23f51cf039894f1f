# Shared settings of the local control plane scripts. Sourced, not run.
# Every path and port can be overridden from the environment.

CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SCRIPTS/../.." && pwd)"
# shellcheck source=versions.env
. "$CLUSTER_SCRIPTS/versions.env"

CAFE_CACHE="${CAFE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cafe-operator}"
BIN_CACHE="$CAFE_CACHE/bin"
K8S_BIN="$BIN_CACHE/kubernetes-$KUBERNETES_VERSION"
ETCD_BIN="$BIN_CACHE/etcd-$ETCD_VERSION"
KWOK_BIN="$BIN_CACHE/kwok-$KWOK_VERSION"
HELM_BIN="$BIN_CACHE/helm-$HELM_VERSION"
PROMETHEUS_BIN="$BIN_CACHE/prometheus-$PROMETHEUS_VERSION"
NODE_BIN="$BIN_CACHE/kubernetes-node-$KUBERNETES_VERSION"
CONTAINERD_BIN="$BIN_CACHE/containerd-$CONTAINERD_VERSION"
RUNC_BIN="$BIN_CACHE/runc-$RUNC_VERSION"
CNI_BIN="$BIN_CACHE/cni-plugins-$CNI_PLUGINS_VERSION"
REGISTRY_BIN="$BIN_CACHE/registry-$REGISTRY_VERSION"
CRANE_BIN="$BIN_CACHE/crane-$CRANE_VERSION"

STATE="${CAFE_CLUSTER_DIR:-$REPO_ROOT/.cluster}"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
KUBECONFIG_FILE="$STATE/kubeconfig"

ETCD_PORT="${CAFE_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${CAFE_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${CAFE_APISERVER_PORT:-16443}"
KCM_PORT="${CAFE_KCM_PORT:-10357}"
SCHEDULER_PORT="${CAFE_SCHEDULER_PORT:-10359}"
KWOK_PORT="${CAFE_KWOK_PORT:-10347}"
PROMETHEUS_PORT="${CAFE_PROMETHEUS_PORT:-19090}"
# The real nodes' registry (registry-lib.sh): pushes go to REGISTRY_PORT; the
# bandwidth throttle's control API is on REGISTRY_THROTTLE_PORT and each real
# node pulls through a port of its own after it (+1, +2).
REGISTRY_PORT="${CAFE_REGISTRY_PORT:-15000}"
REGISTRY_THROTTLE_PORT="${CAFE_REGISTRY_THROTTLE_PORT:-15010}"
# Prometheus scrapes every file_sd target file written here (tests and the
# demo register their exporters by writing <name>.json).
PROMETHEUS_TARGETS="$STATE/prometheus/targets"

# Every address of the cluster is in 198.18.0.0/15, the range reserved for
# benchmark networks (nodes.sh has the plan): pods in 198.18.0.0/16 (the kwok
# nodes' from 198.18.101.0/24 up), Services in 198.19.0.0/17.
#
# A member cluster (tests/cluster/members.sh) is slot 1 or 2 and has slices
# of its own, so that the machine routes to each: its real node's pods in
# 198.18.1<slot>.0/24... (see nodes.sh), its Services in 198.19.128.0/20
# (slot 1) or 198.19.144.0/20 (slot 2).
NODES_SLOT="${CAFE_NODES_SLOT:-0}"
if [ "$NODES_SLOT" = 0 ]; then
    SERVICE_CIDR="198.19.0.0/17"
    SERVICE_CIDR_FIRST_IP="198.19.0.1"
    POD_CIDR="198.18.0.0/16"
else
    SERVICE_CIDR="198.19.$((112 + 16 * NODES_SLOT)).0/20"
    SERVICE_CIDR_FIRST_IP="198.19.$((112 + 16 * NODES_SLOT)).1"
    POD_CIDR="198.18.$((10 + NODES_SLOT)).0/24"
fi

# The real nodes (nodes.sh): on by default; CAFE_REAL_NODES=0 starts the
# kwok nodes only (and binds the API server to 127.0.0.1 alone).
REAL_NODES="${CAFE_REAL_NODES:-1}"
# With real nodes, the API server listens on this address (on the link
# nodes.sh makes) so that pods, and a member's node in its own network
# namespace, reach it.
if [ "$REAL_NODES" = 1 ] && [ "$NODES_SLOT" = 0 ]; then
    HOST_ADDRESS="${CAFE_HOST_ADDRESS:-198.19.255.254}"
elif [ "$REAL_NODES" = 1 ]; then
    HOST_ADDRESS="198.19.252.$((4 * NODES_SLOT + 1))"
else
    HOST_ADDRESS=127.0.0.1
fi
KUBECTL="$K8S_BIN/kubectl"

# Prometheus: on by default; CAFE_PROMETHEUS=0 leaves it out (the member
# clusters of the multi-cluster stories, tests/cluster/members.sh).
PROMETHEUS_ON="${CAFE_PROMETHEUS:-1}"
# The components, in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
[ "$PROMETHEUS_ON" = 0 ] || COMPONENTS+=(prometheus)
# shellcheck source=nodes.sh
. "$CLUSTER_SCRIPTS/nodes.sh"
# shellcheck source=registry-lib.sh
. "$CLUSTER_SCRIPTS/registry-lib.sh"
if [ "$REGISTRY_ON" = 1 ]; then COMPONENTS+=(registry registry-throttle); fi
if [ "$REAL_NODES" = 1 ]; then
    mapfile -t -O "${#COMPONENTS[@]}" COMPONENTS < <(real_node_components)
fi

die() {
    echo "cluster: error: $*" >&2
    exit 1
}

say() {
    echo "cluster: $*" >&2
}

# pid_alive NAME: the recorded process of component NAME is running.
pid_alive() {
    local f="$PIDS/$1.pid"
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_unless_running: starts the local control plane (up.sh) unless one is
# running, and points KUBECONFIG at it. Sets started_cluster=1 when it started
# it, so that the caller's cleanup can stop it again (hack/bench.sh,
# hack/console-screenshot.sh).
start_unless_running() {
    if [ -f "$PIDS/kube-apiserver.pid" ] && pid_alive kube-apiserver; then
        echo "== reusing the running cluster ($KUBECONFIG_FILE)"
    else
        # shellcheck disable=SC2034 # read by the caller's cleanup
        started_cluster=1
        "$CLUSTER_SCRIPTS/up.sh"
    fi
    export KUBECONFIG="$KUBECONFIG_FILE"
}

# stop_component NAME: SIGTERM, five seconds, SIGKILL; forgets its pid.
stop_component() {
    local f="$PIDS/$1.pid" pid
    [ -f "$f" ] || return 0
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        STOPPED+=("$1")
    fi
    rm -f "$f"
}

# start_apiserver_as FILE: starts kube-apiserver with the command line
# recorded in FILE (NUL-separated, as /proc/<pid>/cmdline) and waits until it
# is ready (restart-apiserver.sh, members.sh start-apiserver).
start_apiserver_as() {
    local cmd
    mapfile -d '' cmd <"$1"
    # The server outlives its caller: it must not keep a descriptor the
    # caller inherited (a test run's lock, a pipe someone waits to close).
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        exec setsid "${cmd[@]}" >>"$LOGS/kube-apiserver.log" 2>&1 </dev/null
    ) &
    echo $! >"$PIDS/kube-apiserver.pid"
    for _ in $(seq 1 300); do
        if "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.3
    done
    die "kube-apiserver did not become ready again; see $LOGS/kube-apiserver.log"
}
