//! What the stories share; a story file imports helpers only from here.
//!
//! - `namespace`: the client for `KUBECONFIG` and `TestNs`, a test's own
//!   namespace with bounded, self-explaining waits;
//! - `members`: the member clusters dc-2 and dc-3 and their registration;
//! - `operator`: the operator under test as a process of its own;
//! - `pods`: reading pods and their conditions;
//! - `demo`: the CafeDeployments the stories release;
//! - `lossless`: the checker that no pod changed while it served traffic;
//! - `load`: real HTTP requests and their outcomes;
//! - `real_app`: the test application on the real nodes;
//! - `browser`: a headless browser for the console's stories.
//!
//! The benchmark (`benches/bench/support/`) includes `namespace`, `members`,
//! `pods`, `operator`, `lossless` and `real_app` too: they refer to each
//! other as `crate::support::...`, which names the same files in both.

pub mod browser;
pub mod demo;
pub mod load;
pub mod lossless;
pub mod members;
pub mod namespace;
pub mod operator;
pub mod pods;
pub mod real_app;
