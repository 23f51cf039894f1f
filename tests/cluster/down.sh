#!/usr/bin/env bash
# Stops exactly the processes up.sh started (by their recorded pids) and
# removes the cluster's state. Safe to run when nothing is running.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOPPED=()
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[$i]}"
    # The real nodes' pods and shims go before their containerd stops.
    case "$c" in containerd-*) continue ;; esac
    stop_component "$c"
done
# The registry also when this cluster now runs without it (registry-lib.sh).
registry_down
# Whatever the real nodes left (also after a run that was killed, and also
# when CAFE_REAL_NODES=0 now but the nodes ran before): nodes.sh.
nodes_down
rm -rf "$STATE"
say "stopped: ${STOPPED[*]:-nothing was running}; removed $STATE"
