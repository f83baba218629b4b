//! The agent's integration tests: real processes, real files, a real tmpfs (when root).

mod faults;
mod limits;
mod local;
mod net;
mod process;
mod server;
mod stress;
mod support;
