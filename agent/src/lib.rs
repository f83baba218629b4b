//! The fault executors: each fault kind an inject/revert pair, the journal that makes every
//! injection recoverable, and the process lookup they share. `chaosctl`'s built-in `local` agent is
//! this code running in-process; `chaos-agent` serves the same executors over HTTP.

pub mod spec;
