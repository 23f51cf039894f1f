#!/usr/bin/env bash
# `make plugin`: the krew archive of kubectl-cafe and its manifest, in dist/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin kubectl-cafe
mkdir -p dist
tar -C target/release -czf dist/kubectl-cafe_linux_amd64.tar.gz kubectl-cafe
sum="$(sha256sum dist/kubectl-cafe_linux_amd64.tar.gz | cut -d' ' -f1)"
uri="${PLUGIN_URI:-file://$PWD/dist/kubectl-cafe_linux_amd64.tar.gz}"
sed -e "s/@SHA256@/$sum/" -e "s|@URI@|$uri|" plugin.yaml >dist/plugin.yaml
echo "dist/kubectl-cafe_linux_amd64.tar.gz (sha256 $sum) and dist/plugin.yaml"
