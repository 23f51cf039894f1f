#!/usr/bin/env bash
# Starts the local control plane: etcd, kube-apiserver (RBAC), kube-controller-
# manager, kube-scheduler and kwok with kubelet-like stages, bound to 127.0.0.1,
# and registers six fake nodes in three cells; with the real nodes (nodes.sh),
# their OCI registry behind a bandwidth throttle (registry-lib.sh). Idempotent:
# on a running cluster it only says so. The admin kubeconfig is written to
# .cluster/kubeconfig.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$CLUSTER_SCRIPTS/deps.sh"
for tool in openssl curl base64 setsid; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "'$tool' is not on PATH; it is needed to start the cluster: install it (Debian: apt-get install openssl curl coreutils util-linux), then run 'make cluster-up' again"
done
command -v ss >/dev/null 2>&1 ||
    say "'ss' (iproute2) is missing: ports are not checked before starting; a busy port shows up as a component that fails to start"

"$CLUSTER_SCRIPTS/build.sh"

START_TIME=$SECONDS

apiserver_ready() {
    [ -f "$KUBECONFIG_FILE" ] &&
        "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null 2>&1
}

# --- Already running, or left behind by a killed run? -------------------------
if [ -d "$PIDS" ] && ls "$PIDS"/*.pid >/dev/null 2>&1; then
    alive=() dead=()
    for c in "${COMPONENTS[@]}"; do
        if pid_alive "$c"; then alive+=("$c"); else dead+=("$c"); fi
    done
    if [ ${#dead[@]} -eq 0 ] && apiserver_ready; then
        say "already running (kubeconfig: $KUBECONFIG_FILE); nothing to do"
        exit 0
    fi
    die "found state in $STATE from a cluster that is not fully running (stopped: ${dead[*]:-none}; running: ${alive[*]:-none}). Run 'make cluster-down' to clear it, then 'make cluster-up'."
fi
if [ -e "$STATE" ] && [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
    die "found a stale $STATE (data left by a run that was killed). Run 'make cluster-down' to remove it, then 'make cluster-up'."
fi

# --- Ports --------------------------------------------------------------------
check_port() {
    local port="$1" who="$2" var="$3" holder
    if ss -ltnH "sport = :$port" 2>/dev/null | grep -q .; then
        holder="$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 | sed 's/users:(("//; s/",pid=/ pid /')"
        die "port $port, needed by $who, is already in use${holder:+ by $holder}. Stop that process, or choose another port with $var=<port> make cluster-up."
    fi
}
check_port "$ETCD_PORT" etcd CAFE_ETCD_PORT
check_port "$ETCD_PEER_PORT" "etcd (peer)" CAFE_ETCD_PEER_PORT
check_port "$APISERVER_PORT" kube-apiserver CAFE_APISERVER_PORT
check_port "$KCM_PORT" kube-controller-manager CAFE_KCM_PORT
check_port "$SCHEDULER_PORT" kube-scheduler CAFE_SCHEDULER_PORT
check_port "$KWOK_PORT" kwok CAFE_KWOK_PORT
[ "$PROMETHEUS_ON" = 0 ] || check_port "$PROMETHEUS_PORT" prometheus CAFE_PROMETHEUS_PORT
[ "$REGISTRY_ON" = 0 ] || registry_check_ports
if [ "$REAL_NODES" = 1 ]; then
    # The real nodes' network is the machine's: one cluster at a time has it.
    # Its owner's state directory is the link's alias; an owner whose API
    # server is gone (a killed run, a deleted checkout) is cleaned up here.
    owner="$(node_link_owner)"
    if [ -n "$owner" ] && [ "$owner" != "$STATE" ] &&
        ! PIDS="$owner/pids" pid_alive kube-apiserver; then
        say "the real nodes of a cluster that no longer runs ($owner) left their network: removing it"
        CAFE_CLUSTER_DIR="$owner" "$CLUSTER_SCRIPTS/down.sh"
    fi
    for link in "$NODE_LINK" "${REAL_NODE_BRIDGES[@]}"; do
        ! ip link show "$link" >/dev/null 2>&1 ||
            die "the network link $link exists: the real nodes of the cluster in ${owner:-an unknown directory} run here (only one cluster at a time can have real nodes on a machine), or a killed run left it. Run 'make cluster-down' in that checkout (or 'CAFE_CLUSTER_DIR=<its .cluster> tests/cluster/down.sh', or 'ip link del $link'), or start this cluster with CAFE_REAL_NODES=0."
    done
    # A member's node has a network namespace of its own: its ports are free.
    [ -n "$NODES_NETNS" ] || for i in "${!REAL_NODE_NAMES[@]}"; do
        check_port "${REAL_NODE_KUBELET_PORTS[$i]}" "kubelet ${REAL_NODE_NAMES[$i]}" "(nodes.sh)"
        check_port "${REAL_NODE_HEALTHZ_PORTS[$i]}" "kubelet ${REAL_NODE_NAMES[$i]} healthz" "(nodes.sh)"
    done
    if [ -z "$NODES_NETNS" ]; then
        check_port "$KUBE_PROXY_HEALTHZ_PORT" kube-proxy CAFE_KUBE_PROXY_HEALTHZ_PORT
        check_port "$KUBE_PROXY_METRICS_PORT" "kube-proxy metrics" CAFE_KUBE_PROXY_METRICS_PORT
    fi
fi

mkdir -p "$PKI" "$LOGS" "$PIDS" "$STATE/etcd"

# From here on, a failure stops whatever was started: never a half-started cluster.
started=0
on_exit() {
    if [ "$started" != 1 ]; then
        say "start failed; stopping what was started"
        "$CLUSTER_SCRIPTS/down.sh" >/dev/null 2>&1 || true
    fi
}
trap on_exit EXIT

# --- Certificates -------------------------------------------------------------
openssl_quiet() { openssl "$@" >/dev/null 2>&1; }

openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 -subj "/CN=cafe-operator-local-ca"
openssl_quiet genrsa -out "$PKI/sa.key" 2048
openssl_quiet rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

# issue NAME SUBJECT USAGE [SANS]: a certificate signed by the local CA.
issue() {
    local name="$1" subject="$2" usage="$3" sans="${4:-}"
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usage"
        [ -n "$sans" ] && echo "subjectAltName=$sans"
    } >"$PKI/$name.ext"
    openssl_quiet req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subject"
    openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -CAcreateserial -out "$PKI/$name.crt" -days 3650 -extfile "$PKI/$name.ext"
}
issue apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$HOST_ADDRESS,IP:$SERVICE_CIDR_FIRST_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue admin "/O=system:masters/CN=cafe-admin" clientAuth
issue controller-manager "/CN=system:kube-controller-manager" clientAuth
issue scheduler "/CN=system:kube-scheduler" clientAuth
issue kwok "/O=system:masters/CN=kwok" clientAuth
if [ "$REAL_NODES" = 1 ]; then
    # The Node authorizer knows a kubelet by this subject.
    for n in "${REAL_NODE_NAMES[@]}"; do
        issue "kubelet-$n" "/O=system:nodes/CN=system:node:$n" clientAuth
    done
    issue kube-proxy "/CN=system:kube-proxy" clientAuth
    # The API server's client certificate for kubelets (logs, exec).
    issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
fi

# kubeconfig NAME: a kubeconfig for the client certificate NAME, certs embedded
# so that it works from any directory.
kubeconfig() {
    local name="$1" out="$2"
    cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cafe-local
  cluster:
    server: https://$HOST_ADDRESS:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$name.crt")
    client-key-data: $(base64 -w0 <"$PKI/$name.key")
contexts:
- name: cafe-local
  context: {cluster: cafe-local, user: $name}
current-context: cafe-local
EOF
    chmod 600 "$out"
}
kubeconfig admin "$KUBECONFIG_FILE"
kubeconfig controller-manager "$STATE/controller-manager.kubeconfig"
kubeconfig scheduler "$STATE/scheduler.kubeconfig"
kubeconfig kwok "$STATE/kwok.kubeconfig"
if [ "$REAL_NODES" = 1 ]; then
    for n in "${REAL_NODE_NAMES[@]}"; do kubeconfig "kubelet-$n" "$STATE/kubelet-$n.kubeconfig"; done
    kubeconfig kube-proxy "$STATE/kube-proxy.kubeconfig"
fi

# --- Processes ----------------------------------------------------------------
# start NAME BINARY ARGS...: runs a component in its own session, records its pid.
start() {
    local name="$1"
    shift
    setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
}

# wait_for NAME SECONDS COMMAND...: polls COMMAND; fails with the log's tail when
# the component exits or the time runs out.
wait_for() {
    local name="$1" limit="$2"
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ! pid_alive "$name"; then
            say "$name exited while starting. Last lines of $LOGS/$name.log:"
            tail -n 20 "$LOGS/$name.log" >&2
            false
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            say "$name was not ready after ${limit}s. Last lines of $LOGS/$name.log:"
            tail -n 20 "$LOGS/$name.log" >&2
            false
            return 1
        fi
        sleep 0.3
    done
}

if [ "$REAL_NODES" = 1 ]; then
    nodes_record_host
    nodes_network_up
    # Pods reach the API server through the kubernetes Service: its endpoint
    # is this address, kept by the API server's lease reconciler.
    apiserver_network=(--bind-address "$HOST_ADDRESS" --advertise-address "$HOST_ADDRESS"
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt"
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key"
        --kubelet-preferred-address-types InternalIP)
else
    apiserver_network=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1
        --authorization-mode RBAC --endpoint-reconciler-type none)
fi

start etcd "$ETCD_BIN/etcd" \
    --name cafe-local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "cafe-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# The API server's audit log (the sign-off stories read the break-glass
# annotation the admission policy writes there): metadata of writes to this
# project's resources only, so it stays small.
cat >"$STATE/audit-policy.yaml" <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete]
    resources:
      - group: cafe.sofastack.io
  - level: None
AUDIT

start kube-apiserver "$K8S_BIN/kube-apiserver" \
    "${apiserver_network[@]}" --secure-port "$APISERVER_PORT" \
    --audit-policy-file "$STATE/audit-policy.yaml" --audit-log-path "$LOGS/audit.log" \
    --audit-log-maxsize 50 --audit-log-maxbackup 1 \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --allow-privileged=true \
    --disable-admission-plugins TaintNodesByCondition \
    --profiling=true # make bench reads /debug/pprof while a release runs
wait_for kube-apiserver 90 "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz

start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --kube-api-qps 200 --kube-api-burst 400 \
    --controllers endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller,clusterrole-aggregation-controller,root-ca-certificate-publisher-controller,pod-garbage-collector-controller,disruption-controller,resourcequota-controller

start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --leader-elect=false

# The kwok configuration: stages with the pod action program and the pod
# conditions rule spliced in.
shopt -u patsub_replacement 2>/dev/null || true
pod_action="$(grep -v '^\s*#' "$CLUSTER_SCRIPTS/kwok/pod-action.jq" | tr '\n' ' ' | tr -s ' ')"
# Spliced into the status of a patch template: four more spaces of indentation.
pod_conditions="$(sed 's/^/    /' "$CLUSTER_SCRIPTS/kwok/pod-conditions.tpl")"
stages="$(cat "$CLUSTER_SCRIPTS/kwok/stages.yaml.in")"
stages="${stages//@POD_ACTION@/$pod_action}"
printf '%s\n' "${stages//@POD_CONDITIONS@/$pod_conditions}" >"$STATE/kwok.yaml"

start kwok "$KWOK_BIN/kwok" \
    --kubeconfig "$STATE/kwok.kubeconfig" \
    --config "$STATE/kwok.yaml" \
    --manage-nodes-with-label-selector type=kwok \
    --server-address "127.0.0.1:$KWOK_PORT"

# Prometheus scrapes whatever exporters the tests and the demo register, every
# second (fallback: exporters that send no Content-Type are read as text).
if [ "$PROMETHEUS_ON" != 0 ]; then
    mkdir -p "$PROMETHEUS_TARGETS" "$STATE/prometheus/data"
    cat >"$STATE/prometheus/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: cafe-local
  fallback_scrape_protocol: PrometheusText0.0.4
  file_sd_configs:
  - files: ['$PROMETHEUS_TARGETS/*.json']
    refresh_interval: 1s
EOF
    start prometheus "$PROMETHEUS_BIN/prometheus" \
        --config.file "$STATE/prometheus/prometheus.yml" \
        --storage.tsdb.path "$STATE/prometheus/data" \
        --storage.tsdb.retention.time 6h \
        --web.listen-address "127.0.0.1:$PROMETHEUS_PORT"
fi

# The real nodes' registry and its throttle (registry-lib.sh): up before the
# nodes, so that their first pod can pull; the images pushed once built.
if [ "$REGISTRY_ON" = 1 ]; then registry_up; fi
if [ "$REAL_NODES" = 1 ]; then nodes_up; fi
if [ "$REGISTRY_ON" = 1 ]; then registry_push_images; fi

# --- Nodes: three cells, two nodes each ----------------------------------------
NODE_PODS="${CAFE_NODE_PODS:-110}"
{
    i=0
    for cell in cell-a cell-b cell-c; do
        for n in 1 2; do
            i=$((i + 1))
            cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-$cell-$n
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-$cell-$n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    cafe.sofastack.io/cell: $cell
    topology.kubernetes.io/zone: $cell
  annotations:
    kwok.x-k8s.io/node: fake
spec:
  podCIDR: 198.18.$((100 + i)).0/24
  podCIDRs: [198.18.$((100 + i)).0/24]
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "$NODE_PODS"}
  capacity: {cpu: "32", memory: 256Gi, pods: "$NODE_PODS"}
EOF
        done
    done
} >"$STATE/nodes.yaml"
"$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" apply -f "$STATE/nodes.yaml" >/dev/null

all_nodes_ready() {
    [ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get nodes -l type=kwok \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$')" = 6 ]
}
wait_for kwok 60 all_nodes_ready
# Pods need the default ServiceAccount, created by the controller manager.
wait_for kube-controller-manager 60 "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get serviceaccount default -n default
pid_alive kube-scheduler || wait_for kube-scheduler 1 false
[ "$PROMETHEUS_ON" = 0 ] || wait_for prometheus 60 curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
if [ "$REAL_NODES" = 1 ]; then nodes_wait; fi

started=1
real=""
[ "$REAL_NODES" != 1 ] || real=", real nodes ${REAL_NODE_NAMES[*]} (containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, taint $REAL_NODE_TAINT_KEY)"
prometheus=""
[ "$PROMETHEUS_ON" = 0 ] || prometheus=", Prometheus $PROMETHEUS_VERSION (http://127.0.0.1:$PROMETHEUS_PORT)"
[ "$REGISTRY_ON" = 0 ] || real+=", registry $REGISTRY_VERSION (push to 127.0.0.1:$REGISTRY_PORT; the nodes pull $REGISTRY_HOST/* through the throttle, rate $REGISTRY_RATE: tests/cluster/registry.sh)"
say "ready in $((SECONDS - START_TIME))s: Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION$prometheus, 6 kwok nodes in cells cell-a, cell-b, cell-c$real"
say "export KUBECONFIG=$KUBECONFIG_FILE"
