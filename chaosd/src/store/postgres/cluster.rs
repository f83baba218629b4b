//! Several chaosd instances on one PostgreSQL: who leads, who is alive, whether chaosd is halted.
//!
//! Every [`TICK`], on the database thread, each instance
//! - records its heartbeat in `instances` and reads the halt switch, published on a watch
//!   channel that the run manager follows (so a halt through any instance aborts the runs of
//!   every instance within about a second);
//! - tries to become the leader: a session-level advisory lock ([`LEADER_LOCK`]) held on a
//!   connection of its own, which PostgreSQL releases when that session ends (a killed leader's
//!   at once; a partitioned one's when its TCP session times out);
//! - as leader, marks `interrupted` the open runs of instances whose heartbeat is older than
//!   [`STALE_AFTER`].
//!
//! **Fencing:** a leader whose lock connection has not answered for [`FENCE`] stops leading at
//! once ([`Cluster::is_leader`] looks at the time of the last answer, not only at a flag the loop
//! may be too stuck to clear), since its lock may outlive a partition by hours. Schedules
//! fire only while [`Cluster::is_leader`], and each due time is claimed in the database too
//! (`schedule_fires`), so even a leader that is fenced late cannot fire a due time twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::connect::Connector;
use super::{PgStore, RECORD_COLUMNS, record};

/// How often an instance beats, reads the halt switch and, as leader, looks for dead instances.
pub const TICK: Duration = Duration::from_millis(500);

/// A leader whose lock connection has not answered for this long stops leading.
pub const FENCE: Duration = Duration::from_secs(5);

/// An instance whose heartbeat is older than this is taken for dead: its open runs are marked
/// `interrupted`.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// How long one statement of the loop may take before the loop counts it as failed.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The advisory lock whose holder leads ("leader" in ASCII).
pub const LEADER_LOCK: i64 = 0x6c65_6164_6572;

/// What the run manager and the scheduler read of the cluster.
pub struct Cluster {
    pub node: String,
    leader: AtomicBool,
    /// When the lock connection last answered, while leading.
    lock_ok: Mutex<Option<Instant>>,
    halt: watch::Sender<Option<DateTime<Utc>>>,
}

impl Cluster {
    /// Whether this instance leads now: it holds the lock and its lock connection answered
    /// within [`FENCE`].
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
            && self
                .lock_ok
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some_and(|t| t.elapsed() < FENCE)
    }

    /// The halt switch as last read (`Some(since)` while halted).
    pub fn halt_watch(&self) -> watch::Receiver<Option<DateTime<Utc>>> {
        self.halt.subscribe()
    }

    /// Publishes a halt switch this instance just changed, so its own follower does not wait
    /// for the next read.
    pub fn halt_changed(&self, since: Option<DateTime<Utc>>) {
        self.halt.send_if_modified(|h| {
            let changed = *h != since;
            *h = since;
            changed
        });
    }

    fn stop_leading(&self, why: &str) {
        if self.leader.swap(false, Ordering::SeqCst) {
            warn!(
                node = self.node,
                why, "no longer leading: schedules fire elsewhere"
            );
        }
        *self.lock_ok.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Starts the loop on `store`'s database thread; it runs until the store is dropped.
pub fn start(store: &PgStore, halted: Option<DateTime<Utc>>) -> Arc<Cluster> {
    let cluster = Arc::new(Cluster {
        node: store.node.clone(),
        leader: AtomicBool::new(false),
        lock_ok: Mutex::new(None),
        halt: watch::channel(halted).0,
    });
    let (conn, instance) = (Arc::clone(&store.conn), store.instance.clone());
    let looping = Arc::clone(&cluster);
    store.handle.spawn(async move {
        let mut lock: Option<Client> = None;
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // Side by side: a heartbeat stuck on a dead database must not delay the fence.
            tokio::join!(
                beat(&conn, &looping, &instance),
                lead(&conn, &looping, &mut lock)
            );
            if looping.is_leader() {
                mark_dead_instances(&conn, &instance).await;
            }
        }
    });
    cluster
}

async fn within<T>(f: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, String> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            STATEMENT_TIMEOUT.as_secs()
        )),
    }
}

/// The heartbeat, and the halt switch read back.
async fn beat(conn: &Connector, cluster: &Cluster, instance: &str) {
    let result = async {
        let client = conn.client().await.map_err(|e| format!("{e:?}"))?;
        let leader = cluster.is_leader();
        within(client.execute(
            "INSERT INTO instances (instance, node, started_at, heartbeat_at, leader)
             VALUES ($1, $2, now(), now(), $3)
             ON CONFLICT (instance) DO UPDATE SET heartbeat_at = now(), leader = $3",
            &[&instance, &cluster.node, &leader],
        ))
        .await?;
        within(client.query_opt("SELECT since FROM halt", &[]))
            .await
            .map(|row| row.map(|r| r.get::<_, DateTime<Utc>>(0)))
    }
    .await;
    match result {
        Ok(halted) => cluster.halt_changed(halted),
        Err(e) => tracing::debug!(error = e, "heartbeat failed"),
    }
}

/// Takes, keeps or gives up the leader's lock.
async fn lead(conn: &Connector, cluster: &Cluster, lock: &mut Option<Client>) {
    if lock.as_ref().is_some_and(Client::is_closed) {
        *lock = None;
        cluster.stop_leading("its lock connection closed");
    }
    if lock.is_none() {
        match tokio::time::timeout(STATEMENT_TIMEOUT, conn.connect()).await {
            Ok(Ok(client)) => *lock = Some(client),
            _ => {
                cluster.stop_leading("the database cannot be reached");
                return;
            }
        }
    }
    let client = lock.as_ref().expect("made above");
    if cluster.leader.load(Ordering::SeqCst) {
        match within(client.query_one("SELECT 1", &[])).await {
            Ok(_) => {
                *cluster
                    .lock_ok
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
            Err(e) => {
                // Dropping the connection gives the lock up as soon as the server notices.
                *lock = None;
                cluster.stop_leading(&format!("its lock connection failed: {e}"));
            }
        }
        return;
    }
    match within(client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])).await {
        Ok(row) if row.get::<_, bool>(0) => {
            *cluster
                .lock_ok
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            cluster.leader.store(true, Ordering::SeqCst);
            info!(
                node = cluster.node,
                "leading: this instance fires the schedules"
            );
        }
        Ok(_) => {}
        Err(e) => {
            *lock = None;
            tracing::debug!(error = e, "cannot ask for the leader's lock");
        }
    }
}

/// Marks `interrupted` the open runs of instances that stopped beating, and gives each the
/// report its events make where its folder can be read from here.
async fn mark_dead_instances(conn: &Connector, instance: &str) {
    let Ok(client) = conn.client().await else {
        return;
    };
    let stale = STALE_AFTER.as_secs_f64();
    let marked = within(client.query(
        &format!(
            "UPDATE runs SET verdict = 'interrupted'
             WHERE verdict IS NULL AND instance IS DISTINCT FROM $1
               AND instance NOT IN (SELECT instance FROM instances
                                    WHERE heartbeat_at > now() - make_interval(secs => $2))
             RETURNING {RECORD_COLUMNS}, node"
        ),
        &[&instance, &stale],
    ))
    .await;
    let rows = match marked {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = e, "cannot look for runs of dead instances");
            return;
        }
    };
    for row in rows {
        let Ok(rec) = record(&row) else { continue };
        let node: Option<String> = row.get("node");
        warn!(run = rec.run_id, node = ?node, "run's chaosd stopped answering; marked interrupted (its agents end its faults by their lease)");
        let Some(dir) = rec.report_dir.clone() else {
            continue;
        };
        let dir = std::path::PathBuf::from(dir);
        let report = crate::interrupted::report(&rec, crate::interrupted::read_events(&dir));
        if let Ok(json) = serde_json::to_string(&report) {
            let _ = within(client.execute(
                "UPDATE runs SET report_json = $2, ended_at = $3
                 WHERE run_id = $1 AND report_json IS NULL",
                &[&rec.run_id, &json, &report.ended_at],
            ))
            .await;
        }
        if dir.is_dir() {
            let _ = crate::interrupted::write_files(&dir, &report);
        }
    }
    let _ = within(client.execute(
        "DELETE FROM instances WHERE heartbeat_at < now() - interval '1 day'",
        &[],
    ))
    .await;
}
