//! chaosd's store: the SQLite history in its state directory (the default, one instance), or
//! PostgreSQL shared by several instances (`store: postgresql://...`). The run manager and the
//! scheduler hold a [`Store`] and do not care which.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::postgres::PgStore;
use super::postgres::cluster::{self, Cluster};
use super::{RunRecord, RunStore, ScheduleRecord, StoreError};
use crate::report::model::Report;

#[derive(Clone)]
pub enum Store {
    Sqlite(Arc<Mutex<RunStore>>),
    Postgres {
        store: Arc<PgStore>,
        cluster: Arc<Cluster>,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sqlite(s) => s.lock().unwrap_or_else(PoisonError::into_inner).fmt(f),
            Store::Postgres { store, .. } => store.fmt(f),
        }
    }
}

impl Store {
    /// The SQLite history in `state_dir` (marking the runs of a dead chaosd `interrupted`).
    pub fn sqlite(state_dir: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(Arc::new(Mutex::new(RunStore::open(
            state_dir,
        )?))))
    }

    /// PostgreSQL at `url`, this instance named `node`; starts the cluster's loop (heartbeat,
    /// leadership, halt switch).
    pub fn postgres(url: &str, node: &str) -> Result<Store, StoreError> {
        let store = PgStore::open(url, node)?;
        let halted = store.halted()?;
        let cluster = cluster::start(&store, halted);
        Ok(Store::Postgres {
            store: Arc::new(store),
            cluster,
        })
    }

    fn sqlite_store(s: &Mutex<RunStore>) -> MutexGuard<'_, RunStore> {
        s.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `sqlite` or `postgresql`, for the status.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres { .. } => "postgresql",
        }
    }

    /// The cluster, where several instances share the store.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres { cluster, .. } => Some(cluster),
        }
    }

    /// Whether this instance fires schedules: always on SQLite (one instance), the leader on
    /// PostgreSQL.
    pub fn is_leader(&self) -> bool {
        self.cluster().is_none_or(|c| c.is_leader())
    }

    /// The runs found interrupted when the store was opened (SQLite; on PostgreSQL the leader
    /// marks them as it goes).
    pub fn interrupted_on_open(&self) -> Vec<String> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).interrupted_on_open().to_vec(),
            Store::Postgres { .. } => Vec::new(),
        }
    }

    /// Records a run's start; on PostgreSQL, `Some(since)` instead when chaosd is halted on any
    /// instance (SQLite's halt switch is the run manager's file).
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &self,
        run_id: &str,
        scenario: &str,
        scenario_path: &str,
        started_at: DateTime<Utc>,
        labels: &BTreeMap<String, String>,
        dry_run: bool,
        report_dir: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s)
                .begin(
                    run_id,
                    scenario,
                    scenario_path,
                    started_at,
                    labels,
                    dry_run,
                    report_dir,
                )
                .map(|()| None),
            Store::Postgres { store, .. } => store.begin(
                run_id,
                scenario,
                scenario_path,
                started_at,
                labels,
                dry_run,
                report_dir,
            ),
        }
    }

    pub fn finish(&self, report: &Report, report_dir: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).finish(report, report_dir),
            Store::Postgres { store, .. } => store.finish(report, report_dir),
        }
    }

    pub fn list(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).list(limit),
            Store::Postgres { store, .. } => store.list(limit),
        }
    }

    pub fn get(
        &self,
        id_or_prefix: &str,
    ) -> Result<Option<(RunRecord, Option<Report>)>, StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).get(id_or_prefix),
            Store::Postgres { store, .. } => store.get(id_or_prefix),
        }
    }

    pub fn add_schedule(&self, r: &ScheduleRecord) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).add_schedule(r),
            Store::Postgres { store, .. } => store.add_schedule(r),
        }
    }

    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).schedules(),
            Store::Postgres { store, .. } => store.schedules(),
        }
    }

    pub fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).remove_schedule(id),
            Store::Postgres { store, .. } => store.remove_schedule(id),
        }
    }

    pub fn schedule_fired(
        &self,
        id: &str,
        due: DateTime<Utc>,
        run_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => Self::sqlite_store(s).schedule_fired(id, due, run_id, error),
            Store::Postgres { store, .. } => store.schedule_fired(id, due, run_id, error),
        }
    }

    /// Claims a schedule's due time before firing it: false when another instance fired it.
    /// SQLite has one instance, whose scheduler never fires a due time twice.
    pub fn claim_due(&self, id: &str, due: DateTime<Utc>) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(true),
            Store::Postgres { store, .. } => store.claim_due(id, due),
        }
    }
}
