#!/usr/bin/env bash
# Prints what the local control plane and its real nodes could leave behind
# on this machine: network links and addresses, nftables tables and KUBE-*
# iptables chains, mounts, cgroups, processes run from the binary cache, the
# sysctls the nodes change, and the host paths their software writes to.
# `make test` compares it before `make cluster-up` and after `make cluster-down`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "# links"
ip -o link show | awk '{print $2}' | sed 's/@.*//; s/:$//' | sort
echo "# network namespaces"
ip netns list 2>/dev/null | sort
echo "# addresses"
ip -o addr show | awk '{print $2, $4}' | sort
# Without nft (CAFE_REAL_NODES=0 does not install it) there are no tables
# the cluster could have made.
nft() { if type -P nft >/dev/null; then command nft "$@"; fi; }
echo "# nftables tables"
nft list tables 2>/dev/null | sort
echo "# KUBE-* chains (from nftables, without creating iptables' tables)"
nft list ruleset 2>/dev/null | awk '$1 == "chain" && $2 ~ /^KUBE-/ {print $2}' | sort
echo "# mounts"
awk '{print $5}' /proc/self/mountinfo | sort
echo "# cgroups"
ls -d /sys/fs/cgroup/*/*/ 2>/dev/null | grep -F "/cafe-" | sort || true
echo "# processes from $BIN_CACHE"
for exe in /proc/[0-9]*/exe; do
    target="$(readlink "$exe" 2>/dev/null)" || continue
    case "$target" in "$BIN_CACHE"/*) echo "$target" ;; esac
done | sort
echo "# sysctls"
for s in "${SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s" 2>/dev/null || echo absent)"; done
echo "# host paths"
for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] && echo "$p"; done || true
