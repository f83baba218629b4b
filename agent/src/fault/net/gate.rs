//! The fail-open gate of the kinds that redirect traffic to this process (`dns`, `http`).
//!
//! A redirect to a responder in the agent is only safe while the agent lives: if it dies, the
//! redirected traffic would go nowhere. So the redirect rules match only while their table's set
//! `gate` holds an element, and that element has a short kernel timeout ([`GATE_TIMEOUT`]) that a
//! thread of this process renews every [`RENEW_EVERY`]. When the process dies (or the thread
//! stops), the element expires within [`GATE_TIMEOUT`] and traffic goes its normal way again,
//! though the table is still there until a revert deletes it.
//!
//! The element is the port the redirect acts on (`53`, the server's port), so a rule reads
//! `udp dport @gate redirect to :PORT`.
//!
//! A thread inherits the network namespace of the thread that creates it: [`start`] is called
//! from the thread that made the table, so the renewer acts on the same namespace.

// The renewer is a real OS thread on the real clock, which tokio's paused clock has no say over.
#![allow(clippy::disallowed_types)]

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::registry::{Registry, Worker};
use super::run;

/// How often the gate's element is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// The kernel lifetime of the gate's element: how long a redirect outlives this process at most.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Renewers alive in this process, by the table they renew (unique per fault).
static RENEWERS: Registry<Renewer> = Registry::new();

struct Renewer {
    stop: Sender<()>,
    thread: JoinHandle<Stats>,
}

impl Worker for Renewer {
    type Stats = Stats;

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn stop(self) -> Option<Stats> {
        let _ = self.stop.send(());
        self.thread.join().ok()
    }
}

/// What a renewer did, for the revert's detail.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Renewals that succeeded.
    pub renewals: u64,
    /// Renewals that came later than [`GATE_TIMEOUT`] after the previous one, so the redirect
    /// was off for a moment (a host too loaded to run `nft` in time).
    pub lapses: u64,
}

/// The declaration of the gate set, for the table's script.
pub fn declaration() -> &'static str {
    "set gate { type inet_service; flags timeout; }"
}

/// The script that (re)opens the gate of `inet <table>` on `port` for [`GATE_TIMEOUT`]: flushing
/// first makes it work whether the element is there or has expired, in one transaction.
pub fn renewal(table: &str, port: u16) -> String {
    format!(
        "flush set inet {table} gate\nadd element inet {table} gate {{ {port} timeout {}ms }}\n",
        GATE_TIMEOUT.as_millis()
    )
}

/// Opens the gate of `inet <table>` on `port` now, and starts renewing it every [`RENEW_EVERY`]
/// until [`stop`] or until the table is gone (a revert from another process deleted it).
pub fn start(table: &str, port: u16) -> Result<(), String> {
    open(table, port)?;
    let (stop, stopped) = mpsc::channel();
    let owned = table.to_string();
    let thread = thread::Builder::new()
        .name(format!("chaos-gate-{port}"))
        .spawn(move || renew(&owned, port, &stopped))
        .map_err(|err| format!("cannot start the thread that renews the gate: {err}"))?;
    RENEWERS.insert(table, Renewer { stop, thread });
    Ok(())
}

/// Whether a renewer of `table` runs in this process.
pub fn is_running(table: &str) -> bool {
    RENEWERS.is_running(table)
}

/// Stops renewing the gate of `table`; `None` when no renewer of it runs here. The element then
/// expires on its own; a revert deletes the table anyway.
pub fn stop(table: &str) -> Option<Stats> {
    RENEWERS.stop(table)
}

fn open(table: &str, port: u16) -> Result<(), String> {
    run("nft", &["-f", "-"], Some(&renewal(table, port))).map(drop)
}

fn renew(table: &str, port: u16, stopped: &mpsc::Receiver<()>) -> Stats {
    let mut stats = Stats::default();
    let mut last = Instant::now();
    loop {
        match stopped.recv_timeout(RENEW_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return stats,
        }
        if open(table, port).is_err() {
            // The table is gone (reverted elsewhere): nothing left to renew.
            return stats;
        }
        let now = Instant::now();
        if now.duration_since(last) > GATE_TIMEOUT {
            stats.lapses += 1;
        }
        last = now;
        stats.renewals += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_renewal_flushes_then_adds_in_one_script() {
        assert_eq!(
            renewal("chaos_ab12", 53),
            "flush set inet chaos_ab12 gate\nadd element inet chaos_ab12 gate { 53 timeout 2000ms }\n"
        );
        assert!(RENEW_EVERY * 2 <= GATE_TIMEOUT);
    }

    #[test]
    fn stopping_a_renewer_that_never_started_says_so() {
        assert_eq!(stop("chaos_never_started"), None);
        assert!(!is_running("chaos_never_started"));
    }
}
