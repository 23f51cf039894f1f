# The two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo demo-multicluster install test bench cluster-up cluster-down crds signoff-policies console-screenshot lint unit e2e plugin

help:
	@echo "make demo          build, start the local control plane, run the operator on examples/demo.yaml"
	@echo "make demo-multicluster  one release over three clusters (a host and two members)"
	@echo "make install       build the operator's image and helm-install it on the local cluster's real nodes"
	@echo "make test          every check and test (fmt, clippy, unit, e2e on the local control plane)"
	@echo "make bench         CafeDeployment vs Deployment on the local control plane (BENCH_ARGS=\"--pods 10000\")"
	@echo "make cluster-up    start the local control plane (.cluster/kubeconfig)"
	@echo "make cluster-down  stop it and remove its state"
	@echo "make crds          regenerate crds/ from the Rust types"
	@echo "make signoff-policies  regenerate deploy/signoff/policies.yaml from the chart"
	@echo "make plugin        the kubectl cafe plugin's krew archive and manifest in dist/"
	@echo "make console-screenshot  docs/images/console.png, from the console's browser test"

demo:
	hack/demo.sh

demo-multicluster:
	hack/demo-multicluster.sh

install:
	hack/install.sh

test:
	hack/test.sh

bench:
	hack/bench.sh $(BENCH_ARGS)

cluster-up:
	tests/cluster/up.sh

cluster-down:
	tests/cluster/down.sh

crds:
	cargo run --quiet -- crd > crds/cafe-operator.yaml
	cp crds/cafe-operator.yaml charts/cafe-operator/crds/cafe-operator.yaml

# The sign-off admission policies for users without Helm: the chart's, rendered.
signoff-policies:
	hack/signoff-policies.sh > deploy/signoff/policies.yaml

console-screenshot:
	hack/console-screenshot.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	hack/check-links.sh
	python3 hack/check-imports.py

unit:
	cargo test

e2e:
	KUBECONFIG=$${KUBECONFIG:-$(CURDIR)/.cluster/kubeconfig} cargo test --test e2e -- --include-ignored

plugin:
	hack/plugin.sh
