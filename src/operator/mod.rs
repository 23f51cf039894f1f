//! The operator process: its command line (`flags`) and its start-up
//! (`start`), which wires the shared watches, leader election and every
//! controller together. The top of the crate: nothing imports it but the
//! binary.

pub mod flags;
pub mod start;
