//! Where cells live: the pure rules that place each cell of a CafeDeployment
//! in this cluster or a member cluster (`rules`), the registry of member
//! clusters and how far each may be trusted now (`members`), the rule that a
//! cell stays where its set is (`stays`), the homes a CafeDeployment's sets
//! are read from and written to (`homes`), and the hold-off of writes toward
//! a member whose connection fails (`holdoff`).

pub mod holdoff;
pub mod homes;
pub mod members;
mod rules;
mod silence;
mod stays;

pub use rules::*;
pub use stays::*;
