//! The run history, schedules, halt switch and instances in PostgreSQL (`store:
//! postgresql://...` in chaosd's configuration), shared by every chaosd instance that names the
//! same database. The tables and their meaning follow the SQLite history ([`super::RunStore`]);
//! `migrations` has the schema.
//!
//! The driver is tokio-postgres, on a runtime of its own (one thread, `chaosd-db`): the run
//! manager calls the history from synchronous code, as it calls SQLite, and waits for the answer
//! at most [`CALL_TIMEOUT`]; a database that does not answer is an error, never a hang. The
//! leadership, heartbeat and halt-watch loop ([`cluster`]) runs on that runtime too, so a busy
//! API cannot starve it. A connection that broke is made again at the next call.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::types::Json;
use tokio_postgres::{Client, Row};
use tracing::warn;

use super::{RunRecord, ScheduleRecord, StoreError, parse_cause, stored_report};
use crate::report::model::{Report, Verdict};

pub mod cluster;
mod connect;
mod migrations;

pub use self::connect::without_password;
use self::connect::{Connector, DbError};

/// How long a call waits for the database before it is an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The run history and the rest of chaosd's shared state in PostgreSQL.
pub struct PgStore {
    conn: Arc<Connector>,
    /// Owns the `chaosd-db` thread; shut down in the background on drop.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    /// This instance: `node` names it to people, `instance` tells its processes apart.
    pub node: String,
    pub instance: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.conn.shown())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

const RECORD_COLUMNS: &str = "run_id, scenario, scenario_path, verdict, cause, started_at, ended_at, \
                              report_dir, labels, exit_code, dry_run";

fn record(row: &Row) -> Result<RunRecord, tokio_postgres::Error> {
    let verdict: Option<String> = row.try_get("verdict")?;
    let cause: Option<String> = row.try_get("cause")?;
    let labels: Json<BTreeMap<String, String>> = row.try_get("labels")?;
    let exit_code: Option<i32> = row.try_get("exit_code")?;
    Ok(RunRecord {
        run_id: row.try_get("run_id")?,
        scenario: row.try_get("scenario")?,
        scenario_path: row.try_get("scenario_path")?,
        verdict: verdict.as_deref().and_then(Verdict::parse),
        cause: cause.as_deref().and_then(parse_cause),
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        report_dir: row.try_get("report_dir")?,
        labels: labels.0,
        exit_code: exit_code.and_then(|c| u8::try_from(c).ok()),
        dry_run: row.try_get("dry_run")?,
    })
}

const SCHEDULE_COLUMNS: &str = "id, scenario, file, scenario_text, cron, timezone, vars, labels, \
                                blackouts, created_at, last_due, last_run_id, last_error";

fn schedule_record(row: &Row) -> Result<ScheduleRecord, tokio_postgres::Error> {
    let vars: Json<BTreeMap<String, String>> = row.try_get("vars")?;
    let labels: Json<BTreeMap<String, String>> = row.try_get("labels")?;
    let blackouts: Json<Vec<crate::schedule::Blackout>> = row.try_get("blackouts")?;
    Ok(ScheduleRecord {
        id: row.try_get("id")?,
        scenario: row.try_get("scenario")?,
        file: row.try_get("file")?,
        scenario_text: row.try_get("scenario_text")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        vars: vars.0,
        labels: labels.0,
        blackouts: blackouts.0,
        created_at: row.try_get("created_at")?,
        last_due: row.try_get("last_due")?,
        last_run_id: row.try_get("last_run_id")?,
        last_error: row.try_get("last_error")?,
    })
}

impl PgStore {
    /// Connects to `url` (`postgresql://USER@HOST[:PORT]/DB`, libpq's keys), applies the
    /// migrations this build has and the database lacks, and records this instance as `node`.
    /// The first connection must succeed: a chaosd that cannot reach its store does not start.
    pub fn open(url: &str, node: &str) -> Result<PgStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("chaosd-db")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres {
                context: "cannot start the database thread".into(),
                detail: e.to_string(),
            })?;
        let conn = Arc::new(Connector::new(url)?);
        let store = PgStore {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            conn,
            node: node.to_string(),
            instance: new_instance_id(),
        };
        let shown = store.conn.shown().to_string();
        let context = format!("cannot prepare the store at `{shown}`");
        let applied = store
            .call(|| context.clone(), migrate)
            .map_err(|e| match e {
                StoreError::Postgres { context, detail } => StoreError::Postgres {
                    context,
                    detail: format!("{detail}; check `store:` in chaosd's configuration"),
                },
                other => other,
            })?;
        if applied > migrations::latest() {
            return Err(StoreError::Postgres {
                context,
                detail: format!(
                    "its schema is at version {applied}, newer than this chaosd knows ({}); \
                     upgrade chaosd",
                    migrations::latest()
                ),
            });
        }
        let (node, instance) = (store.node.clone(), store.instance.clone());
        store.call(
            || "cannot record this chaosd instance".into(),
            move |c| async move {
                c.execute(
                    "INSERT INTO instances (instance, node, started_at, heartbeat_at)
                     VALUES ($1, $2, now(), now())",
                    &[&instance, &node],
                )
                .await
                .map(drop)
            },
        )?;
        Ok(store)
    }

    /// The database, for messages (no password).
    pub fn shown(&self) -> &str {
        self.conn.shown()
    }

    /// Runs `f` with a connection on the database thread and waits for it, at most
    /// [`CALL_TIMEOUT`]. `context` says what failed, in the error.
    fn call<T, F, Fut>(&self, context: impl FnOnce() -> String, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let conn = Arc::clone(&self.conn);
        self.handle.spawn(async move {
            let result = tokio::time::timeout(CALL_TIMEOUT, async {
                let client = conn.client().await?;
                f(client).await.map_err(DbError::from)
            })
            .await
            .unwrap_or(Err(DbError::Timeout));
            let _ = tx.send(result);
        });
        // Waiting blocks this thread. On a tokio worker, tell tokio first, so that the worker's
        // other tasks (the API's connections among them) move to another thread meanwhile: a
        // database that does not answer must not stall what does not need it.
        let wait = || rx.recv().unwrap_or(Err(DbError::Gone));
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        result.map_err(|e| e.into_store_error(context(), self.conn.shown()))
    }

    /// Records the start of a run by this instance, unless chaosd is halted (on any instance):
    /// `Some(since)` then, and nothing recorded. The check and the insert are one statement, so
    /// no run starts after a halt anywhere returned.
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
        let args = (
            run_id.to_string(),
            scenario.to_string(),
            scenario_path.to_string(),
            started_at,
            Json(labels.clone()),
            dry_run,
            report_dir.to_string(),
            self.node.clone(),
            self.instance.clone(),
        );
        let id = run_id.to_string();
        let result = self.call(
            || format!("cannot record run `{id}` in the run history"),
            move |c| async move {
                let (run_id, scenario, path, started, labels, dry, dir, node, instance) = args;
                let inserted = c
                    .execute(
                        "INSERT INTO runs (run_id, scenario, scenario_path, started_at, labels,
                                           dry_run, report_dir, node, instance)
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                         WHERE NOT EXISTS (SELECT 1 FROM halt)",
                        &[
                            &run_id, &scenario, &path, &started, &labels, &dry, &dir, &node,
                            &instance,
                        ],
                    )
                    .await?;
                if inserted == 1 {
                    return Ok(None);
                }
                let since: Option<DateTime<Utc>> = c
                    .query_opt("SELECT since FROM halt", &[])
                    .await?
                    .map(|r| r.get(0));
                // Resumed between the two statements: say halted anyway; the client retries.
                Ok(Some(since.unwrap_or_else(Utc::now)))
            },
        );
        match result {
            Err(StoreError::Postgres { detail, .. }) if detail.contains("runs_pkey") => {
                Err(StoreError::Duplicate {
                    run_id: run_id.to_string(),
                    path: PathBuf::from(self.shown()),
                })
            }
            other => other,
        }
    }

    /// Records the end of a run. While the database cannot be reached, the write is kept and
    /// tried again every second until it lands, so that a restarted PostgreSQL loses no verdict;
    /// a run whose chaosd dies meanwhile is marked `interrupted` and its report stays in its
    /// folder.
    pub fn finish(&self, report: &Report, report_dir: &str) -> Result<(), StoreError> {
        let json = serde_json::to_string(report)?;
        let row = FinishRow {
            run_id: report.run_id.clone(),
            scenario: report.scenario.name.clone(),
            scenario_path: report.scenario.path.clone(),
            verdict: report.verdict.as_str().to_string(),
            cause: report.cause.map(|c| c.as_str().to_string()),
            started_at: report.started_at,
            ended_at: report.ended_at,
            report_dir: report_dir.to_string(),
            labels: report.labels.clone(),
            exit_code: i32::from(report.exit_code()),
            dry_run: report.dry_run,
            json,
            node: self.node.clone(),
            instance: self.instance.clone(),
        };
        let first = row.clone();
        let id = report.run_id.clone();
        match self.call(
            || format!("cannot record the end of run `{id}`"),
            move |c| async move { first.write(&c).await },
        ) {
            Ok(()) => Ok(()),
            Err(err) => {
                warn!(run = row.run_id, error = %err, "the run history is unreachable; the run's end is kept and written when it is back");
                let conn = Arc::clone(&self.conn);
                self.handle.spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if let Ok(c) = conn.client().await
                            && row.write(&c).await.is_ok()
                        {
                            tracing::info!(run = row.run_id, "recorded the end of the run, late");
                            return;
                        }
                    }
                });
                Ok(())
            }
        }
    }

    /// The newest `limit` runs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(
            || "cannot read the run history".into(),
            move |c| async move {
                c.query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM runs ORDER BY started_at DESC, seq DESC LIMIT $1"
                    ),
                    &[&limit],
                )
                .await?
                .iter()
                .map(record)
                .collect()
            },
        )
    }

    /// A run by its id, a unique prefix of it or of its random suffix, or `latest`, as
    /// [`super::RunStore::get`] finds it.
    pub fn get(
        &self,
        id_or_prefix: &str,
    ) -> Result<Option<(RunRecord, Option<Report>)>, StoreError> {
        if id_or_prefix.is_empty() {
            return Err(StoreError::EmptyId);
        }
        let id = id_or_prefix.to_string();
        let found: Vec<(RunRecord, Option<String>)> = self.call(
            || "cannot read the run history".into(),
            move |c| async move {
                let select = format!("SELECT {RECORD_COLUMNS}, report_json FROM runs");
                let order = "ORDER BY started_at DESC, seq DESC";
                let rows = |rows: Vec<Row>| -> Result<Vec<_>, tokio_postgres::Error> {
                    rows.iter()
                        .map(|r| Ok((record(r)?, r.try_get("report_json")?)))
                        .collect()
                };
                if id == "latest" {
                    return rows(c.query(&format!("{select} {order} LIMIT 1"), &[]).await?);
                }
                let exact = rows(
                    c.query(&format!("{select} WHERE run_id = $1"), &[&id])
                        .await?,
                )?;
                if !exact.is_empty() {
                    return Ok(exact);
                }
                let len = id.chars().count() as i32;
                for column in ["run_id", "substr(run_id, strpos(run_id, '-') + 1)"] {
                    let found = rows(
                        c.query(
                            &format!("{select} WHERE left({column}, $1) = $2 {order} LIMIT 11"),
                            &[&len, &id],
                        )
                        .await?,
                    )?;
                    if !found.is_empty() {
                        return Ok(found);
                    }
                }
                Ok(Vec::new())
            },
        )?;
        super::one_run(id_or_prefix, found)?
            .map(|(record, json)| stored_report(record, json))
            .transpose()
    }

    pub fn add_schedule(&self, s: &ScheduleRecord) -> Result<(), StoreError> {
        let s = s.clone();
        let id = s.id.clone();
        self.call(
            || format!("cannot record schedule `{id}`"),
            move |c| async move {
                c.execute(
                    &format!(
                        "INSERT INTO schedules ({SCHEDULE_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                    ),
                    &[
                        &s.id,
                        &s.scenario,
                        &s.file,
                        &s.scenario_text,
                        &s.cron,
                        &s.timezone,
                        &Json(&s.vars),
                        &Json(&s.labels),
                        &Json(&s.blackouts),
                        &s.created_at,
                        &s.last_due,
                        &s.last_run_id,
                        &s.last_error,
                    ],
                )
                .await
                .map(drop)
            },
        )
    }

    /// Every schedule, oldest first.
    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.call(
            || "cannot read the schedules".into(),
            |c| async move {
                c.query(
                    &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_at, id"),
                    &[],
                )
                .await?
                .iter()
                .map(schedule_record)
                .collect()
            },
        )
    }

    pub fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        let shown = id.clone();
        self.call(
            move || format!("cannot remove schedule `{shown}`"),
            move |c| async move {
                Ok(c.execute("DELETE FROM schedules WHERE id = $1", &[&id])
                    .await?
                    > 0)
            },
        )
    }

    pub fn schedule_fired(
        &self,
        id: &str,
        due: DateTime<Utc>,
        run_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let args = (
            id.to_string(),
            run_id.map(str::to_string),
            error.map(str::to_string),
        );
        let shown = id.to_string();
        self.call(
            move || format!("cannot record schedule `{shown}`'s run"),
            move |c| async move {
                let (id, run_id, error) = args;
                c.execute(
                    "UPDATE schedules SET last_due = $2, last_run_id = coalesce($3, last_run_id),
                            last_error = $4 WHERE id = $1",
                    &[&id, &due, &run_id, &error],
                )
                .await
                .map(drop)
            },
        )
    }

    /// Claims due time `due` of schedule `id` for this instance: false when another instance
    /// (an old leader) already claimed it. The primary key makes this once per due time.
    pub fn claim_due(&self, id: &str, due: DateTime<Utc>) -> Result<bool, StoreError> {
        let (id, node) = (id.to_string(), self.node.clone());
        let shown = id.clone();
        self.call(
            move || format!("cannot claim a due time of schedule `{shown}`"),
            move |c| async move {
                Ok(c.execute(
                    "INSERT INTO schedule_fires (schedule_id, due, node) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&id, &due, &node],
                )
                .await?
                    == 1)
            },
        )
    }

    /// The halt switch: since when it is on, if it is.
    pub fn halted(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.call(
            || "cannot read the halt switch".into(),
            |c| async move {
                Ok(c.query_opt("SELECT since FROM halt", &[])
                    .await?
                    .map(|r| r.get(0)))
            },
        )
    }

    /// Turns the halt switch on (kept as it is when on already); since when it is on.
    pub fn set_halt(&self, since: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
        self.call(
            || "cannot set the halt switch".into(),
            move |c| async move {
                c.execute(
                    "INSERT INTO halt (one, since) VALUES (true, $1) ON CONFLICT DO NOTHING",
                    &[&since],
                )
                .await?;
                Ok(c.query_one("SELECT since FROM halt", &[]).await?.get(0))
            },
        )
    }

    pub fn clear_halt(&self) -> Result<(), StoreError> {
        self.call(
            || "cannot clear the halt switch".into(),
            |c| async move { c.execute("DELETE FROM halt", &[]).await.map(drop) },
        )
    }
}

/// The end of a run, as `finish` writes it (again, while the database is away).
#[derive(Clone)]
struct FinishRow {
    run_id: String,
    scenario: String,
    scenario_path: String,
    verdict: String,
    cause: Option<String>,
    started_at: DateTime<Utc>,
    ended_at: DateTime<Utc>,
    report_dir: String,
    labels: BTreeMap<String, String>,
    exit_code: i32,
    dry_run: bool,
    json: String,
    node: String,
    instance: String,
}

impl FinishRow {
    async fn write(&self, c: &Client) -> Result<(), tokio_postgres::Error> {
        c.execute(
            "INSERT INTO runs (run_id, scenario, scenario_path, verdict, cause, started_at,
                               ended_at, report_dir, labels, exit_code, dry_run, report_json,
                               node, instance)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (run_id) DO UPDATE SET
                 verdict = excluded.verdict, cause = excluded.cause,
                 ended_at = excluded.ended_at, report_dir = excluded.report_dir,
                 exit_code = excluded.exit_code, report_json = excluded.report_json",
            &[
                &self.run_id,
                &self.scenario,
                &self.scenario_path,
                &self.verdict,
                &self.cause,
                &self.started_at,
                &self.ended_at,
                &self.report_dir,
                &Json(&self.labels),
                &self.exit_code,
                &self.dry_run,
                &self.json,
                &self.node,
                &self.instance,
            ],
        )
        .await
        .map(drop)
    }
}

/// Applies the migrations the database lacks, under an advisory lock (instances starting
/// together wait for each other), in one transaction.
async fn migrate(client: Arc<Client>) -> Result<i32, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS chaos_migrations (
                version    INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        // Two instances creating it at once: the loser's error is harmless.
        .or_else(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    client.batch_execute("BEGIN").await?;
    let result = async {
        client
            .execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&migrations::MIGRATION_LOCK],
            )
            .await?;
        let applied: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM chaos_migrations",
                &[],
            )
            .await?
            .get(0);
        for (i, sql) in migrations::MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if version > applied {
                client.batch_execute(sql).await?;
                client
                    .execute(
                        "INSERT INTO chaos_migrations (version) VALUES ($1)",
                        &[&version],
                    )
                    .await?;
            }
        }
        Ok(applied)
    }
    .await;
    match result {
        Ok(applied) => {
            client.batch_execute("COMMIT").await?;
            Ok(applied)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// A random id for this process: 16 hex digits.
fn new_instance_id() -> String {
    let noise = std::hash::BuildHasher::hash_one(
        &std::hash::RandomState::new(),
        (Utc::now().timestamp_nanos_opt(), std::process::id()),
    );
    format!("{noise:016x}")
}
