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
    /// The format version: 1.
    #[schemars(with = "Option<schema::Count>")]
    pub version: Opt,
    /// The scenario's name, in reports and the run history.
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    /// What the game day rehearses; shown in the reports.
    #[schemars(with = "Option<schema::Text>")]
    pub description: Opt,
    /// Free labels for people.
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub tags: Option<Vec<Sp<Scalar>>>,
    /// The machines that faults and probes may reach, by name (`local` is always there).
    #[schemars(with = "Option<BTreeMap<String, HostRaw>>")]
    pub hosts: Option<Entries<Sp<HostRaw>>>,
    /// Named selections of hosts.
    #[schemars(with = "Option<BTreeMap<String, TargetRaw>>")]
    pub targets: Option<Entries<Sp<TargetRaw>>>,
    /// Commands the run starts first, in order.
    #[schemars(with = "Option<Vec<SetupRaw>>")]
    pub setup: Option<Vec<Sp<SetupRaw>>>,
    /// The hypothesis: probes that must all hold before and after each step.
    #[schemars(with = "Option<Vec<ProbeRaw>>")]
    pub steady_state: Option<Vec<Sp<ProbeRaw>>>,
    /// Probes watched throughout; a breach aborts the run.
    #[schemars(with = "Option<Vec<ProbeRaw>>")]
    pub guardrails: Option<Vec<Sp<ProbeRaw>>>,
    /// What the game day does, in order.
    #[schemars(with = "Option<Vec<StepRaw>>")]
    pub steps: Option<Sp<Vec<Sp<StepRaw>>>>,
    /// Commands run after every revert, whatever happened.
    #[schemars(with = "Option<Vec<TeardownRaw>>")]
    pub teardown: Option<Vec<Sp<TeardownRaw>>>,
    /// When chaosd runs this scenario (`chaosctl schedule add`).
    #[schemars(with = "Option<ScheduleRaw>")]
    pub schedule: Option<Sp<ScheduleRaw>>,
    /// Run-wide defaults and limits.
    #[schemars(with = "Option<SettingsRaw>")]
    pub settings: Option<Sp<SettingsRaw>>,
    /// Random faults on a schedule, instead of `steps`.
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
    /// The machines, by name.
    #[schemars(with = "Option<BTreeMap<String, HostRaw>>")]
    pub hosts: Option<Entries<Sp<HostRaw>>>,
    /// Named selections of hosts.
    #[schemars(with = "Option<BTreeMap<String, TargetRaw>>")]
    pub targets: Option<Entries<Sp<TargetRaw>>>,
    /// A command that prints more hosts (`hosts:` in YAML or JSON), run at the start of each run.
    #[schemars(with = "Option<HostsFromRaw>")]
    pub hosts_from: Option<Sp<HostsFromRaw>>,
}

/// `hosts_from:` of an inventory: where the fleet's hosts come from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HostsFrom")]
pub struct HostsFromRaw {
    /// The command: a `/bin/sh -c` string or an argv list, run in the inventory's folder.
    #[schemars(with = "Option<schema::TextOrList>")]
    pub command: Option<Sp<ScalarOrList>>,
    /// How long it may take (default 30s).
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// What a `hosts_from` command prints: `hosts:` as in an inventory, and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsOutputRaw {
    pub hosts: Option<Entries<Sp<HostRaw>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Host")]
pub struct HostRaw {
    /// The agent's URL, e.g. `https://10.0.0.11:7411`.
    #[schemars(with = "Option<schema::Text>")]
    pub agent: Opt,
    /// Labels that targets select by.
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub labels: Option<Entries<Sp<Scalar>>>,
    /// The file holding the agent's bearer token (default: `CHAOS_AGENT_TOKEN`).
    #[schemars(with = "Option<schema::Text>")]
    pub token_file: Opt,
    /// The CA the agent's certificate must chain to (default: the system's roots).
    #[schemars(with = "Option<schema::Text>")]
    pub ca_file: Opt,
    /// A client certificate, for an agent started with `--client-ca`.
    #[schemars(with = "Option<schema::Text>")]
    pub cert_file: Opt,
    /// The client certificate's key.
    #[schemars(with = "Option<schema::Text>")]
    pub key_file: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Target")]
pub struct TargetRaw {
    /// The hosts having all of these labels.
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub labels: Option<Sp<Entries<Sp<Scalar>>>>,
    /// Exactly these hosts.
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub hosts: Option<Sp<Vec<Sp<Scalar>>>>,
    /// How many of those hosts are faulted: `all` (default), a count or a share.
    #[schemars(with = "Option<schema::Text>")]
    pub pick: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Setup")]
pub struct SetupRaw {
    /// Shown in events and the report.
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    /// The command: a `/bin/sh -c` string or an argv list.
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
    /// Keep it running until the run ends (default false: wait for it to exit 0).
    #[schemars(with = "Option<schema::Bool>")]
    pub background: Opt,
    /// A check that must pass before the next entry.
    #[schemars(with = "Option<ReadyRaw>")]
    pub ready: Option<Sp<ReadyRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Ready")]
pub struct ReadyRaw {
    /// How long the check may take to pass.
    #[schemars(with = "Option<schema::Duration>")]
    pub within: Opt,
    /// An HTTP request.
    #[schemars(with = "Option<HttpRaw>")]
    pub http: Option<Sp<HttpRaw>>,
    /// A TCP connect.
    #[schemars(with = "Option<TcpRaw>")]
    pub tcp: Option<Sp<TcpRaw>>,
    /// A command's exit and output.
    #[schemars(with = "Option<CommandRaw>")]
    pub command: Option<Sp<CommandRaw>>,
    /// How many processes match.
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    /// A PromQL query's value.
    #[schemars(with = "Option<PrometheusRaw>")]
    pub prometheus: Option<Sp<PrometheusRaw>>,
    /// What a sample must show to pass.
    #[schemars(with = "Option<ExpectRaw>")]
    pub expect: Option<Sp<ExpectRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Teardown")]
pub struct TeardownRaw {
    /// Shown in events and the report.
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    /// The command: a `/bin/sh -c` string or an argv list.
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Probe")]
pub struct ProbeRaw {
    /// Unique among the probes of the file.
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    /// Where the probe runs: a target or host (default `local`, the controller).
    #[schemars(with = "Option<schema::Text>")]
    pub on: Opt,
    /// Time between samples (default `settings.every`).
    #[schemars(with = "Option<schema::Duration>")]
    pub every: Opt,
    /// The window's length (default `settings.window`).
    #[schemars(with = "Option<schema::Duration>")]
    pub window: Opt,
    /// The share of a window's samples that must pass (default 100%).
    #[schemars(with = "Option<schema::Share>")]
    pub tolerance: Opt,
    /// An HTTP request.
    #[schemars(with = "Option<HttpRaw>")]
    pub http: Option<Sp<HttpRaw>>,
    /// A TCP connect.
    #[schemars(with = "Option<TcpRaw>")]
    pub tcp: Option<Sp<TcpRaw>>,
    /// A command's exit and output.
    #[schemars(with = "Option<CommandRaw>")]
    pub command: Option<Sp<CommandRaw>>,
    /// How many processes match.
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    /// A PromQL query's value.
    #[schemars(with = "Option<PrometheusRaw>")]
    pub prometheus: Option<Sp<PrometheusRaw>>,
    /// A steady stream of HTTP requests, judged per burst.
    #[schemars(with = "Option<LoadRaw>")]
    pub load: Option<Sp<LoadRaw>>,
    /// What a sample must show to pass.
    #[schemars(with = "Option<ExpectRaw>")]
    pub expect: Option<Sp<ExpectRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Http")]
pub struct HttpRaw {
    /// An `http://` or `https://` URL.
    #[schemars(with = "Option<schema::Text>")]
    pub url: Opt,
    /// The HTTP method (default GET).
    #[schemars(with = "Option<schema::Text>")]
    pub method: Opt,
    /// Request headers.
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub headers: Option<Entries<Sp<Scalar>>>,
    /// The request body.
    #[schemars(with = "Option<schema::Text>")]
    pub body: Opt,
    /// Default: the smaller of `every` and 5s.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// `load`: an `http` request sent open loop at `rate`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Load")]
pub struct LoadRaw {
    /// An `http://` or `https://` URL.
    #[schemars(with = "Option<schema::Text>")]
    pub url: Opt,
    /// Requests per second, e.g. `50/s` (at most 1000/s).
    #[schemars(with = "Option<schema::Text>")]
    pub rate: Opt,
    /// The HTTP method (default GET).
    #[schemars(with = "Option<schema::Text>")]
    pub method: Opt,
    /// Request headers.
    #[schemars(with = "Option<BTreeMap<String, schema::Text>>")]
    pub headers: Option<Entries<Sp<Scalar>>>,
    /// The request body.
    #[schemars(with = "Option<schema::Text>")]
    pub body: Opt,
    /// Per request; default the smaller of 1s and `every`.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tcp")]
pub struct TcpRaw {
    /// `host:port`.
    #[schemars(with = "Option<schema::Text>")]
    pub address: Opt,
    /// Default: the smaller of `every` and 5s.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Command")]
pub struct CommandRaw {
    /// The command: a `/bin/sh -c` string or an argv list.
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
    /// Default: the smaller of `every` and 5s.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// A process selector: one key, or `name`/`pattern` with any of `cgroup`, `unit`, `container`
/// (all given must match).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Process")]
pub struct ProcessRaw {
    /// Processes whose kernel name (`/proc/PID/comm`) or executable's file name is this.
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    /// Processes whose whole command line matches this regex.
    #[schemars(with = "Option<schema::Text>")]
    pub pattern: Opt,
    /// That process.
    #[schemars(with = "Option<schema::Count>")]
    pub pid: Opt,
    /// The process whose pid this file holds, read at each use.
    #[schemars(with = "Option<schema::Text>")]
    pub pidfile: Opt,
    /// Processes whose cgroup path (`/proc/PID/cgroup`) matches this glob: `*/docker-3f2a*`.
    #[schemars(with = "Option<schema::Text>")]
    pub cgroup: Opt,
    /// The processes of this systemd unit (`nginx.service`; a bare name means `.service`).
    #[schemars(with = "Option<schema::Text>")]
    pub unit: Opt,
    /// The processes of this container: an id prefix of 12+ hex digits, or a name (Docker,
    /// Podman, Kubernetes: `name`, `pod/name`, `namespace/pod/name`).
    #[schemars(with = "Option<schema::Text>")]
    pub container: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Prometheus")]
pub struct PrometheusRaw {
    /// The Prometheus server's URL.
    #[schemars(with = "Option<schema::Text>")]
    pub url: Opt,
    /// A PromQL query giving one value.
    #[schemars(with = "Option<schema::Text>")]
    pub query: Opt,
    /// Default: the smaller of `every` and 5s.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// Every expectation of every probe kind; `validate` checks which apply to the probe's kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
pub struct ExpectRaw {
    /// `http`, `load`: the status, e.g. `200`, `2xx`, or a list.
    #[schemars(with = "Option<schema::TextOrList>")]
    pub status: Option<Sp<ScalarOrList>>,
    /// `http`, `load`: text the body contains.
    #[schemars(with = "Option<schema::Text>")]
    pub body_contains: Opt,
    /// `http`, `load`: a regex the body matches.
    #[schemars(with = "Option<schema::Text>")]
    pub body_matches: Opt,
    /// `http`, `load`: the longest an answer may take.
    #[schemars(with = "Option<schema::Duration>")]
    pub max_latency: Opt,
    /// `command`: the exit code (default 0).
    #[schemars(with = "Option<schema::Text>")]
    pub exit: Opt,
    /// `command`: text its output contains.
    #[schemars(with = "Option<schema::Text>")]
    pub stdout_contains: Opt,
    /// `command`: a regex its output matches.
    #[schemars(with = "Option<schema::Text>")]
    pub stdout_matches: Opt,
    /// `process`: at least this many match (default 1).
    #[schemars(with = "Option<schema::Text>")]
    pub min: Opt,
    /// `process`: at most this many match.
    #[schemars(with = "Option<schema::Text>")]
    pub max: Opt,
    /// `prometheus`: the value is strictly below.
    #[schemars(with = "Option<schema::Text>")]
    pub below: Opt,
    /// `prometheus`: the value is strictly above.
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
    /// Unique among the steps.
    #[schemars(with = "Option<schema::Text>")]
    pub name: Opt,
    /// Where `fault` goes: a target or host.
    #[schemars(with = "Option<schema::Text>")]
    pub target: Opt,
    /// One fault kind, injected on every picked host of `target`.
    #[schemars(with = "Option<FaultRaw>")]
    pub fault: Option<Sp<FaultRaw>>,
    /// Several faults and timed actions, each with its own `target`.
    #[schemars(with = "Option<Vec<FaultEntryRaw>>")]
    pub faults: Option<Sp<Vec<Sp<FaultEntryRaw>>>>,
    /// A step that runs a command instead of injecting faults.
    #[schemars(with = "Option<ActionRaw>")]
    pub action: Option<Sp<ActionRaw>>,
    /// A step that waits for a person to confirm or refuse.
    #[schemars(with = "Option<ManualRaw>")]
    pub manual: Option<Sp<ManualRaw>>,
    /// How long the faults are held (0s for a kill, required otherwise).
    #[schemars(with = "Option<schema::Duration>")]
    pub duration: Opt,
    /// After the faults end, the hypothesis must hold again within this.
    #[schemars(with = "Option<schema::Duration>")]
    pub recover_within: Opt,
    /// This step's own limits; each key replaces the top-level one.
    #[schemars(with = "Option<ObjectivesRaw>")]
    pub objectives: Option<Sp<ObjectivesRaw>>,
}

/// `action:` of a step, or of an entry of `faults:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Action")]
pub struct ActionRaw {
    /// The command: a `/bin/sh -c` string or an argv list.
    #[schemars(with = "Option<schema::TextOrList>")]
    pub run: Option<Sp<ScalarOrList>>,
    /// Longer is a failure (default 5m).
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
    /// Run it on each host of this target, through its agent (default: the controller).
    #[schemars(with = "Option<schema::Text>")]
    pub on: Opt,
}

/// `manual:` of a step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Manual")]
pub struct ManualRaw {
    /// The question a person answers.
    #[schemars(with = "Option<schema::Text>")]
    pub prompt: Opt,
    /// How long to wait for the answer (default 30m).
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Opt,
}

/// `objectives:`, at the top level or on a step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Objectives")]
pub struct ObjectivesRaw {
    /// The longest one run of failing samples may last.
    #[schemars(with = "Option<schema::Duration>")]
    pub max_outage: Opt,
    /// The largest share of samples (or requests) that may fail.
    #[schemars(with = "Option<schema::Share>")]
    pub max_failed: Opt,
    /// The most failing time in all, over the step.
    #[schemars(with = "Option<schema::Duration>")]
    pub max_error: Opt,
}

/// `fault:` of a step or of the monkey: one kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Fault")]
pub struct FaultRaw {
    /// Send a signal to matching processes.
    #[schemars(with = "Option<KillRaw>")]
    pub kill: Option<Sp<KillRaw>>,
    /// Stop matching processes (SIGSTOP), resumed at the end.
    #[schemars(with = "Option<PauseRaw>")]
    pub pause: Option<Sp<PauseRaw>>,
    /// Delay packets from matching peers.
    #[schemars(with = "Option<LatencyRaw>")]
    pub latency: Option<Sp<LatencyRaw>>,
    /// Drop a share of matching packets.
    #[schemars(with = "Option<LossRaw>")]
    pub loss: Option<Sp<LossRaw>>,
    /// Block matching connections, both ways.
    #[schemars(with = "Option<DropRaw>")]
    pub drop: Option<Sp<DropRaw>>,
    /// Fill the filesystem holding a directory.
    #[schemars(with = "Option<FillDiskRaw>")]
    pub fill_disk: Option<Sp<FillDiskRaw>>,
    /// Burn CPU or hold memory in children of the agent.
    #[schemars(with = "Option<StressRaw>")]
    pub stress: Option<Sp<StressRaw>>,
    /// Limit what this host sends to matching peers to a rate.
    #[schemars(with = "Option<BandwidthRaw>")]
    pub bandwidth: Option<Sp<BandwidthRaw>>,
    /// Corrupt a share of the packets sent to matching peers (needs netem).
    #[schemars(with = "Option<CorruptRaw>")]
    pub corrupt: Option<Sp<CorruptRaw>>,
    /// Send a share of the packets sent to matching peers twice (needs netem).
    #[schemars(with = "Option<DuplicateRaw>")]
    pub duplicate: Option<Sp<DuplicateRaw>>,
    /// Answer this host's DNS queries for matching names with an error, an address, or late.
    #[schemars(with = "Option<DnsRaw>")]
    pub dns: Option<Sp<DnsRaw>>,
    /// Abort or delay a share of the HTTP/1.1 requests arriving for a server's port.
    #[schemars(with = "Option<HttpFaultRaw>")]
    pub http: Option<Sp<HttpFaultRaw>>,
    /// Make the fault inside the network namespaces of these processes (a container's), not
    /// the host's (network kinds), run `stress`'s workers below their cgroups, or fill
    /// `fill_disk`'s path as they see it.
    #[schemars(with = "Option<InsideRaw>")]
    pub inside: Option<Sp<InsideRaw>>,
}

/// `inside:` of a fault: whose network namespaces it is made in (whose cgroups, for `stress`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Inside")]
pub struct InsideRaw {
    /// The processes (a container's: `{container: checkout}`) whose namespaces (or cgroups) the
    /// fault enters, once per distinct namespace (or cgroup).
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
}

/// An entry of `faults:`: its own target and one kind, or an `action`; either may start late.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FaultEntry")]
pub struct FaultEntryRaw {
    /// Where this fault goes: a target or host.
    #[schemars(with = "Option<schema::Text>")]
    pub target: Opt,
    /// Inject (or run) this long after the step's first injection.
    #[schemars(with = "Option<schema::Duration>")]
    pub start_after: Opt,
    /// A command run instead (or, in `faults`, during the step).
    #[schemars(with = "Option<ActionRaw>")]
    pub action: Option<Sp<ActionRaw>>,
    /// Send a signal to matching processes.
    #[schemars(with = "Option<KillRaw>")]
    pub kill: Option<Sp<KillRaw>>,
    /// Stop matching processes (SIGSTOP), resumed at the end.
    #[schemars(with = "Option<PauseRaw>")]
    pub pause: Option<Sp<PauseRaw>>,
    /// Delay packets from matching peers.
    #[schemars(with = "Option<LatencyRaw>")]
    pub latency: Option<Sp<LatencyRaw>>,
    /// Drop a share of matching packets.
    #[schemars(with = "Option<LossRaw>")]
    pub loss: Option<Sp<LossRaw>>,
    /// Block matching connections, both ways.
    #[schemars(with = "Option<DropRaw>")]
    pub drop: Option<Sp<DropRaw>>,
    /// Fill the filesystem holding a directory.
    #[schemars(with = "Option<FillDiskRaw>")]
    pub fill_disk: Option<Sp<FillDiskRaw>>,
    /// Burn CPU or hold memory in children of the agent.
    #[schemars(with = "Option<StressRaw>")]
    pub stress: Option<Sp<StressRaw>>,
    /// Limit what this host sends to matching peers to a rate.
    #[schemars(with = "Option<BandwidthRaw>")]
    pub bandwidth: Option<Sp<BandwidthRaw>>,
    /// Corrupt a share of the packets sent to matching peers (needs netem).
    #[schemars(with = "Option<CorruptRaw>")]
    pub corrupt: Option<Sp<CorruptRaw>>,
    /// Send a share of the packets sent to matching peers twice (needs netem).
    #[schemars(with = "Option<DuplicateRaw>")]
    pub duplicate: Option<Sp<DuplicateRaw>>,
    /// Answer this host's DNS queries for matching names with an error, an address, or late.
    #[schemars(with = "Option<DnsRaw>")]
    pub dns: Option<Sp<DnsRaw>>,
    /// Abort or delay a share of the HTTP/1.1 requests arriving for a server's port.
    #[schemars(with = "Option<HttpFaultRaw>")]
    pub http: Option<Sp<HttpFaultRaw>>,
    /// Make the fault inside the network namespaces of these processes (a container's), not
    /// the host's (network kinds), run `stress`'s workers below their cgroups, or fill
    /// `fill_disk`'s path as they see it.
    #[schemars(with = "Option<InsideRaw>")]
    pub inside: Option<Sp<InsideRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Kill")]
pub struct KillRaw {
    /// Which processes.
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    /// The signal, e.g. `SIGKILL` (default), `TERM`, `9`.
    #[schemars(with = "Option<schema::Text>")]
    pub signal: Opt,
    /// How many of the matching processes per host: `all` (default), a count or a share.
    #[schemars(with = "Option<schema::Text>")]
    pub pick: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pause")]
pub struct PauseRaw {
    /// Which processes.
    #[schemars(with = "Option<ProcessRaw>")]
    pub process: Option<Sp<ProcessRaw>>,
    /// How many of the matching processes per host: `all` (default), a count or a share.
    #[schemars(with = "Option<schema::Text>")]
    pub pick: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Latency")]
pub struct LatencyRaw {
    /// The added delay.
    #[schemars(with = "Option<schema::Duration>")]
    pub delay: Opt,
    /// Plus or minus this much, at random (default 0s).
    #[schemars(with = "Option<schema::Duration>")]
    pub jitter: Opt,
    /// Connections this host opens to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    /// Connections these peers open to this host.
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    /// Where the fault applies (default: the default route's interface).
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    /// Leave TCP port 22 alone, both ways (default true).
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Loss")]
pub struct LossRaw {
    /// The share of matching packets dropped, e.g. `30%`.
    #[schemars(with = "Option<schema::Share>")]
    pub share: Opt,
    /// Connections this host opens to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    /// Connections these peers open to this host.
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    /// Where the fault applies (default: the default route's interface).
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    /// Leave TCP port 22 alone, both ways (default true).
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Corrupt")]
pub struct CorruptRaw {
    /// The share of matching packets sent with a bit flipped, e.g. `5%`.
    #[schemars(with = "Option<schema::Share>")]
    pub share: Opt,
    /// Packets this host sends to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    /// This host's replies to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    /// Where the fault applies (default: the default route's interface).
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    /// Leave TCP port 22 alone, both ways (default true).
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Duplicate")]
pub struct DuplicateRaw {
    /// The share of matching packets sent twice, e.g. `5%`.
    #[schemars(with = "Option<schema::Share>")]
    pub share: Opt,
    /// Packets this host sends to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    /// This host's replies to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    /// Where the fault applies (default: the default route's interface).
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    /// Leave TCP port 22 alone, both ways (default true).
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

/// `http`: requests for a server's port pass through the agent.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpFault")]
pub struct HttpFaultRaw {
    /// The port a plain HTTP/1.1 server listens on, on the target host.
    #[schemars(with = "Option<schema::Count>")]
    pub port: Opt,
    /// Answer the requests hit at once with a status, e.g. `{status: 503}` (or give `delay`).
    #[schemars(with = "Option<HttpAbortRaw>")]
    pub abort: Option<Sp<HttpAbortRaw>>,
    /// Pass the requests hit on to the server this much later, e.g. `200ms` (or give `abort`).
    #[schemars(with = "Option<schema::Duration>")]
    pub delay: Opt,
    /// The share of matching requests hit, drawn from the run's seed (default 100%).
    #[schemars(with = "Option<schema::Share>")]
    pub share: Opt,
    /// Only requests whose path starts with one of these, e.g. `[/api]` (default: every path).
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub paths: Option<Vec<Sp<Scalar>>>,
    /// Only requests with one of these methods, e.g. `[GET, POST]` (default: every method).
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub methods: Option<Vec<Sp<Scalar>>>,
}

/// `http`'s `abort`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpAbort")]
pub struct HttpAbortRaw {
    /// The status answered, 200 to 599, e.g. `503`.
    #[schemars(with = "Option<schema::Count>")]
    pub status: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Drop")]
pub struct DropRaw {
    /// Connections this host opens to these peers.
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    /// Connections these peers open to this host.
    #[schemars(with = "Option<PeerRaw>")]
    pub from: Option<Sp<PeerRaw>>,
    /// `drop` (default: packets vanish) or `reject` (resets and ICMP errors).
    #[schemars(with = "Option<schema::Text>")]
    pub mode: Opt,
    /// Where the fault applies (default: the default route's interface).
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    /// Leave TCP port 22 alone, both ways (default true).
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FillDisk")]
pub struct FillDiskRaw {
    /// A directory on the host; its filesystem is filled with one file in it.
    #[schemars(with = "Option<schema::Text>")]
    pub path: Opt,
    /// Fill until the filesystem is this full, e.g. `95%`.
    #[schemars(with = "Option<schema::Text>")]
    pub usage: Opt,
    /// Write this much, e.g. `2GiB`.
    #[schemars(with = "Option<schema::Text>")]
    pub size: Opt,
    /// Fill until this much is left free.
    #[schemars(with = "Option<schema::Text>")]
    pub leave: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stress")]
pub struct StressRaw {
    /// Burn CPU: `workers` or `cores`, with a `load`.
    #[schemars(with = "Option<StressCpuRaw>")]
    pub cpu: Option<Sp<StressCpuRaw>>,
    /// Hold memory resident (written, not just allocated): `size` or `share`.
    #[schemars(with = "Option<StressMemoryRaw>")]
    pub memory: Option<Sp<StressMemoryRaw>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "StressCpu")]
pub struct StressCpuRaw {
    /// How many busy workers.
    #[schemars(with = "Option<schema::Count>")]
    pub workers: Opt,
    /// A share of the host's online CPUs, one worker each (rounded up), e.g. `50%`.
    #[schemars(with = "Option<schema::Share>")]
    pub cores: Opt,
    /// How busy each worker is, e.g. `80%` (default 100%).
    #[schemars(with = "Option<schema::Share>")]
    pub load: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "StressMemory")]
pub struct StressMemoryRaw {
    /// How much to hold, e.g. `512MiB`.
    #[schemars(with = "Option<schema::Text>")]
    pub size: Opt,
    /// A share of the host's MemTotal, e.g. `20%`.
    #[schemars(with = "Option<schema::Share>")]
    pub share: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Bandwidth")]
pub struct BandwidthRaw {
    /// The rate, e.g. `1mbit`, `500kbit`, `10MB/s`.
    #[schemars(with = "Option<schema::Rate>")]
    pub rate: Opt,
    /// Bytes sent at full speed before the rate applies, e.g. `32KiB` (default: 0.1 s at the rate).
    #[schemars(with = "Option<schema::Text>")]
    pub burst: Opt,
    /// Traffic this host sends to these peers (default: all it sends).
    #[schemars(with = "Option<PeerRaw>")]
    pub to: Option<Sp<PeerRaw>>,
    /// Where the fault applies (default: the default route's interface).
    #[schemars(with = "Option<schema::Text>")]
    pub interface: Opt,
    /// Leave TCP port 22 alone, both ways (default true).
    #[schemars(with = "Option<schema::Bool>")]
    pub spare_ssh: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dns")]
pub struct DnsRaw {
    /// Names or globs (`*` for any run of characters) whose queries the fault answers, e.g. `db.internal`, `*.svc.local`.
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub names: Option<Vec<Sp<Scalar>>>,
    /// `nxdomain`, `servfail`, `refused`, `timeout` (no answer) or `{address: A}` (default: the real answer, late by `delay`).
    #[schemars(with = "Option<schema::DnsAnswer>")]
    pub answer: Option<Sp<DnsAnswerRaw>>,
    /// How late the answer comes: the fault's `answer`, or alone the real one.
    #[schemars(with = "Option<schema::Duration>")]
    pub delay: Opt,
}

/// A `dns` answer: a word (`nxdomain`), or `{address: A}`.
#[derive(Debug, Clone)]
pub enum DnsAnswerRaw {
    Word(String),
    Address(Sp<Scalar>),
}

impl<'de> Deserialize<'de> for DnsAnswerRaw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DnsAnswerRaw;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`nxdomain`, `servfail`, `refused`, `timeout` or `{address: A}`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DnsAnswerRaw, E> {
                Ok(DnsAnswerRaw::Word(v.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DnsAnswerRaw, A::Error> {
                let mut address = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "address" || address.is_some() {
                        return Err(de::Error::unknown_field(&key, &["address"]));
                    }
                    address = Some(map.next_value()?);
                }
                address
                    .map(DnsAnswerRaw::Address)
                    .ok_or_else(|| de::Error::missing_field("address"))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Peer")]
pub struct PeerRaw {
    /// Addresses or CIDRs (default: any).
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub hosts: Option<Vec<Sp<Scalar>>>,
    /// In `to`: the peer's ports; in `from`: ours (default: any).
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub ports: Option<Vec<Sp<Scalar>>>,
    /// `tcp` or `udp`.
    #[schemars(with = "Option<schema::Text>")]
    pub protocol: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
pub struct ScheduleRaw {
    /// A 5-field cron expression (minute hour day month weekday).
    #[schemars(with = "Option<schema::Text>")]
    pub cron: Opt,
    /// The IANA zone `cron` is read in (default UTC).
    #[schemars(with = "Option<schema::Text>")]
    pub timezone: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
pub struct SettingsRaw {
    /// The seed of every random choice (default: a random one).
    #[schemars(with = "Option<schema::Count>")]
    pub seed: Opt,
    /// A probe's default `every` (1s).
    #[schemars(with = "Option<schema::Duration>")]
    pub every: Opt,
    /// A probe's default `window` (5s).
    #[schemars(with = "Option<schema::Duration>")]
    pub window: Opt,
    /// A step's default `recover_within` (30s).
    #[schemars(with = "Option<schema::Duration>")]
    pub recover_within: Opt,
    /// A remote agent reverts this run's faults when the controller is silent this long (10s).
    #[schemars(with = "Option<schema::Duration>")]
    pub lease: Opt,
    /// No step's `duration` may be longer (1h).
    #[schemars(with = "Option<schema::Duration>")]
    pub max_duration: Opt,
    /// No step may fault more hosts than this (10).
    #[schemars(with = "Option<schema::Count>")]
    pub max_hosts: Opt,
    /// The most calls to remote agents the run has in flight at once (512); reverts and lease
    /// renewals go first.
    #[schemars(with = "Option<schema::Count>")]
    pub max_in_flight: Opt,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Monkey")]
pub struct MonkeyRaw {
    /// Where the faults go: a target or host.
    #[schemars(with = "Option<schema::Text>")]
    pub target: Opt,
    /// The fault kind it injects.
    #[schemars(with = "Option<FaultRaw>")]
    pub fault: Option<Sp<FaultRaw>>,
    /// The mean time between faults.
    #[schemars(with = "Option<schema::Duration>")]
    pub mean_interval: Opt,
    /// The shortest time between faults.
    #[schemars(with = "Option<schema::Duration>")]
    pub min_interval: Opt,
    /// When faults may happen.
    #[schemars(with = "Option<ActiveRaw>")]
    pub active: Option<Sp<ActiveRaw>>,
    /// At most this many faults per local day.
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
    /// Days of the week, e.g. `[mon, tue, wed, thu, fri]`.
    #[schemars(with = "Option<Vec<schema::Text>>")]
    pub days: Option<Vec<Sp<Scalar>>>,
    /// Local hours, e.g. `09:00-17:00`.
    #[schemars(with = "Option<schema::Text>")]
    pub hours: Opt,
    /// The IANA zone of `days` and `hours`.
    #[schemars(with = "Option<schema::Text>")]
    pub timezone: Opt,
}
