//! The run history: one SQLite database, `<state_dir>/runs.db`, with a row per run from its start
//! (`begin`) to its end (`finish`, which also keeps the whole `report.json`). `chaosctl runs` and
//! `chaosctl report RUN` read it.
//!
//! A run that is still open when the store is opened, and whose controller process is gone, is
//! marked `interrupted`: each run records its controller's pid together with that process's start
//! time (from `/proc/PID/stat`) and the boot id, so that a recycled pid is not mistaken for it.
//!
//! The schema version is SQLite's `user_version`; `migrate` brings older files up to date and a
//! file from a newer chaosctl is refused rather than misread. Timestamps are RFC 3339 text in UTC
//! with nanoseconds, so that they sort as text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;

use self::error::Context;
pub use self::error::StoreError;
pub use self::schedules::ScheduleRecord;
use crate::report::model::{Cause, Report, Verdict};

mod backend;
mod error;
pub mod postgres;
mod schedules;
#[cfg(test)]
mod suite;

pub use self::backend::Store;

/// The database file inside the state directory.
pub const DB_FILE: &str = "runs.db";

/// The schema this build writes; see `migrate`.
const SCHEMA_VERSION: i64 = 2;

/// How long a writer waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL pages (4 KiB) after which a commit checkpoints the WAL into the database; SQLite's
/// default is 1000. See [`RunStore::open`] for the trade-off.
const WAL_CHECKPOINT_PAGES: i64 = 100;

/// One run as the history knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub scenario: String,
    pub scenario_path: String,
    /// `None` while the run is going on.
    pub verdict: Option<Verdict>,
    pub cause: Option<Cause>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub report_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The exit code of `chaosctl run` (6 when faults were left); `None` while running and for
    /// interrupted runs.
    pub exit_code: Option<u8>,
    pub dry_run: bool,
}

/// A new run id: sortable and unique enough (the start time, then 24 random bits). `chaosctl run`
/// and chaosd both name runs with it.
pub fn new_run_id() -> String {
    let now = Utc::now();
    let noise = std::hash::BuildHasher::hash_one(
        &std::hash::RandomState::new(),
        (now.timestamp_nanos_opt(), std::process::id()),
    );
    format!("{}-{:06x}", now.format("%Y%m%dT%H%M%SZ"), noise & 0xff_ffff)
}

/// The run history.
pub struct RunStore {
    conn: Connection,
    /// `<state_dir>/runs.db`, for messages.
    path: PathBuf,
    /// Runs found open with their controller gone, marked `interrupted` by `open`.
    interrupted: Vec<String>,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The process that runs a run: its pid, and what tells it apart from a later process that got
/// the same pid.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Controller {
    pid: i64,
    /// Field 22 of `/proc/PID/stat`: clock ticks since boot.
    start_ticks: Option<i64>,
    /// `/proc/sys/kernel/random/boot_id`.
    boot_id: Option<String>,
}

impl Controller {
    fn current() -> Controller {
        let pid = i64::from(std::process::id());
        Controller {
            pid,
            start_ticks: proc_start_ticks(pid).map(|(t, _)| t),
            boot_id: boot_id(),
        }
    }

    /// Whether this process still runs. When in doubt (no `/proc`), a live pid counts.
    fn is_alive(&self, boot: Option<&str>) -> bool {
        if let (Some(then), Some(now)) = (self.boot_id.as_deref(), boot)
            && then != now
        {
            return false;
        }
        if self.pid <= 0 || self.pid > i64::from(i32::MAX) {
            return false;
        }
        match proc_start_ticks(self.pid) {
            Some((_, 'Z' | 'X')) => false,
            Some((ticks, _)) => self.start_ticks.is_none_or(|t| t == ticks),
            None if Path::new("/proc/self/stat").exists() => false,
            // No procfs: ask the kernel whether the pid exists at all.
            None => !matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None),
                Err(nix::errno::Errno::ESRCH)
            ),
        }
    }
}

/// The start time (clock ticks since boot) and state of process `pid`, from `/proc/PID/stat`.
fn proc_start_ticks(pid: i64) -> Option<(i64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain `)` or spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(19)?.parse().ok()?;
    Some((ticks, state))
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

pub(crate) fn parse_cause(s: &str) -> Option<Cause> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

const RECORD_COLUMNS: &str = "run_id, scenario, scenario_path, verdict, cause, started_at, ended_at, \
                              report_dir, labels, exit_code, dry_run";

fn record(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let verdict: Option<String> = row.get("verdict")?;
    let cause: Option<String> = row.get("cause")?;
    let ended_at: Option<String> = row.get("ended_at")?;
    let labels: String = row.get("labels")?;
    let exit_code: Option<i64> = row.get("exit_code")?;
    Ok(RunRecord {
        run_id: row.get("run_id")?,
        scenario: row.get("scenario")?,
        scenario_path: row.get("scenario_path")?,
        // Values this build does not know (a newer chaosctl wrote them) read as unknown.
        verdict: verdict.as_deref().and_then(Verdict::parse),
        cause: cause.as_deref().and_then(parse_cause),
        started_at: parse_ts(&row.get::<_, String>("started_at")?)?,
        ended_at: ended_at.as_deref().map(parse_ts).transpose()?,
        report_dir: row.get("report_dir")?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        exit_code: exit_code.and_then(|c| u8::try_from(c).ok()),
        dry_run: row.get("dry_run")?,
    })
}

/// Brings the schema from `from` up to [`SCHEMA_VERSION`], one version at a time.
fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    if from < 1 {
        conn.execute_batch(
            "CREATE TABLE runs (
                run_id           TEXT PRIMARY KEY NOT NULL,
                scenario         TEXT NOT NULL,
                scenario_path    TEXT NOT NULL,
                verdict          TEXT,              -- NULL while running
                cause            TEXT,
                started_at       TEXT NOT NULL,     -- RFC 3339, UTC
                ended_at         TEXT,
                report_dir       TEXT,
                labels           TEXT NOT NULL DEFAULT '{}',  -- a JSON object
                exit_code        INTEGER,
                dry_run          INTEGER NOT NULL DEFAULT 0,
                controller_pid   INTEGER,
                controller_start INTEGER,           -- /proc/PID/stat field 22
                controller_boot  TEXT,              -- /proc/sys/kernel/random/boot_id
                report_json      TEXT
            );
            CREATE INDEX runs_started_at ON runs (started_at);
            CREATE INDEX runs_open ON runs (run_id) WHERE verdict IS NULL;",
        )?;
    }
    if from < 2 {
        // Game-day schedules (`chaosd::schedule`): the scenario's text is kept whole, since each
        // due time submits it again.
        conn.execute_batch(
            "CREATE TABLE schedules (
                id           TEXT PRIMARY KEY NOT NULL,
                scenario     TEXT NOT NULL,              -- the scenario's name
                file         TEXT,
                scenario_text TEXT NOT NULL,
                cron         TEXT NOT NULL,
                timezone     TEXT,                       -- IANA name; NULL is UTC
                vars         TEXT NOT NULL DEFAULT '{}', -- JSON objects and arrays
                labels       TEXT NOT NULL DEFAULT '{}',
                blackouts    TEXT NOT NULL DEFAULT '[]',
                created_at   TEXT NOT NULL,
                last_due     TEXT,
                last_run_id  TEXT,
                last_error   TEXT
            );",
        )?;
    }
    // Later versions: `if from < 3 { ALTER TABLE ... }`.
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
}

impl RunStore {
    /// Opens (creating it and `state_dir` if needed) `<state_dir>/runs.db`, and marks runs whose
    /// controller is gone as `interrupted`; see [`RunStore::interrupted_on_open`].
    pub fn open(state_dir: &Path) -> Result<RunStore, StoreError> {
        let path = state_dir.join(DB_FILE);
        std::fs::create_dir_all(state_dir).map_err(|error| StoreError::CreateDir {
            dir: state_dir.to_path_buf(),
            error,
        })?;
        let fail = |error: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            error,
        };
        let mut conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "the run history is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        // A short-lived chaosctl would checkpoint the WAL into the database at every exit: two
        // fsyncs per run. The WAL is checkpointed as it grows instead; until then `runs.db-wal`
        // beside the database holds the newest runs. Every open reads the whole WAL back to
        // rebuild its index (~1.2 ms per MiB here) while a checkpoint costs ~2.4 ms (its two
        // fsyncs), so the WAL is kept small: at ~37 KiB a run, one checkpoint every ~11 runs.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(fail)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(fail)?;

        // Two chaosctl starting at once: the second waits for the first's migration.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path, version });
        }
        if version < SCHEMA_VERSION {
            migrate(&tx, version).map_err(|error| StoreError::Migrate {
                path: path.clone(),
                version,
                error,
            })?;
        }
        tx.commit().map_err(fail)?;

        let mut store = RunStore {
            conn,
            path,
            interrupted: Vec::new(),
        };
        store.interrupted = store.mark_interrupted()?;
        Ok(store)
    }

    /// The runs that `open` found still running with their controller gone, and marked
    /// `interrupted`, oldest first.
    pub fn interrupted_on_open(&self) -> &[String] {
        &self.interrupted
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn mark_interrupted(&mut self) -> Result<Vec<String>, StoreError> {
        let boot = boot_id();
        let ctx = || {
            format!(
                "cannot check for interrupted runs in `{}`",
                self.path.display()
            )
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(ctx)?;
        let open: Vec<(String, Controller)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT run_id, controller_pid, controller_start, controller_boot FROM runs
                     WHERE verdict IS NULL ORDER BY started_at, rowid",
                )
                .with_context(ctx)?;
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    Controller {
                        pid: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                        start_ticks: r.get(2)?,
                        boot_id: r.get(3)?,
                    },
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
            .with_context(ctx)?
        };
        let mut gone = Vec::new();
        for (run_id, controller) in open {
            if !controller.is_alive(boot.as_deref()) {
                tx.execute(
                    "UPDATE runs SET verdict = ?2 WHERE run_id = ?1 AND verdict IS NULL",
                    params![run_id, Verdict::Interrupted.as_str()],
                )
                .with_context(ctx)?;
                gone.push(run_id);
            }
        }
        tx.commit().with_context(ctx)?;
        for run_id in &gone {
            self.keep_interrupted_report(run_id);
        }
        Ok(gone)
    }

    /// Gives an interrupted run the report its `events.jsonl` makes (see [`crate::interrupted`]):
    /// kept in the history and written into its folder. Best effort: `get` rebuilds it when
    /// this failed.
    fn keep_interrupted_report(&self, run_id: &str) {
        // `get` gives the report rebuilt from the events, since none is stored yet.
        let Ok(Some((record, _))) = self.get(run_id) else {
            return;
        };
        let Some(dir) = record.report_dir.as_deref().map(Path::new) else {
            return;
        };
        let report = crate::interrupted::report(&record, crate::interrupted::read_events(dir));
        let stored = serde_json::to_string(&report)
            .map_err(StoreError::from)
            .and_then(|json| {
                self.conn
                    .execute(
                        "UPDATE runs SET report_json = ?2, ended_at = ?3
                     WHERE run_id = ?1 AND report_json IS NULL",
                        params![run_id, json, ts(report.ended_at)],
                    )
                    .map_err(StoreError::from)
            });
        if let Err(err) = stored {
            tracing::warn!(run_id, error = %err, "cannot keep the interrupted run's report");
        }
        if let Err(err) = crate::interrupted::write_files(dir, &report) {
            tracing::warn!(run_id, dir = %dir.display(), error = %err, "cannot write the interrupted run's report");
        }
    }

    /// Records the start of a run by this process.
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
    ) -> Result<(), StoreError> {
        self.begin_as(
            &Controller::current(),
            run_id,
            scenario,
            scenario_path,
            started_at,
            labels,
            dry_run,
            report_dir,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn begin_as(
        &self,
        controller: &Controller,
        run_id: &str,
        scenario: &str,
        scenario_path: &str,
        started_at: DateTime<Utc>,
        labels: &BTreeMap<String, String>,
        dry_run: bool,
        report_dir: &str,
    ) -> Result<(), StoreError> {
        let labels = serde_json::to_string(labels)?;
        self.conn
            .execute(
                "INSERT INTO runs (run_id, scenario, scenario_path, started_at, labels, dry_run,
                                   report_dir, controller_pid, controller_start, controller_boot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    run_id,
                    scenario,
                    scenario_path,
                    ts(started_at),
                    labels,
                    dry_run,
                    report_dir,
                    controller.pid,
                    controller.start_ticks,
                    controller.boot_id,
                ],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Duplicate {
                    run_id: run_id.to_string(),
                    path: self.path.clone(),
                },
                _ => StoreError::Write(format!(
                    "cannot record run `{run_id}` in the run history at `{}`: {e}",
                    self.path.display()
                )),
            })?;
        Ok(())
    }

    /// Records the end of a run: its verdict, cause, end time, exit code and the whole report.
    /// A run that `begin` never recorded is added whole.
    pub fn finish(&self, report: &Report, report_dir: &str) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(report).with_context(|| "cannot serialize the report".into())?;
        let labels = serde_json::to_string(&report.labels)?;
        self.conn
            .execute(
                "INSERT INTO runs (run_id, scenario, scenario_path, verdict, cause, started_at,
                                   ended_at, report_dir, labels, exit_code, dry_run, report_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (run_id) DO UPDATE SET
                     verdict = excluded.verdict, cause = excluded.cause,
                     ended_at = excluded.ended_at, report_dir = excluded.report_dir,
                     exit_code = excluded.exit_code, report_json = excluded.report_json",
                params![
                    report.run_id,
                    report.scenario.name,
                    report.scenario.path,
                    report.verdict.as_str(),
                    report.cause.map(Cause::as_str),
                    ts(report.started_at),
                    ts(report.ended_at),
                    report_dir,
                    labels,
                    report.exit_code(),
                    report.dry_run,
                    json,
                ],
            )
            .map_err(|e| {
                StoreError::Write(format!(
                    "cannot record the end of run `{}` in the run history at `{}`: {e}; the report \
                     itself is in `{report_dir}`",
                    report.run_id,
                    self.path.display()
                ))
            })?;
        Ok(())
    }

    /// The newest `limit` runs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1"
        ))?;
        stmt.query_map([limit], record)
            .and_then(|rows| rows.collect())
            .with_context(|| format!("cannot read the run history at `{}`", self.path.display()))
    }

    /// A run by its full id, a unique prefix of it, a unique prefix of its random suffix (the part
    /// after the dash), or `latest` (the newest run), with its report once it has finished. An
    /// ambiguous one is an error that names the candidates.
    pub fn get(
        &self,
        id_or_prefix: &str,
    ) -> Result<Option<(RunRecord, Option<Report>)>, StoreError> {
        let ctx = || format!("cannot read the run history at `{}`", self.path.display());
        let select = format!("SELECT {RECORD_COLUMNS}, report_json FROM runs");
        let with_report =
            |r: &Row<'_>| Ok((record(r)?, r.get::<_, Option<String>>("report_json")?));

        let found = if id_or_prefix == "latest" {
            self.conn
                .query_row(
                    &format!("{select} ORDER BY started_at DESC, rowid DESC LIMIT 1"),
                    [],
                    with_report,
                )
                .optional()
                .with_context(ctx)?
        } else if id_or_prefix.is_empty() {
            return Err(StoreError::EmptyId);
        } else if let Some(exact) = self
            .conn
            .query_row(
                &format!("{select} WHERE run_id = ?1"),
                [id_or_prefix],
                with_report,
            )
            .optional()
            .with_context(ctx)?
        {
            Some(exact)
        } else {
            // A prefix of the id first (`20261126T1038`), else of its random part after the
            // dash (`32caa1` of `20261126T103842Z-32caa1`, as the report folder shows it).
            let mut matches = Vec::new();
            for column in ["run_id", "substr(run_id, instr(run_id, '-') + 1)"] {
                let mut stmt = self
                    .conn
                    .prepare(&format!(
                        "{select} WHERE substr({column}, 1, ?1) = ?2 ORDER BY started_at DESC, rowid DESC LIMIT 11"
                    ))
                    .with_context(ctx)?;
                matches = stmt
                    .query_map(
                        params![id_or_prefix.chars().count() as i64, id_or_prefix],
                        with_report,
                    )
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .with_context(ctx)?;
                if !matches.is_empty() {
                    break;
                }
            }
            return one_run(id_or_prefix, matches)?
                .map(|(record, json)| stored_report(record, json))
                .transpose();
        };
        found
            .map(|(record, json)| stored_report(record, json))
            .transpose()
    }
}

/// The one run that a prefix found, or `Ambiguous` naming the candidates (ten at most; `found`
/// holds at most eleven).
pub(crate) fn one_run<T>(
    id_or_prefix: &str,
    mut found: Vec<(RunRecord, T)>,
) -> Result<Option<(RunRecord, T)>, StoreError> {
    match found.len() {
        0 | 1 => Ok(found.pop()),
        n => {
            let names: Vec<String> = found
                .iter()
                .take(10)
                .map(|(r, _)| format!("`{}`", r.run_id))
                .collect();
            let more = if n > 10 { ", ..." } else { "" };
            Err(StoreError::Ambiguous {
                id: id_or_prefix.to_string(),
                candidates: format!("{}{more}", names.join(", ")),
            })
        }
    }
}

/// A run with its stored report parsed; an interrupted run that has none gets the one its
/// events make.
pub(crate) fn stored_report(
    record: RunRecord,
    json: Option<String>,
) -> Result<(RunRecord, Option<Report>), StoreError> {
    let mut report = json
        .map(|j| serde_json::from_str::<Report>(&j))
        .transpose()
        .with_context(|| {
            format!(
                "the stored report of run `{}` cannot be read",
                record.run_id
            )
        })?;
    if report.is_none()
        && record.verdict == Some(Verdict::Interrupted)
        && let Some(dir) = record.report_dir.as_deref()
    {
        // Marked by an older build, which kept no report: what its events say.
        let events = crate::interrupted::read_events(Path::new(dir));
        report = Some(crate::interrupted::report(&record, events));
    }
    Ok((record, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{at, sample_report};

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("team".to_string(), "payments".to_string())])
    }

    fn begin(store: &RunStore, id: &str, start_ms: i64) {
        store
            .begin(
                id,
                "checkout-failover",
                "scenarios/c.yaml",
                at(start_ms),
                &labels(),
                false,
                "r",
            )
            .unwrap();
    }

    /// A controller that cannot exist: a pid above any `pid_max`.
    fn dead_controller() -> Controller {
        Controller {
            pid: i64::from(i32::MAX) - 7,
            start_ticks: Some(1),
            boot_id: boot_id(),
        }
    }

    // What both stores do is tested once for both in `suite`; here, what only SQLite does.

    #[test]
    fn survives_reopen_and_marks_dead_controllers_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RunStore::open(dir.path()).unwrap();
            begin(&store, "alive", 0);
            store
                .begin_as(
                    &dead_controller(),
                    "dead",
                    "s",
                    "s.yaml",
                    at(1000),
                    &BTreeMap::new(),
                    true,
                    "r",
                )
                .unwrap();
            // Our own pid, but a process started at another time: pid reuse.
            let mut reused = Controller::current();
            reused.start_ticks = reused.start_ticks.map(|t| t + 1).or(Some(1));
            store
                .begin_as(
                    &reused,
                    "reused",
                    "s",
                    "s.yaml",
                    at(2000),
                    &BTreeMap::new(),
                    false,
                    "r",
                )
                .unwrap();
            // Another boot.
            let mut rebooted = Controller::current();
            rebooted.boot_id = Some("another-boot".into());
            store
                .begin_as(
                    &rebooted,
                    "rebooted",
                    "s",
                    "s.yaml",
                    at(2500),
                    &BTreeMap::new(),
                    false,
                    "r",
                )
                .unwrap();
            let mut done = sample_report();
            done.run_id = "done".into();
            store
                .begin_as(
                    &dead_controller(),
                    "done",
                    "s",
                    "s.yaml",
                    at(3000),
                    &BTreeMap::new(),
                    false,
                    "r",
                )
                .unwrap();
            store.finish(&done, "r").unwrap();
        }

        let store = RunStore::open(dir.path()).unwrap();
        assert_eq!(store.interrupted_on_open(), ["dead", "reused", "rebooted"]);
        let dead = store.get("dead").unwrap().unwrap().0;
        assert_eq!(dead.verdict, Some(Verdict::Interrupted));
        assert!(dead.dry_run);
        assert_eq!(dead.exit_code, None);
        assert_eq!(store.get("alive").unwrap().unwrap().0.verdict, None);
        assert_eq!(
            store.get("done").unwrap().unwrap().0.verdict,
            Some(Verdict::Deviated)
        );
        assert_eq!(store.list(100).unwrap().len(), 5);

        // Marked once: the next open finds nothing new.
        let again = RunStore::open(dir.path()).unwrap();
        assert!(again.interrupted_on_open().is_empty());

        // A finish after all (the controller was only slow) replaces `interrupted`.
        let mut late = sample_report();
        late.run_id = "dead".into();
        late.verdict = Verdict::Passed;
        late.cause = None;
        late.faults_left.clear();
        again.finish(&late, "r").unwrap();
        let rec = again.get("dead").unwrap().unwrap().0;
        assert_eq!(rec.verdict, Some(Verdict::Passed));
        assert_eq!(rec.exit_code, Some(0));
    }

    #[test]
    fn wal_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path().join("nested/state").as_path()).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let v: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        store
            .conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(store);
        let err = RunStore::open(dir.path().join("nested/state").as_path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("newer than this chaosctl") && err.contains("--state-dir"),
            "{err}"
        );
    }

    #[test]
    fn the_wal_stays_small_across_many_short_lived_controllers() {
        // Each open reads the whole WAL back, so it must not grow with the history: like a
        // chaosctl per run, each store here records one run and is dropped without a checkpoint.
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        let mut largest = 0;
        for i in 0..60 {
            let store = RunStore::open(dir.path()).unwrap();
            let mut report = sample_report();
            report.run_id = format!("run-{i}");
            // About the size of a real small run's record.
            report.reason = "x".repeat(24 * 1024);
            begin(&store, &report.run_id, i);
            store.finish(&report, "r").unwrap();
            drop(store);
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        let bound = (WAL_CHECKPOINT_PAGES as u64 + 32) * 4096 * 11 / 10;
        assert!(
            largest <= bound,
            "the WAL reached {largest} bytes (bound {bound})"
        );
        let store = RunStore::open(dir.path()).unwrap();
        assert_eq!(store.list(100).unwrap().len(), 60, "nothing lost");
    }

    #[test]
    fn unopenable_state_dir_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = RunStore::open(&file).unwrap_err().to_string();
        assert!(err.contains("--state-dir"), "{err}");
    }

    #[test]
    fn reads_our_own_start_time() {
        let me = Controller::current();
        if Path::new("/proc/self/stat").exists() {
            assert!(me.start_ticks.is_some());
        }
        assert!(me.is_alive(boot_id().as_deref()));
        assert!(!dead_controller().is_alive(boot_id().as_deref()));
    }
}
