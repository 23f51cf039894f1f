#!/usr/bin/env bash
# The real nodes' OCI registry and its bandwidth throttle, which `make
# cluster-up` starts with the real nodes (what runs where: registry-lib.sh).
#
#   registry.sh status             the registry, its images, the throttle's
#                                  rate and what each node pulled through it
#   registry.sh rate [RATE]        the bandwidth each node pulls at, bytes a
#                                  second: 25M (K, M, G = 1000^n; Ki, Mi, Gi =
#                                  1024^n), 0 or off = unlimited; applies at
#                                  once, also to pulls under way. Without
#                                  RATE: the current one
#   registry.sh push SOURCE...     pushes OCI image archives (tests/images/
#                                  build.sh) or OCI image layout directories
#                                  named cafe.local/NAME:TAG, straight to the
#                                  registry (not through the throttle)
#   registry.sh forget IMAGE...    removes IMAGE (cafe.local/shop:v2; shop:v2
#                                  is the same) from every real node's
#                                  containerd, so that the next pod that
#                                  needs it pulls it again
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

control="http://127.0.0.1:$REGISTRY_THROTTLE_PORT"

# ctr_on NODE ARGS...: ctr against NODE's containerd, in kubelet's namespace.
# Its warnings (cgroup v1 is deprecated) are shown only when it fails.
ctr_on() {
    local sock="$NODES_STATE/$1/containerd.sock" err
    shift
    [ -S "$sock" ] || die "the real node's containerd is not running (no $sock): run 'make cluster-up'"
    err="$(mktemp)"
    if ! "$CONTAINERD_BIN/ctr" --address "$sock" -n k8s.io "$@" 2>"$err"; then
        cat "$err" >&2
        rm -f "$err"
        die "ctr $* failed on ${sock%/containerd.sock} (above)"
    fi
    rm -f "$err"
}

status() {
    registry_running
    echo "registry $REGISTRY_VERSION: http://127.0.0.1:$REGISTRY_PORT (pid $(cat "$PIDS/registry.pid")), storage $REGISTRY_STATE/storage ($(du -sh "$REGISTRY_STATE/storage" | cut -f1))"
    local repo tags
    for repo in $("$CRANE_BIN/crane" catalog "127.0.0.1:$REGISTRY_PORT"); do
        tags="$("$CRANE_BIN/crane" ls "127.0.0.1:$REGISTRY_PORT/$repo" | tr '\n' ' ')"
        echo "  $REGISTRY_HOST/$repo: $tags"
    done
    echo "throttle: control http://127.0.0.1:$REGISTRY_THROTTLE_PORT (pid $(cat "$PIDS/registry-throttle.pid"))"
    curl -fsS "$control/status" | sed 's/^/  /'
}

rate() {
    registry_running
    if [ $# -eq 0 ]; then
        curl -fsS "$control/status" | head -n 1
        return
    fi
    local answer code
    answer="$(curl -sS -X PUT --data-binary "$1" -w '\n%{http_code}' "$control/rate")" ||
        die "the throttle at $control did not answer: see $LOGS/registry-throttle.log"
    code="${answer##*$'\n'}"
    answer="${answer%$'\n'*}"
    answer="${answer%$'\n'}"
    [ "$code" = 200 ] || die "$answer"
    echo "$answer"
}

forget() {
    [ "$REAL_NODES" = 1 ] || die "the cluster runs without real nodes (CAFE_REAL_NODES=0): no image to forget"
    local image ref name digest refs users
    for image in "$@"; do
        ref="$image"
        case "$ref" in */*) ;; *) ref="$REGISTRY_HOST/$ref" ;; esac
        case "${ref##*/}" in *:*) ;; *) die "$image names no tag: forget IMAGE:TAG, e.g. $REGISTRY_HOST/shop:v2" ;; esac
        for name in "${REAL_NODE_NAMES[@]}"; do
            # Every name of the image (CRI also records it by digest and by
            # its ID, sha256:<config>) points at the same target: all go, or
            # its content stays and the next pull downloads nothing.
            digest="$(ctr_on "$name" images ls | awk -v r="$ref" '$1 == r { print $3 }')"
            if [ -z "$digest" ]; then
                echo "$name: $ref is not there"
                continue
            fi
            mapfile -t refs < <(ctr_on "$name" images ls | awk -v d="$digest" 'NR > 1 && $3 == d { print $1 }')
            # A container keeps the image's unpacked layers: containerd then
            # skips downloading them (the pull is not a full one).
            users="$(ctr_on "$name" containers ls | awk -v r="$ref" 'NR > 1 && $2 == r { n++ } END { print n + 0 }')"
            ctr_on "$name" images rm --sync "${refs[@]}" >/dev/null
            echo "$name: removed ${refs[*]}"
            [ "$users" = 0 ] || say "$name: $users container(s) still use $ref: its layers stay unpacked there, and the next pull downloads only what they do not hold. Delete those pods first for a full pull."
        done
    done
}

case "${1:-}" in
status) status ;;
rate)
    [ $# -le 2 ] || usage
    rate "${@:2}"
    ;;
push)
    [ $# -ge 2 ] || usage
    registry_running
    registry_push "${@:2}" | sed 's/^/pushed /'
    ;;
forget)
    [ $# -ge 2 ] || usage
    forget "${@:2}"
    ;;
*) usage ;;
esac
