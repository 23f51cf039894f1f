//! What the stories share; a story file imports helpers only from here.
//!
//!
//! The cluster and the operator:
//! - `namespace`: the client for `KUBECONFIG` and `TestNs`, a test's own
//!   namespace with bounded, self-explaining waits;
//! - `members`: the member clusters dc-2 and dc-3 and their registration;
//! - `operator`: the operator under test as a process of its own, and who
//!   holds its leader Lease;
//! - `kubectl`: `kubectl` and the `kubectl cafe` plugin as a user runs them;
//! - `chart`: the Helm chart and `helm`.
//!
//! Releases and pods:
//! - `demo`: CafeDeployment manifests and CAFE's example `demo`: create,
//!   release, confirm, wait;
//! - `group_watch`: `status.release.group` sampled every 50 ms, and the
//!   check that it never went back within a release;
//! - `pods`: reading pods and their conditions, counting them from a watch;
//! - `signoff`: the sign-off policies, people as clients, the history.
//!
//! Traffic and the real nodes:
//! - `lossless`: the checker that no pod changed while it served traffic;
//! - `component`: the example external traffic component;
//! - `load`: real HTTP requests and their outcomes;
//! - `real_app`: the test application on the real nodes;
//! - `real_nodes`: its Services, its `demo` under load, the load's bounds;
//! - `net`: free ports and plain HTTP GET on 127.0.0.1;
//! - `random`: pseudo-random timing for the chaos stories.
//!
//! The console:
//! - `console`: `kubectl cafe console` as a process;
//! - `browser`: a headless browser for the console's stories.
//!
//! The benchmark (`benches/bench/support/`) includes `namespace`, `members`,
//! `pods`, `operator`, `lossless` and `real_app` too: they refer to each
//! other as `crate::support::...`, which names the same files in both.

pub mod browser;
pub mod chart;
pub mod component;
pub mod console;
pub mod demo;
pub mod group_watch;
pub mod kubectl;
pub mod load;
pub mod lossless;
pub mod members;
pub mod namespace;
pub mod net;
pub mod operator;
pub mod pods;
pub mod random;
pub mod real_app;
pub mod real_nodes;
pub mod signoff;
