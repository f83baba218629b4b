//! Keeping remote agents' leases: while a host holds faults of this run, its agent hears from us
//! every quarter lease. A host that cannot be renewed for half a lease is lost: the run aborts
//! (cause `agent_lost`) and reverts the rest, while that agent reverts on its own when the lease
//! runs out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio::time::{Instant, interval};
use tokio_util::sync::CancellationToken;

use super::Abort;
use super::hosts::Hosts;
use crate::report::model::Cause;
use crate::scenario::model::LOCAL_HOST;

/// Hosts holding faults, and the agents found lost.
#[derive(Default)]
struct Held {
    /// Remote host → faults of ours it holds.
    faults: BTreeMap<String, usize>,
    /// (host, why) for each lost agent, in the order they were lost.
    lost: Vec<(String, String)>,
}

pub struct LeaseKeeper {
    held: Arc<Mutex<Held>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    pub fn start(hosts: Hosts, abort: Arc<Abort>) -> LeaseKeeper {
        let held = Arc::new(Mutex::new(Held::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(hosts, abort, held.clone(), stop.clone()));
        LeaseKeeper {
            held,
            stop,
            task: Some(task),
        }
    }

    /// A fault was injected on `host`.
    pub fn holds(&self, host: &str) {
        if host != LOCAL_HOST {
            *self.lock().faults.entry(host.to_string()).or_default() += 1;
        }
    }

    /// A fault on `host` was reverted (or given up on).
    pub fn released(&self, host: &str) {
        let mut held = self.lock();
        if let Some(n) = held.faults.get_mut(host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.faults.remove(host);
            }
        }
    }

    /// The agents found lost since the last call.
    pub fn take_lost(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.lock().lost)
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().expect("lease lock")
    }
}

async fn keep(hosts: Hosts, abort: Arc<Abort>, held: Arc<Mutex<Held>>, stop: CancellationToken) {
    let lease = hosts.lease();
    let mut tick = interval(lease / 4);
    let mut last_ok: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let holding: Vec<String> = held
            .lock()
            .expect("lease lock")
            .faults
            .keys()
            .cloned()
            .collect();
        let mut renewals = tokio::task::JoinSet::new();
        for host in holding {
            let hosts = hosts.clone();
            renewals.spawn(async move {
                let result = hosts.renew(&host).await;
                (host, result)
            });
        }
        let now = Instant::now();
        while let Some(Ok((host, result))) = renewals.join_next().await {
            let since = *last_ok.entry(host.clone()).or_insert(now);
            crate::metrics::global().lease_renewal(result.is_ok());
            match result {
                Ok(()) => {
                    last_ok.insert(host, Instant::now());
                }
                Err(err) if now.duration_since(since) >= lease / 2 || !err.is_unreachable() => {
                    let why = format!(
                        "lost the agent of {host}: {err}; it reverts this run's faults on its own \
                         once the lease runs out"
                    );
                    let mut held = held.lock().expect("lease lock");
                    if !held.lost.iter().any(|(h, _)| *h == host) {
                        held.lost.push((host.clone(), why.clone()));
                        held.faults.remove(&host);
                        drop(held);
                        abort.abort(Cause::AgentLost, why);
                    }
                }
                Err(err) => tracing::warn!(host, error = %err, "lease renewal failed; retrying"),
            }
        }
    }
}
