//! The YAML surface as serde types: every key of spec v1, each value kept with its position.
//!
//! Leaves are [`Scalar`]s, the scalar's text as written, so that `${NAME}` can be substituted
//! before a value is parsed (`duration: ${D}`) and so that a bad value is reported by
//! `validate` with its position, along with every other problem. Keys are checked here, by
//! `deny_unknown_fields`; everything else is checked in `validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::schema;

pub type Sp<T> = Spanned<T>;

/// A scalar's text, as written (`on`, `0x1F` and `09:00` stay text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

/// A single value or a list of them: `status: 200` / `status: [200, 204]`, or a command as a
/// `/bin/sh -c` string / an argv list.
#[derive(Debug, Clone)]
pub enum ScalarOrList {
    Single(String),
    List(Vec<Sp<Scalar>>),
}

impl<'de> Deserialize<'de> for ScalarOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScalarOrList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarOrList, E> {
                Ok(ScalarOrList::Single(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarOrList, E> {
                Ok(ScalarOrList::Single(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarOrList, E> {
                Ok(ScalarOrList::Single(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarOrList, E> {
                Ok(ScalarOrList::Single(v.to_string()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarOrList, E> {
                Ok(ScalarOrList::Single(v.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScalarOrList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(ScalarOrList::List(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping in file order, with each key's position.
#[derive(Debug, Clone)]
pub struct Entries<T>(pub Vec<(Sp<String>, T)>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Entries<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<T>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Sp<String>>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

type Opt = Option<Sp<Scalar>>;

/// A whole scenario file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Scenario")]
pub struct FileRaw {
    #[schemars(with = "Option<schema::Count>")]
    pub version: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub description: Opt,
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub tags: Option<Vec<Sp<Scalar>>>,
    #[schemars(with = "Option<BTreeMap<String, HostRaw>>")]
    pub hosts: Option<Entries<Sp<HostRaw>>>,
    #[schemars(with = "Option<BTreeMap<String, TargetRaw>>")]
    pub targets: Option<Entries<Sp<TargetRaw>>>,
    #[schemars(with = "Option<Vec<SetupRaw>>")]
    pub setup: Option<Vec<Sp<SetupRaw>>>,
    #[schemars(with = "Option<Vec<ProbeRaw>>")]
    pub steady_state: Option<Vec<Sp<ProbeRaw>>>,
    #[schemars(with = "Option<Vec<ProbeRaw>>")]
    pub guardrails: Option<Vec<Sp<ProbeRaw>>>,
    #[schemars(with = "Option<Vec<StepRaw>>")]
    pub steps: Option<Sp<Vec<Sp<StepRaw>>>>,
    #[schemars(with = "Option<Vec<TeardownRaw>>")]
    pub teardown: Option<Vec<Sp<TeardownRaw>>>,
    #[schemars(with = "Option<ScheduleRaw>")]
    pub schedule: Option<Sp<ScheduleRaw>>,
    #[schemars(with = "Option<SettingsRaw>")]
    pub settings: Option<Sp<SettingsRaw>>,
    #[schemars(with = "Option<MonkeyRaw>")]
    pub monkey: Option<Sp<MonkeyRaw>>,
    /// Limits on what users may go through in every step (a step's own keys replace these).
    #[schemars(with = "Option<ObjectivesRaw>")]
    pub objectives: Option<Sp<ObjectivesRaw>>,
}

/// An inventory file (`--inventory FILE`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Inventory")]
pub struct InventoryRaw {
    #[schemars(with = "Option<BTreeMap<String, HostRaw>>")]
    pub hosts: Option<Entries<Sp<HostRaw>>>,
    #[schemars(with = "Option<BTreeMap<String, TargetRaw>>")]
    pub targets: Option<Entries<Sp<TargetRaw>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Host")]
pub struct HostRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub agent: Opt,
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub labels: Option<Entries<Sp<Scalar>>>,
    #[schemars(with = "Option<schema::Text>")]
    pub token_file: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub ca_file: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub cert_file: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub key_file: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Target")]
pub struct TargetRaw {
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub labels: Option<Sp<Entries<Sp<Scalar>>>>,
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub hosts: Option<Sp<Vec<Sp<Scalar>>>>,
    #[schemars(with = "Option<schema::Text>")]
    pub pick: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Setup")]
pub struct SetupRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
    #[schemars(with = "Option<schema::Bool>")]
    pub background: Opt,
    #[schemars(with = "Option<ReadyRaw>")]
    pub ready: Option<Sp<ReadyRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Ready")]
pub struct ReadyRaw {
    #[schemars(with = "Option<schema::Duration>")]
    pub within: Opt,
    #[schemars(with = "Option<HttpRaw>")]
    pub http: Option<Sp<HttpRaw>>,
    #[schemars(with = "Option<TcpRaw>")]
    pub tcp: Option<Sp<TcpRaw>>,
    #[schemars(with = "Option<CommandRaw>")]
    pub command: Option<Sp<CommandRaw>>,
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    #[schemars(with = "Option<PrometheusRaw>")]
    pub prometheus: Option<Sp<PrometheusRaw>>,
    #[schemars(with = "Option<ExpectRaw>")]
    pub expect: Option<Sp<ExpectRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Teardown")]
pub struct TeardownRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Probe")]
pub struct ProbeRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub on: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub every: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub window: Opt,
    #[schemars(with = "Option<schema::Share>")]
    pub tolerance: Opt,
    #[schemars(with = "Option<HttpRaw>")]
    pub http: Option<Sp<HttpRaw>>,
    #[schemars(with = "Option<TcpRaw>")]
    pub tcp: Option<Sp<TcpRaw>>,
    #[schemars(with = "Option<CommandRaw>")]
    pub command: Option<Sp<CommandRaw>>,
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    #[schemars(with = "Option<PrometheusRaw>")]
    pub prometheus: Option<Sp<PrometheusRaw>>,
    #[schemars(with = "Option<LoadRaw>")]
    pub load: Option<Sp<LoadRaw>>,
    #[schemars(with = "Option<ExpectRaw>")]
    pub expect: Option<Sp<ExpectRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Http")]
pub struct HttpRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub url: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub method: Opt,
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub headers: Option<Entries<Sp<Scalar>>>,
    #[schemars(with = "Option<schema::Text>")]
    pub body: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// `load`: an `http` request sent open loop at `rate`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Load")]
pub struct LoadRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub url: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub rate: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub method: Opt,
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub headers: Option<Entries<Sp<Scalar>>>,
    #[schemars(with = "Option<schema::Text>")]
    pub body: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tcp")]
pub struct TcpRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub address: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Command")]
pub struct CommandRaw {
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// A process selector: exactly one key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Process")]
pub struct ProcessRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub pattern: Opt,
    #[schemars(with = "Option<schema::Count>")]
    pub pid: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub pidfile: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Prometheus")]
pub struct PrometheusRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub url: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub query: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// Every expectation of every probe kind; `validate` checks which apply to the probe's kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
pub struct ExpectRaw {
    #[schemars(with = "Option<schema::TextOrList>")]
    pub status: Option<Sp<ScalarOrList>>,
    #[schemars(with = "Option<schema::Text>")]
    pub body_contains: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub body_matches: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub max_latency: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub exit: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub stdout_contains: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub stdout_matches: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub min: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub max: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub below: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub above: Opt,
    /// `load` only: the share of a sample's requests that must succeed.
    #[schemars(with = "Option<schema::Share>")]
    pub success: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
pub struct StepRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub target: Opt,
    #[schemars(with = "Option<FaultRaw>")]
    pub fault: Option<Sp<FaultRaw>>,
    #[schemars(with = "Option<Vec<FaultEntryRaw>>")]
    pub faults: Option<Sp<Vec<Sp<FaultEntryRaw>>>>,
    /// A step that runs a command instead of injecting faults.
    #[schemars(with = "Option<ActionRaw>")]
    pub action: Option<Sp<ActionRaw>>,
    /// A step that waits for a person to confirm or refuse.
    #[schemars(with = "Option<ManualRaw>")]
    pub manual: Option<Sp<ManualRaw>>,
    #[schemars(with = "Option<schema::Duration>")]
    pub duration: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub recover_within: Opt,
    #[schemars(with = "Option<ObjectivesRaw>")]
    pub objectives: Option<Sp<ObjectivesRaw>>,
}

/// `action:` of a step, or of an entry of `faults:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Action")]
pub struct ActionRaw {
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub on: Opt,
}

/// `manual:` of a step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Manual")]
pub struct ManualRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub prompt: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// `objectives:`, at the top level or on a step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Objectives")]
pub struct ObjectivesRaw {
    #[schemars(with = "Option<schema::Duration>")]
    pub max_outage: Opt,
    #[schemars(with = "Option<schema::Share>")]
    pub max_failed: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub max_error: Opt,
}

/// `fault:` of a step or of the monkey: one kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Fault")]
pub struct FaultRaw {
    #[schemars(with = "Option<KillRaw>")]
    pub kill: Option<Sp<KillRaw>>,
    #[schemars(with = "Option<PauseRaw>")]
    pub pause: Option<Sp<PauseRaw>>,
    #[schemars(with = "Option<LatencyRaw>")]
    pub latency: Option<Sp<LatencyRaw>>,
    #[schemars(with = "Option<LossRaw>")]
    pub loss: Option<Sp<LossRaw>>,
    #[schemars(with = "Option<DropRaw>")]
    pub drop: Option<Sp<DropRaw>>,
    #[schemars(with = "Option<FillDiskRaw>")]
    pub fill_disk: Option<Sp<FillDiskRaw>>,
}

/// An entry of `faults:`: its own target and one kind, or an `action`; either may start late.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FaultEntry")]
pub struct FaultEntryRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub target: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub start_after: Opt,
    #[schemars(with = "Option<ActionRaw>")]
    pub action: Option<Sp<ActionRaw>>,
    #[schemars(with = "Option<KillRaw>")]
    pub kill: Option<Sp<KillRaw>>,
    #[schemars(with = "Option<PauseRaw>")]
    pub pause: Option<Sp<PauseRaw>>,
    #[schemars(with = "Option<LatencyRaw>")]
    pub latency: Option<Sp<LatencyRaw>>,
    #[schemars(with = "Option<LossRaw>")]
    pub loss: Option<Sp<LossRaw>>,
    #[schemars(with = "Option<DropRaw>")]
    pub drop: Option<Sp<DropRaw>>,
    #[schemars(with = "Option<FillDiskRaw>")]
    pub fill_disk: Option<Sp<FillDiskRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Kill")]
pub struct KillRaw {
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    #[schemars(with = "Option<schema::Text>")]
    pub signal: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub pick: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pause")]
pub struct PauseRaw {
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    #[schemars(with = "Option<schema::Text>")]
    pub pick: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Latency")]
pub struct LatencyRaw {
    #[schemars(with = "Option<schema::Duration>")]
    pub delay: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub jitter: Opt,
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Loss")]
pub struct LossRaw {
    #[schemars(with = "Option<schema::Share>")]
    pub share: Opt,
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Drop")]
pub struct DropRaw {
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    #[schemars(with = "Option<schema::Text>")]
    pub mode: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FillDisk")]
pub struct FillDiskRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub path: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub usage: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub size: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub leave: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Peer")]
pub struct PeerRaw {
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub hosts: Option<Vec<Sp<Scalar>>>,
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub ports: Option<Vec<Sp<Scalar>>>,
    #[schemars(with = "Option<schema::Text>")]
    pub protocol: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
pub struct ScheduleRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub cron: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub timezone: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
pub struct SettingsRaw {
    #[schemars(with = "Option<schema::Count>")]
    pub seed: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub every: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub window: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub recover_within: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub lease: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub max_duration: Opt,
    #[schemars(with = "Option<schema::Count>")]
    pub max_hosts: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Monkey")]
pub struct MonkeyRaw {
    #[schemars(with = "Option<schema::Text>")]
    pub target: Opt,
    #[schemars(with = "Option<FaultRaw>")]
    pub fault: Option<Sp<FaultRaw>>,
    #[schemars(with = "Option<schema::Duration>")]
    pub mean_interval: Opt,
    #[schemars(with = "Option<schema::Duration>")]
    pub min_interval: Opt,
    #[schemars(with = "Option<ActiveRaw>")]
    pub active: Option<Sp<ActiveRaw>>,
    #[schemars(with = "Option<schema::Count>")]
    pub max_per_day: Opt,
    /// How long each fault is held: as a step's `duration` (0s for kill, required otherwise).
    #[schemars(with = "Option<schema::Duration>")]
    pub duration: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Active")]
pub struct ActiveRaw {
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub days: Option<Vec<Sp<Scalar>>>,
    #[schemars(with = "Option<schema::Text>")]
    pub hours: Opt,
    #[schemars(with = "Option<schema::Text>")]
    pub timezone: Opt,
}
