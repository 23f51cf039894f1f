//! End-to-end tests against a real API server (the local control plane from
//! `make cluster-up`, or kind/k3d): the cluster comes from `KUBECONFIG`.
//! Each test owns a namespace; every wait is bounded. They are `#[ignore]`d so
//! that a plain `cargo test` runs only the unit tests; `make test` runs all.
//! A file per story area; what they share is in `support/`.

#[path = "../corpus/mod.rs"]
mod corpus;
mod support;

mod analysis;
mod cafedeployment;
mod chaos;
mod cluster_smoke;
mod console;
mod examples;
mod group_counter;
mod inplaceset;
mod midflight;
mod multicluster;
mod plugin;
mod pre_download;
mod production;
mod real_nodes;
mod real_operator;
mod safety;
mod signoff;
mod traffic;
mod validation;
