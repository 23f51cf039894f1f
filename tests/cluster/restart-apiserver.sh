#!/usr/bin/env bash
# Restarts the local control plane's kube-apiserver with the command line it
# runs with (read from /proc), and waits until it is ready again. Used by the
# chaos e2e story; exits 3 when no local kube-apiserver is running (kind, k3d).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pid_alive kube-apiserver || { say "no local kube-apiserver is running"; exit 3; }
pid="$(cat "$PIDS/kube-apiserver.pid")"
mapfile -d '' cmd <"/proc/$pid/cmdline"
kill -TERM "$pid"
for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
setsid "${cmd[@]}" >>"$LOGS/kube-apiserver.log" 2>&1 </dev/null &
echo $! >"$PIDS/kube-apiserver.pid"
for _ in $(seq 1 300); do
    if "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null 2>&1; then
        say "kube-apiserver restarted"
        exit 0
    fi
    sleep 0.3
done
die "kube-apiserver did not become ready again; see $LOGS/kube-apiserver.log"
