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
# Prometheus scrapes every file_sd target file written here (tests and the
# demo register their exporters by writing <name>.json).
PROMETHEUS_TARGETS="$STATE/prometheus/targets"

# Pod IPs come from a range that does not overlap the Service range.
SERVICE_CIDR="10.96.0.0/16"
POD_CIDR="10.244.0.0/16"

# The components, in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus)

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
