//! Leases: each apply and each `POST /v1/runs/{run}/lease` renews its run's lease; when a lease
//! runs out (the controller went silent), the watchdog reverts every fault of that run and says so
//! in the audit log.
//!
//! End times are not kept here: the hold of each fault goes to [`crate::LocalAgent`], which
//! reverts it on its own thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::State;
use crate::http::audit::Record;

/// The lease deadline of each run that has one.
#[derive(Debug, Default)]
pub struct Leases {
    deadlines: Mutex<HashMap<String, Instant>>,
    /// Wakes the watchdog when a deadline changes.
    changed: Notify,
}

impl Leases {
    /// Sets `run`'s deadline to `lease` from now.
    pub fn renew(&self, run: &str, lease: Duration) {
        // Routes bound the lease; one past the clock's range is not kept rather than panicking.
        let Some(deadline) = Instant::now().checked_add(lease) else {
            warn!(
                run,
                lease_ms = lease.as_millis() as u64,
                "lease too long to keep; ignored"
            );
            return;
        };
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.to_string(), deadline);
        self.changed.notify_one();
    }

    /// Forgets `run`'s lease (its faults are all reverted).
    pub fn end(&self, run: &str) {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run);
        self.changed.notify_one();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .min()
            .copied()
    }

    /// Removes and returns the runs whose lease has run out.
    fn take_expired(&self, now: Instant) -> Vec<String> {
        let mut deadlines = self
            .deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let expired: Vec<String> = deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(run, _)| run.clone())
            .collect();
        for run in &expired {
            deadlines.remove(run);
        }
        expired
    }
}

/// Reverts the faults of every run whose lease runs out, until `cancel`.
pub async fn watchdog(state: Arc<State>, cancel: CancellationToken) {
    loop {
        let next = state.leases.next_deadline();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = state.leases.changed.notified() => continue,
            () = sleep => {}
        }
        for run in state.leases.take_expired(Instant::now()) {
            let reverted = state.revert_run(&run).await;
            if reverted.is_empty() {
                continue;
            }
            super::metrics::agent()
                .lease_expiries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let failed = reverted.iter().filter(|r| r.error.is_some()).count();
            let ids: Vec<&str> = reverted.iter().map(|r| r.fault_id.as_str()).collect();
            let detail = format!(
                "the controller went silent: reverted {} ({} failed)",
                ids.join(", "),
                failed
            );
            if failed == 0 {
                info!(run, faults = ?ids, "lease expired; run's faults reverted");
            } else {
                warn!(run, faults = ?ids, failed, "lease expired; some reverts failed");
            }
            let outcome = if failed == 0 { "obeyed" } else { "failed" };
            state
                .audit
                .write(&Record::own("lease_expired", Some(&run), outcome, detail));
        }
    }
}
