#!/usr/bin/env bash
# Tears the local control plane down while its real nodes are busy: pods
# starting, pods stopping (a Deployment scaled to zero a moment before) and a
# container restarting over and over. Processes and cgroups disappear while
# down.sh reads them; it must finish the first time, and leave the machine
# as it found it (hack/test.sh compares the machine's state before and after).
# Expects a running cluster (up.sh); exits non-zero when down.sh fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. tests/cluster/lib.sh
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

kubectl apply -f tests/cluster/busy-pods.yaml >/dev/null
running() {
    [ "$(kubectl get pods -l app=busy --field-selector status.phase=Running -o name | wc -l)" -ge 2 ]
}
for _ in $(seq 1 60); do running && break; sleep 1; done
running || die "the busy pods did not start on the real nodes within 60 s"
# Stopping (scaled to zero) and starting (scaled up again) at once.
kubectl scale deployment busy --replicas 0 >/dev/null
kubectl scale deployment crashing --replicas 6 >/dev/null
sleep 1
echo "cluster: tearing down with pods starting and stopping: $(kubectl get pods --no-headers 2>/dev/null | awk '{print $3}' | sort | uniq -c | tr -s ' \n' ' ')"
tests/cluster/down.sh
