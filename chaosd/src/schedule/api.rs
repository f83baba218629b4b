//! The wire types of `/v1/schedules`, shared by chaosd and `chaosctl schedule`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/schedules` | [`CreateSchedule`] | 201 [`ScheduleCreated`]; 400 a wrong scenario, cron, zone or blackout |
//! | `GET /v1/schedules` | | [`ScheduleList`], with each one's next run |
//! | `DELETE /v1/schedules/{id}` | | [`ScheduleRemoved`]; 404 for an unknown id |
//!
//! New fields carry `#[serde(default)]`, as in [`crate::service::api`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Blackout;

/// `POST /v1/schedules`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// The scenario file's text (YAML).
    pub scenario: String,
    /// The file's name, for messages and the runs' reports.
    #[serde(default)]
    pub file: Option<String>,
    /// When absent, the scenario's own `schedule: {cron, timezone}`.
    #[serde(default)]
    pub cron: Option<String>,
    /// With `cron`: its zone (UTC when absent). Without: overrides the scenario's.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Added to each run's labels, with `schedule=<id>`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub blackouts: Vec<Blackout>,
}

/// 201 to `POST /v1/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleCreated {
    pub id: String,
    /// `None` when no time is left (a cron that never matches again, blackouts over everything).
    #[serde(default)]
    pub next_run: Option<DateTime<Utc>>,
}

/// `GET /v1/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleView {
    pub id: String,
    /// The scenario's `name`.
    pub scenario: String,
    #[serde(default)]
    pub file: Option<String>,
    pub cron: String,
    /// An IANA name; `UTC` when none was given.
    pub timezone: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub blackouts: Vec<Blackout>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub next_run: Option<DateTime<Utc>>,
    /// The last due time the scheduler acted on, the run it started, or why it could not.
    #[serde(default)]
    pub last_due: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_run_id: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// `DELETE /v1/schedules/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRemoved {
    pub id: String,
    pub removed: bool,
}
