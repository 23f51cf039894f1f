#!/usr/bin/env bash
# `make console-screenshot`: docs/images/console.png, taken by the console's
# browser story (tests/e2e/console.rs) on the local control plane. Starts the
# cluster unless one is running, and stops it again if it started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh

started_cluster=0
cleanup() {
    if [ "$started_cluster" = 1 ]; then
        tests/cluster/down.sh || true
    fi
}
trap cleanup EXIT

CAFE_BROWSER=1 tests/cluster/deps.sh
cargo test --test e2e --no-run --quiet
start_unless_running
export PATH="$K8S_BIN:$HELM_BIN:$PATH"
target/debug/cafe-operator crd | kubectl apply --server-side --force-conflicts -f - >/dev/null
mkdir -p docs/images
CAFE_CONSOLE_SCREENSHOT="$PWD/docs/images/console.png" \
    cargo test --test e2e -- --include-ignored --exact \
    console::the_console_shows_a_release_live_and_acts_as_the_person_who_opened_it
echo "docs/images/console.png written"
