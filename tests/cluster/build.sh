#!/usr/bin/env bash
# Builds the local control plane binaries with `go build`, from the Go module
# proxy at the versions pinned in versions.env, into a cache outside the repo
# ($CAFE_CACHE/bin/<component>-<version>/). A built version is never rebuilt.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null 2>&1 ||
    die "the 'go' toolchain is not on PATH: install Go 1.26 or newer (e.g. 'apt-get install golang' or your distribution's Go package), then run 'make cluster-up' again"

# The wrapper modules must build the versions that versions.env names.
require_version() {
    local mod="$CLUSTER_SCRIPTS/modules/$1/go.mod" module="$2" want="$3"
    grep -qE "^require $module $want\$" "$mod" ||
        die "$mod does not require $module $want as versions.env says: update one to match the other"
}
require_version kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
require_version etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
require_version prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION"
require_version registry github.com/distribution/distribution/v3 "$REGISTRY_VERSION"
[ "$(grep -c "=> k8s.io/.* $KUBERNETES_STAGING_VERSION\$" "$CLUSTER_SCRIPTS/modules/kubernetes/go.mod")" -ge 30 ] ||
    die "modules/kubernetes/go.mod must pin every k8s.io staging module to $KUBERNETES_STAGING_VERSION (versions.env)"

# Built binaries carry no debug info: they are test fixtures, and this halves their size.
LDFLAGS_STRIP="-s -w"
BUILD_LOG_DIR="$CAFE_CACHE/build-logs"
mkdir -p "$BIN_CACHE" "$BUILD_LOG_DIR"

# build_into DIR NAME... -- COMMAND: runs COMMAND (which writes into $OUT) and
# moves the result to DIR only when every NAME was produced, so an interrupted
# build never leaves a half-filled cache directory behind.
build_into() {
    local dir="$1" label="$2"
    shift 2
    local names=()
    while [ "$1" != "--" ]; do
        names+=("$1")
        shift
    done
    shift
    local complete=1 n
    for n in "${names[@]}"; do [ -x "$dir/$n" ] || complete=0; done
    if [ "$complete" = 1 ]; then
        return 0
    fi
    local log="$BUILD_LOG_DIR/$label.log"
    OUT="$(mktemp -d "$BIN_CACHE/.build-$label.XXXXXX")"
    export OUT
    say "building $label (first time only; log: $log)"
    local start=$SECONDS
    if ! "$@" >"$log" 2>&1; then
        rm -rf "$OUT"
        if grep -qiE 'dial tcp|proxy|no such host|connection refused|i/o timeout|TLS handshake|404 Not Found|410 Gone' "$log"; then
            die "downloading the Go modules for $label failed (GOPROXY=$(go env GOPROXY)): check that the Go module proxy is reachable, then run 'make cluster-up' again. Last lines of $log:
$(tail -n 5 "$log")"
        fi
        die "building $label failed. Last lines of $log:
$(tail -n 15 "$log")"
    fi
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    mv "$OUT" "$dir"
    say "built $label in $((SECONDS - start))s"
}

k8s_version_ldflags() {
    local v="${KUBERNETES_VERSION#v}" major minor
    major="${v%%.*}"
    minor="${v#*.}"
    minor="${minor%%.*}"
    local date
    date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    local pkg flags=""
    # kubectl reports its client version from client-go; servers from component-base.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    echo "$flags"
}

build_kubernetes() (
    # The wrapper module requires k8s.io/kubernetes and pins every k8s.io/*
    # staging module to the matching published v0.x release (go.mod, go.sum).
    cd "$CLUSTER_SCRIPTS/modules/kubernetes"
    go build -ldflags "$LDFLAGS_STRIP $(k8s_version_ldflags)" -o "$OUT/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubectl
)

build_etcd() (
    cd "$CLUSTER_SCRIPTS/modules/etcd"
    go build -ldflags "$LDFLAGS_STRIP" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
)

build_prometheus() (
    # remove_all_sd: only file and http service discovery (all the tests
    # use); the cloud discoveries are most of the build. No web UI assets:
    # the HTTP API is what the operator and the tests use.
    cd "$CLUSTER_SCRIPTS/modules/prometheus"
    go build -tags remove_all_sd -ldflags "$LDFLAGS_STRIP" -o "$OUT/prometheus" \
        github.com/prometheus/prometheus/cmd/prometheus
)

build_kwok() {
    GOBIN="$OUT" go install -ldflags "$LDFLAGS_STRIP" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_helm() {
    GOBIN="$OUT" go install \
        -ldflags "$LDFLAGS_STRIP -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_kubernetes_node() (
    cd "$CLUSTER_SCRIPTS/modules/kubernetes"
    CGO_ENABLED=0 go build -ldflags "$LDFLAGS_STRIP $(k8s_version_ldflags)" -o "$OUT/" \
        k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy
)

build_containerd() {
    # Static, without the snapshotters that need C headers (overlayfs is used).
    local m=github.com/containerd/containerd/v2
    GOBIN="$OUT" CGO_ENABLED=0 go install -tags "no_btrfs no_devmapper no_zfs" \
        -ldflags "$LDFLAGS_STRIP -X $m/version.Version=$CONTAINERD_VERSION" \
        "$m/cmd/containerd@$CONTAINERD_VERSION" \
        "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
        "$m/cmd/ctr@$CONTAINERD_VERSION"
}

build_runc() {
    # cgo with libseccomp: pods' `seccompProfile: RuntimeDefault` needs it.
    GOBIN="$OUT" CGO_ENABLED=1 go install -tags seccomp \
        -ldflags "$LDFLAGS_STRIP -X main.version=${RUNC_VERSION#v}" \
        "github.com/opencontainers/runc@$RUNC_VERSION"
}

build_cni_plugins() {
    local m=github.com/containernetworking/plugins/plugins
    GOBIN="$OUT" CGO_ENABLED=0 go install -ldflags "$LDFLAGS_STRIP" \
        "$m/main/bridge@$CNI_PLUGINS_VERSION" \
        "$m/main/loopback@$CNI_PLUGINS_VERSION" \
        "$m/ipam/host-local@$CNI_PLUGINS_VERSION"
}

build_registry() (
    # The unmodified cmd/registry (with its cloud storage drivers; the
    # cluster uses the filesystem one), through the wrapper module.
    cd "$CLUSTER_SCRIPTS/modules/registry"
    local m=github.com/distribution/distribution/v3
    CGO_ENABLED=0 go build -ldflags "$LDFLAGS_STRIP -X $m/version.version=$REGISTRY_VERSION" \
        -o "$OUT/registry" "$m/cmd/registry"
)

build_crane() {
    GOBIN="$OUT" CGO_ENABLED=0 go install -ldflags "$LDFLAGS_STRIP" \
        "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
}

build_throttle() (
    # This repository's own program (standard library only).
    cd "$THROTTLE_SRC"
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$LDFLAGS_STRIP" -o "$OUT/throttle" .
)

build_into "$ETCD_BIN" "etcd-$ETCD_VERSION" etcd -- build_etcd
build_into "$KWOK_BIN" "kwok-$KWOK_VERSION" kwok -- build_kwok
build_into "$HELM_BIN" "helm-$HELM_VERSION" helm -- build_helm
build_into "$PROMETHEUS_BIN" "prometheus-$PROMETHEUS_VERSION" prometheus -- build_prometheus
build_into "$K8S_BIN" "kubernetes-$KUBERNETES_VERSION" \
    kube-apiserver kube-controller-manager kube-scheduler kubectl -- build_kubernetes

if [ "${CAFE_REAL_NODES:-1}" = 1 ]; then
    build_into "$NODE_BIN" "kubernetes-node-$KUBERNETES_VERSION" kubelet kube-proxy -- build_kubernetes_node
    build_into "$CONTAINERD_BIN" "containerd-$CONTAINERD_VERSION" \
        containerd containerd-shim-runc-v2 ctr -- build_containerd
    build_into "$RUNC_BIN" "runc-$RUNC_VERSION" runc -- build_runc
    build_into "$CNI_BIN" "cni-plugins-$CNI_PLUGINS_VERSION" bridge loopback host-local -- build_cni_plugins
fi
if [ "$REGISTRY_ON" = 1 ]; then
    build_into "$REGISTRY_BIN" "registry-$REGISTRY_VERSION" registry -- build_registry
    build_into "$CRANE_BIN" "crane-$CRANE_VERSION" crane -- build_crane
    build_into "$THROTTLE_BIN" "$(basename "$THROTTLE_BIN")" throttle -- build_throttle
fi
