//! What the benchmark's parts share: its own helpers (the simulated nodes and
//! the operator, metrics, where each pod's time goes, a measured release, the
//! console probe), and the files of `tests/e2e/support/` it uses too, included
//! from there (never a story file): they name each other
//! `crate::support::...`, as in the e2e tests.

// Shared with the e2e tests.
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/load.rs"]
pub mod load;
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/lossless.rs"]
pub mod lossless;
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/members.rs"]
pub mod members;
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/namespace.rs"]
pub mod namespace;
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/operator.rs"]
pub mod operator;
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/pods.rs"]
pub mod pods;
#[allow(dead_code)]
#[path = "../../../tests/e2e/support/real_app.rs"]
pub mod real_app;

// The benchmark's own.
pub mod cluster;
pub mod console;
pub mod metrics;
pub mod release;
pub mod stages;
