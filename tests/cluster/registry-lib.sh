# The real nodes' OCI registry, so that a pod can pull an image as in
# production. Sourced by lib.sh; registry.sh is its command line.
#
# With real nodes (not for a member's node, whose network namespace has a
# loopback of its own), `make cluster-up` starts, on 127.0.0.1 only:
#   registry           the CNCF Distribution registry (REGISTRY_VERSION),
#                      127.0.0.1:$REGISTRY_PORT (15000), storage in
#                      $STATE/registry/storage; pushes go straight to it
#   registry-throttle  tests/cluster/throttle: the nodes' way to it at a
#                      bandwidth limit changeable at run time (registry.sh
#                      rate 25M); control API on $REGISTRY_THROTTLE_PORT
#                      (15010), node i's pull port $REGISTRY_THROTTLE_PORT+1+i
#                      (15011, 15012), one limit per node, as each node's
#                      NIC limits it
# Each real node's containerd resolves cafe.local/* through
# $NODES_STATE/<node>/certs.d/cafe.local/hosts.toml to its own pull port,
# plain http. Images are pushed under their cafe.local name: the archives of
# tests/images/build.sh (imported into the nodes as before, and pushed too),
# the operator's image (load-image.sh pushes what it imports), and the
# production-sized cafe.local/shop:v1, :v2, :v3, which are pushed only and
# built once into $SHOP_IMAGES_DIR. down.sh stops both processes and removes
# the storage with the rest of $STATE.

# CAFE_REGISTRY=0 leaves the registry out (the nodes still get every image
# imported).
REGISTRY_ON=0
if [ "$REAL_NODES" = 1 ] && [ -z "$NODES_NETNS" ] && [ "${CAFE_REGISTRY:-1}" = 1 ]; then
    REGISTRY_ON=1
fi
# The image names the nodes resolve to the registry.
REGISTRY_HOST=cafe.local
REGISTRY_STATE="$STATE/registry"
# The throttle's rate when the cluster starts (registry.sh rate changes it).
REGISTRY_RATE="${CAFE_REGISTRY_RATE:-off}"
# The throttle is this repository's own program: its cache directory is named
# by a digest of its source, so that a change of the source builds it again.
THROTTLE_SRC="$CLUSTER_SCRIPTS/throttle"
THROTTLE_BIN="$BIN_CACHE/throttle-$(cat "$THROTTLE_SRC/go.mod" "$THROTTLE_SRC"/*.go | sha256sum | cut -c1-12)"
# The production-sized shop images (tests/images/build.sh --shop): OCI image
# layout directories, ~200 MB each, kept across clusters.
SHOP_IMAGES_DIR="${CAFE_SHOP_IMAGES_DIR:-$CAFE_CACHE/images}"

# registry_pull_port I: the throttle's port node I pulls through.
registry_pull_port() {
    echo $((REGISTRY_THROTTLE_PORT + 1 + $1))
}

# registry_check_ports: before anything starts (up.sh's check_port).
registry_check_ports() {
    check_port "$REGISTRY_PORT" registry CAFE_REGISTRY_PORT
    check_port "$REGISTRY_THROTTLE_PORT" "the registry's throttle" CAFE_REGISTRY_THROTTLE_PORT
    local i
    for i in "${!REAL_NODE_NAMES[@]}"; do
        check_port "$(registry_pull_port "$i")" "the registry's throttle (${REAL_NODE_NAMES[$i]})" CAFE_REGISTRY_THROTTLE_PORT
    done
}

# registry_node_config DIR I: node I's containerd registry configuration in
# DIR/certs.d (containerd's config_path); prints the lines of containerd.toml
# that point at it.
registry_node_config() {
    local dir="$1" port
    port="$(registry_pull_port "$2")"
    mkdir -p "$dir/certs.d/$REGISTRY_HOST"
    cat >"$dir/certs.d/$REGISTRY_HOST/hosts.toml" <<EOF
# $REGISTRY_HOST/* is pulled from the local registry through the throttle
# (tests/cluster/registry-lib.sh), plain http.
server = "http://127.0.0.1:$port"

[host."http://127.0.0.1:$port"]
  capabilities = ["pull", "resolve"]
EOF
    cat <<EOF
  # Registries: $dir/certs.d/<host>/hosts.toml, not the machine's /etc.
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$dir/certs.d"
EOF
}

# registry_up: starts the registry and its throttle (with up.sh's start and
# wait_for) and waits until both answer.
registry_up() {
    mkdir -p "$REGISTRY_STATE/storage"
    cat >"$REGISTRY_STATE/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog: {disabled: false}
storage:
  filesystem: {rootdirectory: $REGISTRY_STATE/storage}
  delete: {enabled: true}
  maintenance: {uploadpurging: {enabled: false}}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    # No trace exporter: OpenTelemetry would send to localhost:4318.
    start registry env OTEL_TRACES_EXPORTER=none "$REGISTRY_BIN/registry" serve "$REGISTRY_STATE/config.yml"
    local listens=() i
    for i in "${!REAL_NODE_NAMES[@]}"; do
        listens+=(-listen "${REAL_NODE_NAMES[$i]}=127.0.0.1:$(registry_pull_port "$i")")
    done
    start registry-throttle "$THROTTLE_BIN/throttle" -upstream "127.0.0.1:$REGISTRY_PORT" \
        -control "127.0.0.1:$REGISTRY_THROTTLE_PORT" -rate "$REGISTRY_RATE" "${listens[@]}"
    wait_for registry 30 curl -fsS "http://127.0.0.1:$REGISTRY_PORT/v2/"
    wait_for registry-throttle 30 curl -fsS "http://127.0.0.1:$REGISTRY_THROTTLE_PORT/status"
}

# registry_running: dies with what to do unless the registry and its
# throttle run.
registry_running() {
    [ "$REGISTRY_ON" = 1 ] ||
        die "this cluster has no registry: it runs with the real nodes of the host cluster only (not with CAFE_REAL_NODES=0, CAFE_REGISTRY=0, or for a member)"
    pid_alive registry && pid_alive registry-throttle ||
        die "the registry is not running (no live process recorded in $PIDS: the cluster is not up, or the registry or its throttle stopped): run 'make cluster-down', then 'make cluster-up'"
}

# registry_push SOURCE...: pushes each OCI image archive (tests/images/build.sh)
# or OCI image layout directory to the registry under its name, which must be
# cafe.local/NAME:TAG (pushed as 127.0.0.1:$REGISTRY_PORT/NAME:TAG, straight,
# not through the throttle) and prints the name. The manifests go as they
# are: a pulled image has the digest of the imported one.
registry_push() {
    local src dir tmp name log="$LOGS/registry-push.log"
    mkdir -p "$REGISTRY_STATE"
    for src in "$@"; do
        tmp=""
        if [ -d "$src" ]; then
            dir="$src"
        elif [ -f "$src" ]; then
            tmp="$(mktemp -d "$REGISTRY_STATE/.push.XXXXXX")"
            tar -xf "$src" -C "$tmp" 2>/dev/null ||
                { rm -rf "$tmp"; die "$src is not a tar archive: registry.sh push takes OCI image archives (tests/images/build.sh writes them) or OCI image layout directories"; }
            dir="$tmp"
        else
            die "$src: no such file or directory"
        fi
        name="$(grep -o '"io.containerd.image.name":"[^"]*"' "$dir/index.json" 2>/dev/null | head -n 1 | cut -d'"' -f4)" || true
        case "$name" in
        "$REGISTRY_HOST"/*) ;;
        "")
            [ -z "$tmp" ] || rm -rf "$tmp"
            die "$src names no image (no io.containerd.image.name in its index.json): push OCI images written by tests/images/build.sh (mkimage -name cafe.local/NAME:TAG)"
            ;;
        *)
            [ -z "$tmp" ] || rm -rf "$tmp"
            die "$src is $name: the local registry holds $REGISTRY_HOST/* only (the names the nodes pull from it); build the image with -name $REGISTRY_HOST/NAME:TAG"
            ;;
        esac
        if ! "$CRANE_BIN/crane" push "$dir" "127.0.0.1:$REGISTRY_PORT/${name#"$REGISTRY_HOST"/}" >>"$log" 2>&1; then
            [ -z "$tmp" ] || rm -rf "$tmp"
            die "pushing $name ($src) to the registry at 127.0.0.1:$REGISTRY_PORT failed. Last lines of $log:
$(tail -n 5 "$log")"
        fi
        [ -z "$tmp" ] || rm -rf "$tmp"
        echo "$name"
    done
}

# registry_push_images: up.sh, once the nodes' images are built: pushes them
# and the shop images (built into SHOP_IMAGES_DIR unless they are there).
registry_push_images() {
    local start=$SECONDS pushed
    "$CLUSTER_SCRIPTS/../images/build.sh" --shop "$SHOP_IMAGES_DIR"
    pushed="$(registry_push "$IMAGES_DIR"/*.tar "$SHOP_IMAGES_DIR"/shop-v1 "$SHOP_IMAGES_DIR"/shop-v2 "$SHOP_IMAGES_DIR"/shop-v3)"
    say "pushed to the registry in $((SECONDS - start))s: $(echo "$pushed" | tr '\n' ' ')"
}

# registry_down: stops the registry and its throttle if they still run (also
# when this cluster now runs without real nodes, but they ran before).
registry_down() {
    stop_component registry-throttle
    stop_component registry
}
