//! Game-day schedules, in the same database as the runs (see [`crate::schedule`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};

use super::error::Context;
use super::{RunStore, StoreError, parse_ts, ts};

/// A game-day schedule as stored (see [`crate::schedule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub id: String,
    /// The scenario's name.
    pub scenario: String,
    pub file: Option<String>,
    pub scenario_text: String,
    pub cron: String,
    pub timezone: Option<String>,
    pub vars: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub blackouts: Vec<crate::schedule::Blackout>,
    pub created_at: DateTime<Utc>,
    pub last_due: Option<DateTime<Utc>>,
    pub last_run_id: Option<String>,
    pub last_error: Option<String>,
}

const SCHEDULE_COLUMNS: &str = "id, scenario, file, scenario_text, cron, timezone, vars, labels, \
                                blackouts, created_at, last_due, last_run_id, last_error";

fn schedule_record(row: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    let json_err = |e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    };
    let last_due: Option<String> = row.get("last_due")?;
    Ok(ScheduleRecord {
        id: row.get("id")?,
        scenario: row.get("scenario")?,
        file: row.get("file")?,
        scenario_text: row.get("scenario_text")?,
        cron: row.get("cron")?,
        timezone: row.get("timezone")?,
        vars: serde_json::from_str(&row.get::<_, String>("vars")?).map_err(json_err)?,
        labels: serde_json::from_str(&row.get::<_, String>("labels")?).map_err(json_err)?,
        blackouts: serde_json::from_str(&row.get::<_, String>("blackouts")?).map_err(json_err)?,
        created_at: parse_ts(&row.get::<_, String>("created_at")?)?,
        last_due: last_due.as_deref().map(parse_ts).transpose()?,
        last_run_id: row.get("last_run_id")?,
        last_error: row.get("last_error")?,
    })
}

/// Schedules, in the same database as the runs.
impl RunStore {
    pub fn add_schedule(&self, s: &ScheduleRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO schedules ({SCHEDULE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    s.id,
                    s.scenario,
                    s.file,
                    s.scenario_text,
                    s.cron,
                    s.timezone,
                    serde_json::to_string(&s.vars)?,
                    serde_json::to_string(&s.labels)?,
                    serde_json::to_string(&s.blackouts)?,
                    ts(s.created_at),
                    s.last_due.map(ts),
                    s.last_run_id,
                    s.last_error,
                ],
            )
            .with_context(|| {
                format!(
                    "cannot record schedule `{}` in `{}`",
                    s.id,
                    self.path.display()
                )
            })?;
        Ok(())
    }

    /// Every schedule, oldest first.
    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY created_at, id"
        ))?;
        stmt.query_map([], schedule_record)
            .and_then(|rows| rows.collect())
            .with_context(|| format!("cannot read the schedules in `{}`", self.path.display()))
    }

    /// Removes a schedule; false when there was none with that id.
    pub fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM schedules WHERE id = ?1", [id])
            .with_context(|| {
                format!(
                    "cannot remove schedule `{id}` from `{}`",
                    self.path.display()
                )
            })?;
        Ok(n > 0)
    }

    /// Records what a due time of schedule `id` did: the run it started, or why it could not.
    pub fn schedule_fired(
        &self,
        id: &str,
        due: DateTime<Utc>,
        run_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE schedules SET last_due = ?2, last_run_id = coalesce(?3, last_run_id),
                        last_error = ?4 WHERE id = ?1",
                params![id, ts(due), run_id, error],
            )
            .with_context(|| {
                format!(
                    "cannot record schedule `{id}`'s run in `{}`",
                    self.path.display()
                )
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::store::suite::schedule as sample;
    use crate::store::{DB_FILE, migrate};

    #[test]
    fn a_version_1_history_gains_the_schedules_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            migrate(&conn, 0).unwrap();
            // What a version-1 chaosctl left: its table, and user_version 1.
            conn.execute_batch("DROP TABLE schedules; PRAGMA user_version = 1;")
                .unwrap();
        }
        let store = RunStore::open(dir.path()).unwrap();
        store.add_schedule(&sample("a", 1)).unwrap();
        assert_eq!(store.schedules().unwrap().len(), 1);
    }
}
