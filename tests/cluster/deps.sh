#!/usr/bin/env bash
# Installs the Debian packages the local control plane needs when they are
# missing (a fresh machine, CI): run by up.sh. Only as root with apt-get;
# otherwise it names what to install.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# command -> package. libseccomp-dev is checked by its pkg-config file.
# python3: the docs link checker and the import-cycle check (hack/).
declare -A needed=([openssl]=openssl [curl]=curl [ss]=iproute2 [ip]=iproute2 [setsid]=util-linux [python3]=python3)
if [ "$REAL_NODES" = 1 ]; then
    needed+=([iptables]=iptables [ip6tables]=iptables [nft]=nftables [conntrack]=conntrack
        [mount]=mount [pkg-config]=pkg-config [gcc]=gcc)
fi
# The console's stories drive a real browser (hack/test.sh asks for it).
if [ "${CAFE_BROWSER:-0}" = 1 ]; then
    needed+=([chromium]=chromium [chromedriver]=chromium-driver)
fi
missing=()
for cmd in "${!needed[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 ||
        missing+=("${needed[$cmd]}")
done
if [ "$REAL_NODES" = 1 ] && ! pkg-config --exists libseccomp 2>/dev/null; then
    missing+=(libseccomp-dev)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing packages: ${missing[*]}. Install them (Debian: apt-get install ${missing[*]}), then run 'make cluster-up' again"
fi
say "installing ${missing[*]} (apt-get)"
log="$CAFE_CACHE/build-logs/apt.log"
mkdir -p "$(dirname "$log")"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    die "apt-get install ${missing[*]} failed. Last lines of $log:
$(tail -n 10 "$log")"
fi
