//! The controller: the scenario model and its validation, the run engine, probes, the run store
//! and reports. `chaosctl` runs this engine in-process; the `chaosd` service runs the same engine.

pub mod child;
pub mod engine;
pub mod probe;
pub mod report;
pub mod scenario;
pub mod store;
