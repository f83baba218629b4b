//! Webhooks: chaosd tells chat rooms and pagers when a run starts, when a guardrail is breached
//! and when a run ends, by POSTing JSON to each configured `url` whose `events` include it.
//!
//! The body works as a Slack (or Mattermost, or Teams workflow) incoming webhook: `text` is the
//! message; the other fields are for machines:
//!
//! ```json
//! {"text": "chaosd: run 20261126T103842Z-32caa1 of `checkout` deviated (...); report: https://chaosd.example/ui/runs/20261126T103842Z-32caa1",
//!  "event": "run_finished", "run_id": "...", "scenario": "checkout", "labels": {"schedule": "..."},
//!  "at": "2026-11-26T10:39:02Z", "message": "run ended: deviated (...)",
//!  "verdict": "deviated", "report_url": "https://chaosd.example/ui/runs/...", "fields": {...}}
//! ```
//!
//! `report_url` (and the link in `text`) is there when chaosd knows the address people reach it
//! at (`public_url` in its configuration): the run's page of the web view.
//!
//! Events: `run_started`; `breach` (a guardrail, with `guardrail` and `host` in `fields`); and the
//! end of a run, sent once per webhook under the most specific name it asked for: `fault_left`
//! when faults may still be in place, `run_aborted` for an aborted run, else `run_finished`
//! (every run's end).
//!
//! Sending never blocks or fails a run: each delivery is a task of its own with a timeout per
//! attempt and two retries; a delivery that still fails is logged and counted
//! (`chaosd_webhook_deliveries_total{outcome="failed"}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::engine::live::{LiveStatus, Observer};
use crate::metrics::{RunFaults, global};
use crate::report::model::Event;
use crate::service::config::Webhook;

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits before the second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// Sends webhooks in the background.
pub struct Notifier {
    hooks: Vec<Webhook>,
    /// `public_url` from the configuration, without a trailing `/`: links to run pages.
    public_url: Option<String>,
    client: Option<agent::http::client::HttpsClient>,
    tasks: TaskTracker,
    /// Deliveries started, for tests and shutdown logs.
    started: AtomicUsize,
}

impl Notifier {
    pub fn new(hooks: Vec<Webhook>, public_url: Option<String>) -> Arc<Notifier> {
        let client = if hooks.is_empty() {
            None
        } else {
            match agent::http::client::https_client(None) {
                Ok(client) => Some(client),
                Err(err) => {
                    warn!(error = %err, "cannot build the webhook client; webhooks are off");
                    None
                }
            }
        };
        Arc::new(Notifier {
            hooks,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            client,
            tasks: TaskTracker::new(),
            started: AtomicUsize::new(0),
        })
    }

    /// The web view's page of a run, when chaosd knows its public address.
    pub fn run_url(&self, run_id: &str) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|base| format!("{base}/ui/runs/{run_id}"))
    }

    /// Sends `payload` to every hook that asked for one of `events` (most specific first); the
    /// payload's `event` is the name the hook matched.
    pub fn send(&self, events: &[&str], payload: &Value) {
        let Some(client) = &self.client else { return };
        for hook in &self.hooks {
            let Some(event) = events.iter().find(|e| hook.events.iter().any(|h| h == *e)) else {
                continue;
            };
            let mut body = payload.clone();
            body["event"] = json!(event);
            let (client, hook, event) = (client.clone(), hook.clone(), event.to_string());
            self.started.fetch_add(1, Ordering::Relaxed);
            self.tasks.spawn(async move {
                let ok = deliver(&client, &hook, &body).await;
                global()
                    .webhooks
                    .inc(&[&event, if ok { "ok" } else { "failed" }]);
            });
        }
    }

    /// At shutdown: gives deliveries in flight up to `grace` to finish.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                ?grace,
                "webhook deliveries still in flight at shutdown; dropped"
            );
        }
    }
}

/// Tries up to three times; true once a 2xx answer came.
async fn deliver(client: &agent::http::client::HttpsClient, hook: &Webhook, body: &Value) -> bool {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut last = String::new();
    for attempt in 0..=BACKOFF.len() {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF[attempt - 1]).await;
        }
        let mut req = match Request::post(&hook.url)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(bytes.clone()))
        {
            Ok(req) => req,
            Err(err) => {
                warn!(url = hook.url, error = %err, "webhook url is unusable");
                return false;
            }
        };
        for (k, v) in &hook.headers {
            if let (Ok(k), Ok(mut v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v))
            {
                v.set_sensitive(true);
                req.headers_mut().insert(k, v);
            }
        }
        let call = async {
            let response = client
                .request(req)
                .await
                .map_err(|e| agent::http::client::describe(&e))?;
            let status = response.status();
            let _ = response.into_body().collect().await;
            Ok::<_, String>(status)
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, call).await {
            Ok(Ok(status)) if status.is_success() => {
                debug!(url = hook.url, event = %body["event"], "webhook delivered");
                return true;
            }
            Ok(Ok(status)) => last = format!("answered {status}"),
            Ok(Err(err)) => last = err,
            Err(_) => last = format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
        }
    }
    warn!(url = hook.url, event = %body["event"], error = last, attempts = BACKOFF.len() + 1,
        "webhook delivery failed");
    false
}

/// Who a run is, for its webhook messages.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub scenario: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// An observer in front of the run manager's own: it keeps the fault and revert metrics and
/// sends the webhooks of `run_started`, `breach` and `run_ended` events.
pub struct RunWatch {
    inner: Arc<dyn Observer>,
    notifier: Arc<Notifier>,
    run: RunInfo,
    faults: RunFaults,
}

impl RunWatch {
    pub fn wrap(inner: Arc<dyn Observer>, notifier: Arc<Notifier>, run: RunInfo) -> Arc<RunWatch> {
        Arc::new(RunWatch {
            inner,
            notifier,
            run,
            faults: RunFaults::default(),
        })
    }

    /// The payload; `text` gets the link to the run's page when there is one.
    fn payload(&self, event: &Event, text: String) -> Value {
        let url = self.notifier.run_url(&self.run.run_id);
        let text = match &url {
            Some(url) => format!("{text}; report: {url}"),
            None => text,
        };
        json!({
            "text": text,
            "run_id": self.run.run_id,
            "scenario": self.run.scenario,
            "labels": self.run.labels,
            "at": event.at,
            "message": event.message,
            "report_url": url,
            "fields": event.fields,
        })
    }
}

impl Observer for RunWatch {
    fn event(&self, event: &Event) {
        self.inner.event(event);
        self.faults.on_event(&event.kind);
        let who = format!("run {} of `{}`", self.run.run_id, self.run.scenario);
        match event.kind.as_str() {
            "run_started" => {
                let p = self.payload(event, format!("chaosd: {who} started"));
                self.notifier.send(&["run_started"], &p);
            }
            "breach" => {
                let p = self.payload(
                    event,
                    format!("chaosd: {who}: guardrail breached: {}", event.message),
                );
                self.notifier.send(&["breach"], &p);
            }
            "run_ended" => {
                let verdict = event.fields.get("verdict").and_then(Value::as_str);
                let left = event.fields.get("faults_left").and_then(Value::as_u64);
                // `run ended: passed (why)` reads `run ... passed (why)`.
                let how = event
                    .message
                    .strip_prefix("run ended: ")
                    .unwrap_or(&event.message);
                let mut p = self.payload(event, format!("chaosd: {who} {how}"));
                p["verdict"] = json!(verdict);
                p["faults_left"] = json!(left);
                let mut names = Vec::new();
                if left.unwrap_or(0) > 0 {
                    names.push("fault_left");
                }
                if verdict == Some("aborted") {
                    names.push("run_aborted");
                }
                names.push("run_finished");
                self.notifier.send(&names, &p);
            }
            _ => {}
        }
    }

    fn status(&self, status: &LiveStatus) {
        self.inner.status(status);
    }

    fn wants_status(&self) -> bool {
        self.inner.wants_status()
    }
}

/// A payload for a service-wide event (`halted`, `resumed`).
pub fn service_payload(event: &str, text: &str) -> Value {
    json!({"text": format!("chaosd: {text}"), "event": event, "at": Utc::now()})
}
