//! The lab library: what the workspace's tests and benchmarks share.
//!
//! - [`bins`] finds the workspace's binaries next to the running test (building them once when
//!   they are missing or stale), since `CARGO_BIN_EXE_*` exists only inside their own package.
//! - [`support`] is the harness around the built `chaosctl`: a just-style `Test` builder with its
//!   own state and report folders, `report.json` read back, processes and tmpfs mounts that clean
//!   up after themselves.
//! - [`lab`] builds hosts in network namespaces on a bridge, a real `chaos-agent` on each, and
//!   tears them down (checking for leftovers) on every path.
//! - [`fake_agent`] is a stand-in fleet of agents that answer after a delay and record every
//!   call (how many the controller had in flight at once).
//! - [`otlp`] is a stand-in OpenTelemetry collector that keeps what it is sent (or never answers).
//! - [`podman`] runs real containers (Podman, a busybox root file system, no image) and removes
//!   them.
//! - [`postgres`] runs a PostgreSQL server of the test's own (`initdb` in a temporary folder).
//! - [`eventually`], the one bounded poll; [`ping`], the one reading of `ping`'s output; [`skip`],
//!   the one way a test that cannot run here says so (recorded, and a failure in CI).
//!
//! The end-to-end tests are this package's integration test (`e2e/`), the benchmarks its
//! `benches/`. The agent's and chaosd's own tests use it as a dev-dependency: it depends on none
//! of the workspace's crates, only on their binaries.
//!
//! Tests wait on real processes and real time, which a paused tokio clock cannot fake, so this
//! library measures time with `std::time::Instant`.
#![allow(clippy::disallowed_types)]

pub mod bins;
pub mod fake_agent;
pub mod lab;
pub mod otlp;
pub mod ping;
pub mod podman;
pub mod postgres;
pub mod skip;
pub mod support;

mod poll;

pub use poll::{Done, eventually, eventually_async};
