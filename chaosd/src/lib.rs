//! The controller: the scenario model and its validation, the run engine, probes, the run store
//! and reports. `chaosctl` runs this engine in-process; the `chaosd` service ([`service`]) runs the same engine
//! behind an HTTP API.

pub mod engine;
pub mod interrupted;
pub mod metrics;
pub mod monkey;
pub mod open_files;
pub mod otel;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod service;
pub mod side_by_side;
pub mod store;
pub mod webhook;
pub mod zone;

// Probes and child processes live with the agent, which runs probes on its own host too.
pub use agent::{child, probe};
