#!/usr/bin/env bash
# `make demo`: the operator's main job end to end on the local control plane.
# Builds the operator, starts the cluster (left running afterwards, so you can
# go on with kubectl), installs the CRDs, runs the operator and releases a new
# image in place through the lossless pod lifecycle.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say_() { printf '   %s\n' "$*"; }

if [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$REPO_ROOT/target/release/cafe-operator" ]; then
    say_ "Built before: this run takes about 3 minutes."
else
    say_ "The first run builds Kubernetes, etcd, containerd and kwok from their Go modules (cached"
    say_ "in ~/.cache/cafe-operator, by version) while cargo builds the operator: about 15-25"
    say_ "minutes on 2 cores. Later runs reuse both and take about 3 minutes."
fi

# The cluster's binaries build while cargo does (each uses the other's idle
# moments); its own process group, so that a failed build stops all of it.
scratch="$(mktemp -d)"
setsid tests/cluster/build.sh >"$scratch/cluster-build.log" 2>&1 &
cluster_build=$!
stop_build() { kill -- "-$cluster_build" 2>/dev/null || true; rm -rf "$scratch"; }
trap stop_build EXIT

step "Building cafe-operator (release) while the cluster's binaries build"
cargo build --release --quiet --bins --example error-ratio-exporter --example load-generator
OPERATOR="$REPO_ROOT/target/release/cafe-operator"
# `kubectl cafe` is the plugin binary kubectl-cafe, found on PATH.
export PATH="$REPO_ROOT/target/release:$PATH"

step "Starting the local control plane"
wait "$cluster_build" || {
    cat "$scratch/cluster-build.log"
    die "building the local control plane failed (above)"
}
cat "$scratch/cluster-build.log"
trap - EXIT
rm -rf "$scratch"
tests/cluster/up.sh
export KUBECONFIG="$KUBECONFIG_FILE"
kubectl() { "$K8S_BIN/kubectl" "$@"; }
kubectl get nodes -L cafe.sofastack.io/cell

step "Installing the CRDs (server-side apply: they carry the full pod template schema)"
"$OPERATOR" crd | kubectl apply --server-side --force-conflicts -f -
kubectl wait --for condition=Established --timeout=60s \
    crd/cafedeployments.cafe.sofastack.io crd/inplacesets.cafe.sofastack.io

step "Starting the operator (log: .cluster/logs/operator.log)"
METRICS_ADDR="127.0.0.1:${CAFE_DEMO_METRICS_PORT:-18080}"
"$OPERATOR" run --leader-elect --leader-election-namespace default \
    --metrics-bind-address "$METRICS_ADDR" --health-probe-bind-address 0 \
    >"$LOGS/operator.log" 2>&1 &
OPERATOR_PID=$!
trap 'kill -TERM $OPERATOR_PID 2>/dev/null || true; wait $OPERATOR_PID 2>/dev/null || true' EXIT

# A previous demo's namespace goes first; the running operator drains its pods
# (their traffic finalizers are released only by the operator).
NS=demo
kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
for _ in $(seq 1 90); do kubectl get namespace "$NS" >/dev/null 2>&1 || break; sleep 1; done
kubectl create namespace "$NS" >/dev/null

PODS='custom-columns=POD:.metadata.name,IP:.status.podIP,IMAGE:.spec.containers[0].image,RESTARTS:.status.containerStatuses[0].restartCount,GATE:.status.conditions[?(@.type=="cafe.sofastack.io/traffic-ready")].reason,READY:.status.conditions[?(@.type=="Ready")].status,FINALIZERS:.metadata.finalizers'
show() { kubectl -n "$NS" get pods -l app=standalone -o "$PODS"; }
wait_for() { # DESCRIPTION SECONDS COMMAND...
    local what="$1" limit="$2"
    shift 2
    for _ in $(seq 1 "$limit"); do "$@" && return 0; sleep 1; done
    echo "timed out waiting for $what" >&2
    return 1
}
ips_field() { kubectl -n "$NS" get inplaceset standalone -o "jsonpath={.status.$1}"; }
# status_is FIELD VALUE: re-reads the InPlaceSet's status on every call.
status_is() { [ "$(ips_field "$1")" = "$2" ]; }

step "An InPlaceSet of 3 pods behind a Service (examples/inplaceset.yaml)"
kubectl -n "$NS" apply -f examples/inplaceset.yaml
wait_for "3 available pods" 120 status_is availableReplicas 3
show
say_ "Each pod carries the readiness gate cafe.sofastack.io/traffic-ready (GATE: Serving) and"
say_ "the finalizer of the built-in 'service' component: the Service routes to it."

step "Releasing nginx:1.26: partition 1 keeps one pod on the old image"
kubectl -n "$NS" patch inplaceset standalone --type merge \
    -p '{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.26"}]}}}}'
for _ in $(seq 1 60); do
    show | sed 1d | sed 's/^/   /'
    status_is updatedReplicas 2 && status_is availableReplicas 3 && break
    echo "   --"
    sleep 2
done
say_ "Pod by pod: the gate closed (DrainingForUpdate), the service component removed its"
say_ "finalizer once the pod left the Service's endpoints, the image was patched in place"
say_ "(same pod, same IP, restart +1), then the gate opened and the finalizer came back."

step "Lowering the partition to 0 finishes the release"
kubectl -n "$NS" patch inplaceset standalone --type merge -p '{"spec":{"strategy":{"partition":0}}}'
all_released() { status_is updatedReplicas 3 && status_is availableReplicas 3; }
wait_for "all 3 pods updated and available" 120 all_released
show
kubectl -n "$NS" get inplaceset standalone
echo
kubectl -n "$NS" get events --field-selector involvedObject.kind=InPlaceSet \
    -o custom-columns=REASON:.reason,MESSAGE:.message 2>/dev/null | tail -n 12

step "A CafeDeployment (examples/demo.yaml): 10 pods over cell-a and cell-b"
kubectl -n "$NS" apply --server-side -f examples/demo.yaml
# The release console, as you (your kubeconfig), on this machine only.
CONSOLE_PORT="${CAFE_DEMO_CONSOLE_PORT:-8467}"
kubectl cafe -n "$NS" console --port "$CONSOLE_PORT" >"$LOGS/console.log" 2>&1 &
CONSOLE_PID=$!
trap 'kill -TERM $OPERATOR_PID $CONSOLE_PID 2>/dev/null || true; wait $OPERATOR_PID 2>/dev/null || true' EXIT
say_ "Watch it in the release console: http://127.0.0.1:$CONSOLE_PORT/  (kubectl cafe console -n $NS;"
say_ "it acts with your kubeconfig and listens on 127.0.0.1 only; it stops when the demo ends)"
cd_field() { kubectl -n "$NS" get cafedeployment demo -o "jsonpath={.status.$1}"; }
# cd_at PHASE GROUP: the release is in PHASE with GROUP groups done.
cd_at() { [ "$(cd_field phase)" = "$1" ] && [ "$(cd_field release.group)" = "$2" ]; }
CD_PODS='custom-columns=POD:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP,IMAGE:.spec.containers[0].image,READY:.status.conditions[?(@.type=="Ready")].status'
show_cd() { kubectl -n "$NS" get pods -l app=demo -o "$CD_PODS" --sort-by=.spec.nodeName | sed 's/^/   /'; }
# Waits for groups 1 and 2, confirming each as a user would, then for Healthy.
# With "plugin", through `kubectl cafe`; else with plain kubectl.
confirm_groups() {
    for done in 1 2; do
        wait_for "group $done to finish" 180 cd_at WaitingForConfirm "$done"
        if [ "${1:-}" = plugin ]; then
            say_ "\$ kubectl cafe get demo"
            kubectl cafe -n "$NS" get demo | sed 's/^/   /'
            say_ "\$ kubectl cafe confirm demo"
            kubectl cafe -n "$NS" confirm demo | sed 's/^/   /'
            continue
        fi
        kubectl -n "$NS" get cafedeployment demo
        show_cd
        say_ "status.release.message: $(cd_field release.message)"
        say_ "The operator waits (annotation cafe.sofastack.io/upgrade-confirmed=false). Confirming:"
        say_ "\$ kubectl annotate cafedeployment demo cafe.sofastack.io/upgrade-confirmed=true --overwrite"
        kubectl -n "$NS" annotate cafedeployment demo cafe.sofastack.io/upgrade-confirmed=true --overwrite >/dev/null
    done
    if [ "${1:-}" = plugin ]; then
        say_ "\$ kubectl cafe status demo --timeout 3m     # blocks like kubectl rollout status"
        kubectl cafe -n "$NS" status demo --timeout 3m | sed 's/^/   /'
        say_ "\$ kubectl cafe history demo"
        kubectl cafe -n "$NS" history demo | sed 's/^/   /'
        return
    fi
    wait_for "the last group" 180 cd_at Healthy 3
    kubectl -n "$NS" get cafedeployment demo
    show_cd
}
say_ "The first release creates the pods group by group: 1+1 (Beta), 2+2, 2+2."
confirm_groups
kubectl -n "$NS" get inplacesets -l cafe.sofastack.io/cell

step "Releasing nginx:1.26 with the kubectl plugin: a Beta group, then batches of 4, confirmed by you"
say_ "\$ kubectl cafe set image demo app=nginx:1.26"
kubectl cafe -n "$NS" set image demo app=nginx:1.26 | sed 's/^/   /'
confirm_groups plugin
say_ "Same pods and IPs as before the release: every pod was updated in place, drained first."

step "Prometheus confirms the groups: a metric analysis (examples/patches/demo-analysis.yaml)"
say_ "A small exporter reports app_error_ratio per pod: 1% for nginx:1.27, 40% for nginx:1.28."
"$REPO_ROOT/target/release/examples/error-ratio-exporter" --namespace "$NS" --selector app=demo \
    --ratio nginx:1.27=0.01 --ratio nginx:1.28=0.4 \
    --target-file "$PROMETHEUS_TARGETS/demo-exporter.json" >"$LOGS/exporter.log" 2>&1 &
EXPORTER_PID=$!
trap 'kill -TERM $EXPORTER_PID $OPERATOR_PID $CONSOLE_PID 2>/dev/null || true; wait $EXPORTER_PID $OPERATOR_PID 2>/dev/null || true' EXIT
PROM="http://127.0.0.1:$PROMETHEUS_PORT"
scraped() { curl -fsS "$PROM/api/v1/query" --data-urlencode "query=count(app_error_ratio{namespace=\"$NS\"})" | grep -q '"value":\[[^]]*,"10"\]'; }
wait_for "Prometheus to scrape the exporter" 60 scraped
sed "s#http://127.0.0.1:19090#$PROM#" examples/patches/demo-analysis.yaml >"$STATE/demo-analysis.yaml"
kubectl -n "$NS" patch cafedeployment demo --type merge --patch-file "$STATE/demo-analysis.yaml" >/dev/null
analysis_field() { kubectl -n "$NS" get cafedeployment demo -o "jsonpath={.status.release.analysis.$1}"; }
say_ "\$ kubectl cafe set image demo app=nginx:1.27     # healthy: nobody confirms anything"
kubectl cafe -n "$NS" set image demo app=nginx:1.27 | sed 's/^/   /'
analysing() { [ "$(cd_field phase)" = Analyzing ]; }
wait_for "the Beta group's analysis" 180 analysing
kubectl -n "$NS" get cafedeployment demo
say_ "status.release.message: $(cd_field release.message)"
wait_for "the release, confirmed by the analysis" 240 cd_at Healthy 3
kubectl -n "$NS" get cafedeployment demo
say_ "last analysis: group $(analysis_field group): $(analysis_field phase): $(analysis_field message)"
kubectl -n "$NS" get events --field-selector involvedObject.kind=CafeDeployment \
    -o custom-columns=REASON:.reason,MESSAGE:.message 2>/dev/null | grep -E 'Analysis' | tail -n 4 | sed 's/^/   /'

say_ "\$ kubectl cafe set image demo app=nginx:1.28     # 40% errors: the analysis rolls it back"
kubectl cafe -n "$NS" set image demo app=nginx:1.28 | sed 's/^/   /'
rolled_back() { [ "$(analysis_field action)" = Rollback ]; }
wait_for "the analysis to roll back" 180 rolled_back
say_ "status.release.message: $(cd_field release.message)"
on_127() { [ "$(kubectl -n "$NS" get pods -l app=demo -o jsonpath='{.items[*].spec.containers[0].image}' | tr ' ' '\n' | grep -c 'nginx:1.27')" = 10 ] && [ "$(cd_field phase)" = Healthy ]; }
wait_for "every pod back on nginx:1.27" 180 on_127
kubectl -n "$NS" get cafedeployment demo
show_cd
say_ "Only the two Beta pods ran nginx:1.28; they were drained, rolled back in place, and"
say_ "the template is nginx:1.27 again. The verdict stays in status.release.analysis:"
kubectl cafe -n "$NS" get demo | grep -E '^(Phase|Message|Analysis)' | sed 's/^/   /'

if [ "$REAL_NODES" = 1 ]; then
    step "Real containers, real requests: a release under load on the real nodes (examples/real-nodes.yaml)"
    RNS=demo-real
    kubectl delete namespace "$RNS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 1 90); do kubectl get namespace "$RNS" >/dev/null 2>&1 || break; sleep 1; done
    kubectl create namespace "$RNS" >/dev/null
    kubectl -n "$RNS" apply --server-side -f examples/real-nodes.yaml
    rcd() { kubectl -n "$RNS" get cafedeployment demo -o "jsonpath={.status.$1}"; }
    # Confirms every group of the creation until all 6 pods serve v1.
    created() {
        [ "$(rcd phase)" = WaitingForConfirm ] &&
            kubectl -n "$RNS" annotate cafedeployment demo cafe.sofastack.io/upgrade-confirmed=true --overwrite >/dev/null
        [ "$(rcd phase)" = Healthy ] && [ "$(rcd readyReplicas)" = 6 ]
    }
    wait_for "6 test application pods on the real nodes" 180 created
    REAL_PODS='custom-columns=POD:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP,IMAGE:.spec.containers[0].image,RESTARTS:.status.containerStatuses[0].restartCount,READY:.status.conditions[?(@.type=="Ready")].status'
    show_real() { kubectl -n "$RNS" get pods -l app=demo -o "$REAL_PODS" --sort-by=.spec.nodeName | sed 's/^/   /'; }
    show_real
    TARGET="$(kubectl -n "$RNS" get service demo -o jsonpath='{.spec.clusterIP}'):80"
    routed() { curl -fsS --max-time 1 "http://$TARGET/" >/dev/null 2>&1; }
    wait_for "kube-proxy to route $TARGET" 30 routed
    say_ "\$ curl http://$TARGET/    # the Service's ClusterIP, through kube-proxy"
    say_ "$(curl -fsS "http://$TARGET/")"
    say_ "A load generator sends 200 requests a second to $TARGET, one connection each,"
    say_ "for the whole release (target/release/examples/load-generator; log: .cluster/logs/load.log)."
    "$REPO_ROOT/target/release/examples/load-generator" --target "$TARGET" --rate 200 --max-seconds 600 \
        >"$LOGS/load.log" 2>&1 &
    LOAD_PID=$!
    trap 'kill -TERM $LOAD_PID $EXPORTER_PID $OPERATOR_PID $CONSOLE_PID 2>/dev/null || true; wait $LOAD_PID $EXPORTER_PID $OPERATOR_PID 2>/dev/null || true' EXIT
    live() { say_ "$(printf '%-17s group %s of %s   requests: %s' "$(rcd phase)" "$(rcd release.group)" "$(rcd release.groups)" "$(tail -n 1 "$LOGS/load.log")")"; }
    sleep 3
    live
    say_ "\$ kubectl cafe set image demo app=cafe.local/testapp:v2"
    kubectl cafe -n "$RNS" set image demo app=cafe.local/testapp:v2 | sed 's/^/   /'
    on_v2() { [ "$(kubectl -n "$RNS" get pods -l app=demo -o jsonpath='{.items[*].spec.containers[0].image}' | tr ' ' '\n' | grep -c 'testapp:v2')" = 6 ] && [ "$(rcd phase)" = Healthy ]; }
    for _ in $(seq 1 120); do
        live
        on_v2 && break
        if [ "$(rcd phase)" = WaitingForConfirm ]; then
            show_real
            say_ "\$ kubectl cafe confirm demo"
            kubectl cafe -n "$RNS" confirm demo | sed 's/^/   /'
        fi
        sleep 2
    done
    on_v2 || { echo "the release on the real nodes did not finish" >&2; exit 1; }
    show_real
    sleep 2
    kill -TERM "$LOAD_PID"
    load_ok=0
    wait "$LOAD_PID" && load_ok=1
    say_ "$(tail -n 1 "$LOGS/load.log")"
    if [ "$load_ok" = 1 ]; then
        say_ "Zero failed requests: every pod was taken out of the Service before its container"
        say_ "was restarted with v2 (same pod, same IP, restart +1), and back in only once ready."
    else
        echo "requests failed during the release: see $LOGS/load.log" >&2
        exit 1
    fi
fi

step "Bad input is refused with a message that says what to change"
sed 's/batchSize: 4/batchSize: 0/' examples/demo.yaml |
    kubectl -n "$NS" apply --server-side --force-conflicts --dry-run=server -f - 2>&1 | sed 's/^/   /' || true

step "What the operator reports on /metrics (curl http://$METRICS_ADDR/metrics)"
curl -s "http://$METRICS_ADDR/metrics" | grep -E "^cafe_(cafedeployment_phase.*Healthy|cafedeployment_release_group|pods|leader|reconciles_total|analysis_)" |
    sed 's/^/   /' || true

step "Done. The cluster keeps running:"
say_ "export KUBECONFIG=$KUBECONFIG_FILE"
say_ "PATH=\"$REPO_ROOT/target/release:\$PATH\" kubectl cafe -n $NS console --open    # the release console again"
say_ "make cluster-down      # when you are done"
