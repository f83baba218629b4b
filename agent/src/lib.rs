//! The fault executors: each fault kind an inject/revert pair, the journal that makes every
//! injection recoverable, and the process lookup they share. `chaosctl`'s built-in `local` agent is
//! this code running in-process; `chaos-agent` serves the same executors over HTTP.
//!
//! # Layout
//! - [`spec`]: the wire types (what a fault asks for).
//! - [`process`]: finding processes in `/proc`, and the pid-reuse guard.
//! - [`mounts`]: where a path a container's process sees is on the host.
//! - [`cgroups`]: where a process's cgroups are on the host, in each hierarchy that limits it.
//! - [`container`]: which container a process runs in (its cgroup path), and the container's
//!   names from the runtimes' state on disk.
//! - [`fault`]: one module per kind; `plan` → journal → `inject` → `revert`.
//! - [`journal`]: one synced JSON file per fault, written before the host is touched.
//! - [`local`]: [`LocalAgent`], the in-process agent (end times, recovery, idempotent reverts).
//! - [`recovered`]: what starts reverted from a dead agent's journal, so later reverts succeed.
//! - [`probe`]: one sample of a probe, taken from this host's own vantage.
//! - [`child`]: how user commands (command probes, setup) are started.
//! - [`api`]: the agent's HTTP API (request and response bodies); [`client`] its controller side.
//! - [`http`]: the HTTP plumbing `chaos-agent` and chaosd share: token, TLS, accept loop, bounded
//!   bodies, audit log, metrics writer, and the JSON-over-HTTP client core.
//! - [`logging`]: the log on stderr the three binaries share (`CHAOS_LOG`).
//! - [`server`]: `chaos-agent`, the daemon: the HTTP API over [`LocalAgent`], with its policy,
//!   one-run-at-a-time rule and leases.
//!
//! **Architecture Invariant:** the agent never injects a fault it has not journaled.

pub mod api;
pub mod cgroups;
pub mod child;
pub mod client;
pub mod container;
pub mod error;
pub mod fault;
pub mod http;
pub mod journal;
pub mod local;
pub mod logging;
pub mod mounts;
pub mod probe;
pub mod process;
pub mod recovered;
pub mod server;
pub mod spec;

pub use error::FaultError;
pub use local::{
    ActiveFault, Applied, Capabilities, InjectRequest, KindSupport, LocalAgent, Recovered,
    Reverted, RevertedBy,
};
