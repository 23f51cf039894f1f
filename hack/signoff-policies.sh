#!/usr/bin/env bash
# Prints the sign-off admission policies (deploy/signoff/policies.yaml) for
# users without Helm: the chart's template, rendered with its defaults for a
# release named cafe-operator. A test fails when the committed copy is stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tests/cluster/lib.sh
helm="$(command -v helm || echo "$HELM_BIN/helm")"
[ -x "$helm" ] || die "helm is not on PATH (make cluster-up builds it into $HELM_BIN)"
echo "# The sign-off admission policies (Kubernetes 1.36+), rendered from the chart:"
echo "# make signoff-policies. Apply with: kubectl apply --server-side -f deploy/signoff/policies.yaml"
"$helm" template cafe-operator charts/cafe-operator --show-only templates/signoff.yaml \
    --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy |
    grep -v '^# Source:' | grep -v -E '^\s+(helm.sh/chart|app.kubernetes.io/managed-by):'
