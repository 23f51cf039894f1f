//! What the benchmark's parts share. The files of `tests/e2e/support/` that
//! the benchmark uses too are included from there (never a story file):
//! they name each other `crate::support::...`, as in the e2e tests.

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
