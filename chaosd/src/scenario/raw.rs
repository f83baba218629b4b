//! The YAML surface as serde types: every key of spec v1, each value kept with its position.
//!
//! Leaves are [`Scalar`]s, the scalar's text as written, so that `${NAME}` can be substituted
//! before a value is parsed (`duration: ${D}`) and so that a bad value is reported by
//! `validate` with its position, along with every other problem. Keys are checked here, by
//! `deny_unknown_fields`; everything else is checked in `validate`.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRaw {
    pub version: Opt,
    pub name: Opt,
    pub description: Opt,
    pub tags: Option<Vec<Sp<Scalar>>>,
    pub hosts: Option<Entries<Sp<HostRaw>>>,
    pub targets: Option<Entries<Sp<TargetRaw>>>,
    pub setup: Option<Vec<Sp<SetupRaw>>>,
    pub steady_state: Option<Vec<Sp<ProbeRaw>>>,
    pub guardrails: Option<Vec<Sp<ProbeRaw>>>,
    pub steps: Option<Sp<Vec<Sp<StepRaw>>>>,
    pub teardown: Option<Vec<Sp<TeardownRaw>>>,
    pub schedule: Option<Sp<ScheduleRaw>>,
    pub settings: Option<Sp<SettingsRaw>>,
    pub monkey: Option<Sp<MonkeyRaw>>,
    /// Limits on what users may go through in every step (a step's own keys replace these).
    pub objectives: Option<Sp<ObjectivesRaw>>,
}

/// An inventory file (`--inventory FILE`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRaw {
    pub hosts: Option<Entries<Sp<HostRaw>>>,
    pub targets: Option<Entries<Sp<TargetRaw>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRaw {
    pub agent: Opt,
    pub labels: Option<Entries<Sp<Scalar>>>,
    pub token_file: Opt,
    pub ca_file: Opt,
    pub cert_file: Opt,
    pub key_file: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRaw {
    pub labels: Option<Sp<Entries<Sp<Scalar>>>>,
    pub hosts: Option<Sp<Vec<Sp<Scalar>>>>,
    pub pick: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRaw {
    pub name: Opt,
    pub run: Option<Sp<ScalarOrList>>,
    pub background: Opt,
    pub ready: Option<Sp<ReadyRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyRaw {
    pub within: Opt,
    pub http: Option<Sp<HttpRaw>>,
    pub tcp: Option<Sp<TcpRaw>>,
    pub command: Option<Sp<CommandRaw>>,
    pub process: Option<Sp<ProcessRaw>>,
    pub prometheus: Option<Sp<PrometheusRaw>>,
    pub expect: Option<Sp<ExpectRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeardownRaw {
    pub name: Opt,
    pub run: Option<Sp<ScalarOrList>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRaw {
    pub name: Opt,
    pub on: Opt,
    pub every: Opt,
    pub window: Opt,
    pub tolerance: Opt,
    pub http: Option<Sp<HttpRaw>>,
    pub tcp: Option<Sp<TcpRaw>>,
    pub command: Option<Sp<CommandRaw>>,
    pub process: Option<Sp<ProcessRaw>>,
    pub prometheus: Option<Sp<PrometheusRaw>>,
    pub load: Option<Sp<LoadRaw>>,
    pub expect: Option<Sp<ExpectRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRaw {
    pub url: Opt,
    pub method: Opt,
    pub headers: Option<Entries<Sp<Scalar>>>,
    pub body: Opt,
    pub timeout: Opt,
}

/// `load`: an `http` request sent open loop at `rate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRaw {
    pub url: Opt,
    pub rate: Opt,
    pub method: Opt,
    pub headers: Option<Entries<Sp<Scalar>>>,
    pub body: Opt,
    pub timeout: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRaw {
    pub address: Opt,
    pub timeout: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRaw {
    pub run: Option<Sp<ScalarOrList>>,
    pub timeout: Opt,
}

/// A process selector: exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRaw {
    pub name: Opt,
    pub pattern: Opt,
    pub pid: Opt,
    pub pidfile: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusRaw {
    pub url: Opt,
    pub query: Opt,
    pub timeout: Opt,
}

/// Every expectation of every probe kind; `validate` checks which apply to the probe's kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRaw {
    pub status: Option<Sp<ScalarOrList>>,
    pub body_contains: Opt,
    pub body_matches: Opt,
    pub max_latency: Opt,
    pub exit: Opt,
    pub stdout_contains: Opt,
    pub stdout_matches: Opt,
    pub min: Opt,
    pub max: Opt,
    pub below: Opt,
    pub above: Opt,
    /// `load` only: the share of a sample's requests that must succeed.
    pub success: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRaw {
    pub name: Opt,
    pub target: Opt,
    pub fault: Option<Sp<FaultRaw>>,
    pub faults: Option<Sp<Vec<Sp<FaultEntryRaw>>>>,
    /// A step that runs a command instead of injecting faults.
    pub action: Option<Sp<ActionRaw>>,
    /// A step that waits for a person to confirm or refuse.
    pub manual: Option<Sp<ManualRaw>>,
    pub duration: Opt,
    pub recover_within: Opt,
    pub objectives: Option<Sp<ObjectivesRaw>>,
}

/// `action:` of a step, or of an entry of `faults:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRaw {
    pub run: Option<Sp<ScalarOrList>>,
    pub timeout: Opt,
    pub on: Opt,
}

/// `manual:` of a step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualRaw {
    pub prompt: Opt,
    pub timeout: Opt,
}

/// `objectives:`, at the top level or on a step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectivesRaw {
    pub max_outage: Opt,
    pub max_failed: Opt,
    pub max_error: Opt,
}

/// `fault:` of a step or of the monkey: one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRaw {
    pub kill: Option<Sp<KillRaw>>,
    pub pause: Option<Sp<PauseRaw>>,
    pub latency: Option<Sp<LatencyRaw>>,
    pub loss: Option<Sp<LossRaw>>,
    pub drop: Option<Sp<DropRaw>>,
    pub fill_disk: Option<Sp<FillDiskRaw>>,
}

/// An entry of `faults:`: its own target and one kind, or an `action`; either may start late.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEntryRaw {
    pub target: Opt,
    pub start_after: Opt,
    pub action: Option<Sp<ActionRaw>>,
    pub kill: Option<Sp<KillRaw>>,
    pub pause: Option<Sp<PauseRaw>>,
    pub latency: Option<Sp<LatencyRaw>>,
    pub loss: Option<Sp<LossRaw>>,
    pub drop: Option<Sp<DropRaw>>,
    pub fill_disk: Option<Sp<FillDiskRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillRaw {
    pub process: Option<Sp<ProcessRaw>>,
    pub signal: Opt,
    pub pick: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRaw {
    pub process: Option<Sp<ProcessRaw>>,
    pub pick: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRaw {
    pub delay: Opt,
    pub jitter: Opt,
    pub to: Option<Sp<PeerRaw>>,
    pub from: Option<Sp<PeerRaw>>,
    pub interface: Opt,
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossRaw {
    pub share: Opt,
    pub to: Option<Sp<PeerRaw>>,
    pub from: Option<Sp<PeerRaw>>,
    pub interface: Opt,
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropRaw {
    pub to: Option<Sp<PeerRaw>>,
    pub from: Option<Sp<PeerRaw>>,
    pub mode: Opt,
    pub interface: Opt,
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillDiskRaw {
    pub path: Opt,
    pub usage: Opt,
    pub size: Opt,
    pub leave: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRaw {
    pub hosts: Option<Vec<Sp<Scalar>>>,
    pub ports: Option<Vec<Sp<Scalar>>>,
    pub protocol: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRaw {
    pub cron: Opt,
    pub timezone: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsRaw {
    pub seed: Opt,
    pub every: Opt,
    pub window: Opt,
    pub recover_within: Opt,
    pub lease: Opt,
    pub max_duration: Opt,
    pub max_hosts: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonkeyRaw {
    pub target: Opt,
    pub fault: Option<Sp<FaultRaw>>,
    pub mean_interval: Opt,
    pub min_interval: Opt,
    pub active: Option<Sp<ActiveRaw>>,
    pub max_per_day: Opt,
    /// How long each fault is held: as a step's `duration` (0s for kill, required otherwise).
    pub duration: Opt,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveRaw {
    pub days: Option<Vec<Sp<Scalar>>>,
    pub hours: Opt,
    pub timezone: Opt,
}
