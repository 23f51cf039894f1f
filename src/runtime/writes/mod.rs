//! What the controllers remember of their own writes, so that a write is
//! made once and only when it changes something: the one status writer
//! (`status`, with counters-only changes spaced by `coalesce`), the pods
//! written whose new version the cache does not show yet (`own_writes`),
//! writes the API server refused and their hold-off (`refusals`), and the
//! per-object retry backoff (`backoff`), and another operator found writing
//! the same objects (`writers`).

pub mod backoff;
pub mod coalesce;
pub mod own_writes;
pub mod refusals;
pub mod status;
pub mod writers;
