# The real nodes of the local control plane: kubelet + containerd + runc + the
# CNI bridge, one kube-proxy (nftables mode). Sourced by up.sh and down.sh.
#
# Two nodes, real-cell-a and real-cell-b, in cells cell-a and cell-b, tainted
# so that only pods tolerating cafe.sofastack.io/real-node land there. They
# share this machine's network namespace (each with its own kubelet ports,
# containerd, cgroup root and bridge); every address they use is in
# 198.18.0.0/15, the range reserved for benchmark networks:
#   198.18.1.0/24, 198.18.2.0/24   the two nodes' pods (bridges cafe-br-a, cafe-br-b)
#   198.19.0.0/17                  Services (SERVICE_CIDR in lib.sh)
#   198.19.255.1, .2               the nodes' addresses; .254 the API server's
#                                  (on the link cafe-nodes, a bridge without ports)
# Nothing leaves the machine: no masquerading, and a pod's only route beyond its
# bridge is to 198.18.0.0/15 (BENCH_RANGE: the other node's pods, Services, the
# API server), never a default route.
#
# What this changes on the machine, and how down.sh gives it back:
# - sysctls: kubelet sets vm.overcommit_memory=1, kernel.panic=10 and
#   kernel.panic_on_oops=1 (its protectKernelDefaults behaviour); the nodes need
#   net.ipv4.ip_forward=1 and net.bridge.bridge-nf-call-iptables=1 (a pod
#   reaching a Service on its own bridge). The values before are recorded and
#   restored.
# - links cafe-nodes, cafe-br-a, cafe-br-b (and the pods' veths), the nftables
#   table kube-proxy, kubelet's KUBE-* iptables chains, the cgroups
#   /cafe-real-cell-*, the mounts under the state directory, and the host paths
#   the CNI library and containerd's shims use (/var/lib/cni, /run/containerd/s)
#   when they did not exist before: removed.
#
# A member cluster (members.sh: slot k = 1 or 2, CAFE_NODES_NETNS, the cell
# CAFE_REAL_NODE_CELL) has one real node, and its whole node network lives in
# a network namespace of its own: containerd, kubelet and kube-proxy run
# there (nsenter --net, so they share the machine's mounts), with their own
# bridge, nftables table and sysctls; a veth (cafe-m<k> here, 198.19.252.4k+1;
# eth0 there, 198.19.252.4k+2, the node's address) joins it to the machine,
# which routes the member's pods (198.18.1<k>.0/24) and Services (lib.sh)
# through it. Its API server listens on 198.19.252.4k+1. Removing the
# namespace removes everything network it made.

BENCH_RANGE="198.18.0.0/15"
NODES_NETNS="${CAFE_NODES_NETNS:-}"
if [ -z "$NODES_NETNS" ]; then
    REAL_NODE_NAMES=(real-cell-a real-cell-b)
    REAL_NODE_CELLS=(cell-a cell-b)
    REAL_NODE_IPS=(198.19.255.1 198.19.255.2)
    REAL_NODE_SUBNETS=(198.18.1.0/24 198.18.2.0/24)
    REAL_NODE_GATEWAYS=(198.18.1.1 198.18.2.1)
    REAL_NODE_BRIDGES=(cafe-br-a cafe-br-b)
    REAL_NODE_KUBELET_PORTS=(10250 10260)
    REAL_NODE_HEALTHZ_PORTS=(10248 10258)
    NODE_LINK=cafe-nodes
    # Commands of the node network run here, in the machine's namespace.
    IN_NODES_NETNS=()
else
    REAL_NODE_CELLS=("${CAFE_REAL_NODE_CELL:?CAFE_REAL_NODE_CELL: the cell of the member real node}")
    REAL_NODE_NAMES=("real-${NODES_NETNS#cafe-}-${REAL_NODE_CELLS[0]}")
    REAL_NODE_IPS=("198.19.252.$((4 * NODES_SLOT + 2))")
    REAL_NODE_SUBNETS=("$POD_CIDR")
    REAL_NODE_GATEWAYS=("198.18.$((10 + NODES_SLOT)).1")
    REAL_NODE_BRIDGES=(cafe-br)
    REAL_NODE_KUBELET_PORTS=(10250)
    REAL_NODE_HEALTHZ_PORTS=(10248)
    NODE_LINK="cafe-m$NODES_SLOT"
    IN_NODES_NETNS=(nsenter "--net=/run/netns/$NODES_NETNS" --)
fi
KUBE_PROXY_HEALTHZ_PORT="${CAFE_KUBE_PROXY_HEALTHZ_PORT:-10256}"
KUBE_PROXY_METRICS_PORT="${CAFE_KUBE_PROXY_METRICS_PORT:-10249}"
# The taint that keeps every other pod off the real nodes.
REAL_NODE_TAINT_KEY=cafe.sofastack.io/real-node
NODES_STATE="$STATE/nodes"
# Host paths outside the state directory that the node software writes to.
HOST_PATHS=(/var/lib/cni /run/containerd /var/run/netns)
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward
    net.bridge.bridge-nf-call-iptables)

real_node_components() {
    local n
    for n in "${REAL_NODE_NAMES[@]}"; do echo "containerd-$n"; done
    for n in "${REAL_NODE_NAMES[@]}"; do echo "kubelet-$n"; done
    echo kube-proxy
}

# The images every real node has: the sandbox's pause and the test
# application's versions (tests/images/build.sh writes them). With the
# registry (registry-lib.sh) they are pushed there too.
IMAGES_DIR="$STATE/images"

# What the machine looked like before the first cluster's real nodes changed
# it: kept outside any one cluster's state (several clusters' nodes can run
# at once: the host's and the members'), restored by the last one to stop.
HOST_RECORD="${CAFE_NODES_HOST_RECORD:-/run/cafe-operator-nodes}"

# nodes_record_host: what the machine looks like before the nodes change it
# (unless another cluster's nodes changed it already: its record stands).
nodes_record_host() {
    if other_node_networks && [ -f "$HOST_RECORD/sysctls" ]; then
        return 0
    fi
    mkdir -p "$HOST_RECORD"
    local s p
    for s in "${SYSCTLS[@]}"; do
        echo "$s=$(sysctl -n "$s" 2>/dev/null || echo absent)"
    done >"$HOST_RECORD/sysctls"
    for p in "${HOST_PATHS[@]}"; do
        [ -e "$p" ] && echo "$p"
    done >"$HOST_RECORD/paths" || true
    nft list tables 2>/dev/null >"$HOST_RECORD/nft-tables" || true
}

nodes_network_up() {
    if [ -n "$NODES_NETNS" ]; then
        member_network_up
        return
    fi
    # A bridge without ports: this kernel has no dummy links; local delivery
    # to its addresses needs no carrier.
    ip link add "$NODE_LINK" type bridge
    # Whose nodes these are: up.sh of another checkout reads it.
    ip link set "$NODE_LINK" alias "$STATE"
    ip link set "$NODE_LINK" up
    local ip
    for ip in "${REAL_NODE_IPS[@]}" "$HOST_ADDRESS"; do
        ip addr add "$ip/32" dev "$NODE_LINK"
    done
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
        say "net.bridge.bridge-nf-call-iptables is not available: a pod cannot reach a Service backed by a pod on its own node"
}

# member_network_up: a member's node network namespace and its veth.
member_network_up() {
    # A killed run's namespace (its link is gone with it, or up.sh removed it).
    ip netns del "$NODES_NETNS" 2>/dev/null || true
    ip netns add "$NODES_NETNS"
    ip link add "$NODE_LINK" type veth peer name "$NODE_LINK-n"
    ip link set "$NODE_LINK" alias "$STATE"
    ip link set "$NODE_LINK-n" netns "$NODES_NETNS"
    ip addr add "$HOST_ADDRESS/30" dev "$NODE_LINK"
    ip link set "$NODE_LINK" up
    local ns=("${IN_NODES_NETNS[@]}")
    "${ns[@]}" ip link set lo up
    "${ns[@]}" ip link set "$NODE_LINK-n" name eth0
    "${ns[@]}" ip addr add "${REAL_NODE_IPS[0]}/30" dev eth0
    "${ns[@]}" ip link set eth0 up
    # The machine reaches the member's pods and Services through the node.
    ip route add "$POD_CIDR" via "${REAL_NODE_IPS[0]}" dev "$NODE_LINK"
    ip route add "$SERVICE_CIDR" via "${REAL_NODE_IPS[0]}" dev "$NODE_LINK"
    # Both are the namespace's own: they go with it.
    "${ns[@]}" sysctl -qw net.ipv4.ip_forward=1
    "${ns[@]}" sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
        say "net.bridge.bridge-nf-call-iptables is not available: a pod cannot reach a Service backed by a pod on its own node"
}

# other_node_networks: whether the real nodes of another cluster (the host's,
# or another member's) run on this machine now.
other_node_networks() {
    local link
    for link in cafe-nodes cafe-m1 cafe-m2; do
        [ "$link" != "$NODE_LINK" ] || continue
        ip link show "$link" >/dev/null 2>&1 && return 0
    done
    return 1
}

# node_link_owner: the state directory of the cluster whose real nodes hold
# this machine's node network, if any.
node_link_owner() {
    { ip -o link show "$NODE_LINK" 2>/dev/null || true; } | sed -n 's/.* alias //p'
}

# node_config I: containerd's, the CNI's and kubelet's configuration of node I.
node_config() {
    local i="$1" name="${REAL_NODE_NAMES[$1]}"
    local dir="$NODES_STATE/$name"
    mkdir -p "$dir/cni" "$dir/kubelet" "$dir/pod-logs" "$dir/containerd"
    # cafe.local/* from the local registry (registry-lib.sh), when it runs.
    local registry_config=""
    if [ "$REGISTRY_ON" = 1 ]; then registry_config="$(registry_node_config "$dir" "$i")"; fi
    cat >"$dir/containerd.toml" <<EOF
version = 3
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "$dir/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "cafe.local/pause:1"
$registry_config
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # This machine's root lacks CAP_SYS_RESOURCE: no score below containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "$RUNC_BIN/runc"
    SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$dir/cni"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
    cat >"$dir/cni/10-cafe.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cafe-$name",
  "plugins": [{
    "type": "bridge",
    "bridge": "${REAL_NODE_BRIDGES[$i]}",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "$dir/cni-ipam",
      "ranges": [[{"subnet": "${REAL_NODE_SUBNETS[$i]}", "gateway": "${REAL_NODE_GATEWAYS[$i]}"}]],
      "routes": [{"dst": "$BENCH_RANGE"}]
    }
  }]
}
EOF
    cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (this machine's hierarchy), removal planned no earlier than v1.38.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /cafe-$name
containerRuntimeEndpoint: unix://$dir/containerd.sock
address: ${REAL_NODE_IPS[$i]}
port: ${REAL_NODE_KUBELET_PORTS[$i]}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${REAL_NODE_HEALTHZ_PORTS[$i]}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: ""
failSwapOn: false
podLogsDir: $dir/pod-logs
# Never collect an image: most are imported, never pulled, and a benchmark
# decides itself when a pulled one goes (registry.sh forget).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 110
registerWithTaints:
- {key: $REAL_NODE_TAINT_KEY, value: "true", effect: NoSchedule}
EOF
}

# start_containerd I and start_kubelet I.
start_containerd() {
    local name="${REAL_NODE_NAMES[$1]}"
    local dir="$NODES_STATE/$name"
    # The shim and runc are found on PATH.
    PATH="$CONTAINERD_BIN:$RUNC_BIN:$PATH" start "containerd-$name" \
        "${IN_NODES_NETNS[@]}" "$CONTAINERD_BIN/containerd" --config "$dir/containerd.toml" --log-level warn
}

import_images() {
    local name="${REAL_NODE_NAMES[$1]}" image
    for image in "$IMAGES_DIR"/*.tar; do
        "$CONTAINERD_BIN/ctr" --address "$NODES_STATE/$name/containerd.sock" -n k8s.io \
            images import "$image" >/dev/null 2>>"$LOGS/images.log"
    done
}

# node_cgroups NAME: kubelet's cgroup root /cafe-NAME in every hierarchy (it
# must exist); a v1 cpuset starts empty, so it gets its parent's CPUs and memory.
node_cgroups() {
    local h
    for h in /sys/fs/cgroup/*; do
        [ -d "$h" ] && [ "$h" != /sys/fs/cgroup/unified ] || continue
        mkdir -p "$h/cafe-$1"
    done
    local cpuset=/sys/fs/cgroup/cpuset
    if [ -f "$cpuset/cpuset.cpus" ]; then
        cat "$cpuset/cpuset.cpus" >"$cpuset/cafe-$1/cpuset.cpus"
        cat "$cpuset/cpuset.mems" >"$cpuset/cafe-$1/cpuset.mems"
    fi
}

start_kubelet() {
    local i="$1" name="${REAL_NODE_NAMES[$1]}"
    local dir="$NODES_STATE/$name"
    node_cgroups "$name"
    start "kubelet-$name" "${IN_NODES_NETNS[@]}" "$NODE_BIN/kubelet" \
        --config "$dir/kubelet.yaml" \
        --kubeconfig "$STATE/kubelet-$name.kubeconfig" \
        --hostname-override "$name" \
        --node-ip "${REAL_NODE_IPS[$i]}" \
        --root-dir "$dir/kubelet" \
        --cert-dir "$dir/kubelet/pki" \
        --node-labels "type=real,cafe.sofastack.io/cell=${REAL_NODE_CELLS[$i]},topology.kubernetes.io/zone=${REAL_NODE_CELLS[$i]}" \
        --v 1
}

start_kube_proxy() {
    cat >"$NODES_STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: ${REAL_NODE_NAMES[0]}
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    start kube-proxy "${IN_NODES_NETNS[@]}" "$NODE_BIN/kube-proxy" --config "$NODES_STATE/kube-proxy.yaml" --v 1
}

real_nodes_ready() {
    [ "$("$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get nodes -l type=real \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$')" = "${#REAL_NODE_NAMES[@]}" ]
}

# nodes_up: after the API server, before the nodes are waited for.
nodes_up() {
    local i
    "$CLUSTER_SCRIPTS/../images/build.sh" "$IMAGES_DIR"
    for i in "${!REAL_NODE_NAMES[@]}"; do
        node_config "$i"
        start_containerd "$i"
    done
    for i in "${!REAL_NODE_NAMES[@]}"; do
        local name="${REAL_NODE_NAMES[$i]}"
        wait_for "containerd-$name" 30 test -S "$NODES_STATE/$name/containerd.sock"
        wait_for "containerd-$name" 30 "$CONTAINERD_BIN/ctr" --address "$NODES_STATE/$name/containerd.sock" version
        import_images "$i"
        start_kubelet "$i"
    done
    start_kube_proxy
}

nodes_wait() {
    wait_for "kubelet-${REAL_NODE_NAMES[0]}" 120 real_nodes_ready
    wait_for kube-proxy 60 "${IN_NODES_NETNS[@]}" curl -fsS "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz"
}

# kill_tree_of_cgroup DIR: SIGKILL every process in a cgroup and its children.
kill_cgroup_processes() {
    local root="$1" f pid pids
    [ -d "$root" ] || return 0
    while IFS= read -r f; do
        # A cgroup may go between the listing and the read (its last process
        # exited): nothing is left to kill there.
        pids="$(cat "$f" 2>/dev/null)" || continue
        for pid in $pids; do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done < <(find "$root" -name cgroup.procs 2>/dev/null || true)
}

# nodes_down: stops and removes everything the real nodes made. Safe to run
# when they never started, or after a killed run (it does not need the pids).
nodes_down() {
    [ -d "$NODES_STATE" ] || [ "$(node_link_owner)" = "$STATE" ] || return 0
    local name h ctrl
    # The pods' processes first (kubelet and kube-proxy were stopped by then),
    # then the shims, whose sockets name this cluster's containerd.
    for name in "${REAL_NODE_NAMES[@]}"; do
        for h in /sys/fs/cgroup/*/"cafe-$name"; do kill_cgroup_processes "$h"; done
        pkill -KILL -f "containerd-shim-runc-v2 .*-address $NODES_STATE/$name/containerd.sock" 2>/dev/null || true
    done
    for name in "${REAL_NODE_NAMES[@]}"; do stop_component "containerd-$name"; done
    # Mounts under the state directory, deepest first (overlay rootfs, netns,
    # kubelet's volumes and its rshared bind of its root directory).
    local mounts
    for _ in 1 2 3; do
        mounts="$(awk -v p="$STATE/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)"
        [ -n "$mounts" ] || break
        while IFS= read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done <<<"$mounts"
    done
    for name in "${REAL_NODE_NAMES[@]}"; do
        for ctrl in /sys/fs/cgroup/*; do
            [ -d "$ctrl/cafe-$name" ] && find "$ctrl/cafe-$name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done
    done
    local link
    for link in "${REAL_NODE_BRIDGES[@]}" "$NODE_LINK"; do
        ip link del "$link" 2>/dev/null || true
    done
    if [ -n "$NODES_NETNS" ]; then
        # Its bridge, tables, chains, routes and sysctls go with the namespace.
        ip netns del "$NODES_NETNS" 2>/dev/null || true
    else
        machine_network_down
    fi
    # The machine's settings and paths are shared by every cluster's nodes:
    # the last one to stop gives them back.
    other_node_networks || restore_host
}

# machine_network_down: what the host cluster's nodes made in the machine's
# own network namespace.
machine_network_down() {
    # kube-proxy's table; kubelet's chains; the tables iptables-nft made for them.
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
    local ipt table chain
    for ipt in iptables ip6tables; do
        for table in mangle nat filter; do
            for chain in $("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
                "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
                "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
    if [ -f "$HOST_RECORD/nft-tables" ]; then
        local family tname
        while read -r _ family tname; do
            grep -qx "table $family $tname" "$HOST_RECORD/nft-tables" ||
                nft delete table "$family" "$tname" 2>/dev/null || true
        done < <(nft list tables 2>/dev/null)
    fi
}

restore_host() {
    if [ -f "$HOST_RECORD/sysctls" ]; then
        local line
        while IFS= read -r line; do
            [ "${line#*=}" = absent ] || sysctl -qw "$line" 2>/dev/null || true
        done <"$HOST_RECORD/sysctls"
    fi
    if [ -f "$HOST_RECORD/paths" ]; then
        local p
        for p in "${HOST_PATHS[@]}"; do
            grep -qx "$p" "$HOST_RECORD/paths" && continue
            # `ip netns add` (the members' node networks) bind-mounts
            # /run/netns onto itself: once its last namespace is gone, that
            # mount is ours to undo, or the directory cannot be removed.
            if mountpoint -q "$p" 2>/dev/null && [ -z "$(ls -A "$p" 2>/dev/null)" ]; then
                umount "$p" 2>/dev/null || umount -l "$p"
            fi
            rm -rf "$p"
        done
    fi
    rm -rf "$HOST_RECORD"
}
