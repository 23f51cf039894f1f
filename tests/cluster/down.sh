#!/usr/bin/env bash
# Stops exactly the processes up.sh started (by their recorded pids) and
# removes the cluster's state. Safe to run when nothing is running.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stopped=()
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[$i]}"
    f="$PIDS/$c.pid"
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        stopped+=("$c")
    fi
    rm -f "$f"
done
rm -rf "$STATE"
say "stopped: ${stopped[*]:-nothing was running}; removed $STATE"
