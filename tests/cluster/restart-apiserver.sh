#!/usr/bin/env bash
# Restarts the local control plane's kube-apiserver with the command line it
# runs with (read from /proc), and waits until it is ready again. Used by the
# chaos e2e story; exits 3 when no local kube-apiserver is running (kind, k3d).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pid_alive kube-apiserver || { say "no local kube-apiserver is running"; exit 3; }
pid="$(cat "$PIDS/kube-apiserver.pid")"
cp "/proc/$pid/cmdline" "$STATE/kube-apiserver.cmdline"
kill -TERM "$pid"
for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
start_apiserver_as "$STATE/kube-apiserver.cmdline"
say "kube-apiserver restarted"
