//! `chaosctl confirm RUN` / `chaosctl refuse RUN` for a local run, and the other end: the running
//! chaosctl's watch for an answer to its `manual` step, from its terminal or from the answer file
//! another chaosctl writes into the state directory (`STATE_DIR/answers/RUN_ID.json`).
//!
//! The file names the step it answers, and the run takes it only for that step while it waits,
//! so an answer can never carry over to another step or another run.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chaosd::engine::answers::{Answer, Answers};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EXIT_OK, Failure};
use crate::state;

/// How often the running chaosctl looks for an answer.
const POLL: Duration = Duration::from_millis(200);
/// How long `confirm`/`refuse` waits for the run to take its answer.
const TAKEN_WITHIN: Duration = Duration::from_secs(5);

/// The answer file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct AnswerFile {
    /// The step answered, from 0.
    step: usize,
    confirmed: bool,
    by: Option<String>,
    reason: Option<String>,
    at: DateTime<Utc>,
}

fn answer_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("answers").join(format!("{run_id}.json"))
}

/// This user's name, for "answered by".
pub fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

/// The `manual` step a run's events say it waits on now: (index, name).
fn waiting_step(events_path: &Path) -> Option<(usize, String)> {
    let text = std::fs::read_to_string(events_path).ok()?;
    let mut open = None;
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match event["kind"].as_str() {
            Some("manual_waiting") => {
                let fields = &event["fields"];
                open = fields["index"].as_u64().map(|i| {
                    (
                        i as usize,
                        fields["step"].as_str().unwrap_or_default().to_string(),
                    )
                });
            }
            Some("manual_answered" | "manual_timed_out" | "step_started" | "run_ended") => {
                open = None
            }
            _ => {}
        }
    }
    open
}

/// Whether the run's events say step `step` (from 0) was answered.
fn answered(events_path: &Path, step: usize) -> bool {
    std::fs::read_to_string(events_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| e["kind"] == "manual_answered" && e["fields"]["index"] == step)
}

/// Writes `contents` to `path` whole or not at all: a temporary file, synced, then renamed.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `chaosctl confirm|refuse RUN` for a run of this state directory: writes the answer for the
/// step that waits, then waits (briefly) for the run to take it.
pub async fn local(
    state_dir: Option<&Path>,
    run: &str,
    confirmed: bool,
    by: Option<String>,
    reason: Option<String>,
) -> Result<u8, Failure> {
    let state_dir = state::state_dir(state_dir)?;
    let store = state::open_store(&state_dir)?;
    let Some((record, _)) = store.get(run)? else {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "chaosctl: no run `{run}` in the history at `{}`; `chaosctl runs` lists them (a run on a chaosd server needs --server)",
            state_dir.display()
        )));
    };
    let run_id = record.run_id.clone();
    if let Some(verdict) = record.verdict {
        return Err(Failure::Failed(anyhow::anyhow!(
            "run {run_id} has ended ({verdict}); there is nothing to answer"
        )));
    }
    let events = record
        .report_dir
        .as_deref()
        .map(|d| Path::new(d).join("events.jsonl"))
        .context("the run has no report folder in the history")?;
    let Some((step, name)) = waiting_step(&events) else {
        return Err(Failure::Failed(anyhow::anyhow!(
            "run {run_id} is not waiting for an answer: only a `manual` step that is waiting can be confirmed or refused"
        )));
    };
    let answer = AnswerFile {
        step,
        confirmed,
        by: Some(by.unwrap_or_else(user_name)),
        reason,
        at: Utc::now(),
    };
    let path = answer_path(&state_dir, &run_id);
    let json = serde_json::to_vec(&answer).context("cannot encode the answer")?;
    write_atomically(&path, &json)
        .with_context(|| format!("cannot write the answer to `{}`", path.display()))?;
    let deadline = tokio::time::Instant::now() + TAKEN_WITHIN;
    while path.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if path.exists() {
        let _ = std::fs::remove_file(&path);
        return Err(Failure::Failed(anyhow::anyhow!(
            "run {run_id} did not take the answer within {}s: is its chaosctl still running? (`chaosctl runs`)",
            TAKEN_WITHIN.as_secs()
        )));
    }
    // Read, but was it taken? The run says so in its events (it refuses an answer that came as
    // the step ended, and says why on its own terminal).
    let taken = loop {
        if answered(&events, step) {
            break true;
        }
        if tokio::time::Instant::now() >= deadline + Duration::from_secs(2) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if !taken {
        return Err(Failure::Failed(anyhow::anyhow!(
            "run {run_id} read the answer but did not take it: step {} no longer waits; `chaosctl report {run_id}` says how it ended",
            step + 1
        )));
    }
    if confirmed {
        errln!(
            "chaosctl: confirmed step {} `{name}` of run {run_id}; the run goes on",
            step + 1
        );
    } else {
        errln!(
            "chaosctl: refused step {} `{name}` of run {run_id}; it ends deviated",
            step + 1
        );
    }
    Ok(EXIT_OK)
}

/// Watches for answers to a run's `manual` steps until aborted: its answer file, and the
/// terminal (when stdin is one) for y/n. `--yes` has no say here: a person must answer.
pub fn watch(
    state_dir: PathBuf,
    run_id: String,
    answers: Arc<Answers>,
) -> tokio::task::JoinHandle<()> {
    let terminal = std::io::stdin().is_terminal();
    let (typed_tx, mut typed) =
        tokio::sync::mpsc::unbounded_channel::<(usize, bool, Option<String>)>();
    tokio::spawn(async move {
        let path = answer_path(&state_dir, &run_id);
        let mut prompted: Option<usize> = None;
        loop {
            tokio::time::sleep(POLL).await;
            let waiting = answers.waiting();
            if let (true, Some(q)) = (terminal, &waiting)
                && prompted != Some(q.step)
            {
                prompted = Some(q.step);
                ask_on_terminal(q.step, &q.name, &q.prompt, &run_id, typed_tx.clone());
            }
            while let Ok((step, confirmed, reason)) = typed.try_recv() {
                let answer = Answer {
                    confirmed,
                    by: Some(user_name()),
                    reason,
                    at: Utc::now(),
                };
                if let Err(err) = answers.answer(Some(step), answer) {
                    errln!("chaosctl: your answer was not taken: {err}");
                }
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let _ = std::fs::remove_file(&path);
            match serde_json::from_slice::<AnswerFile>(&text) {
                Ok(file) => {
                    let answer = Answer {
                        confirmed: file.confirmed,
                        by: file.by,
                        reason: file.reason,
                        at: file.at,
                    };
                    if let Err(err) = answers.answer(Some(file.step), answer) {
                        errln!(
                            "chaosctl: ignored an answer for step {} from `{}`: {err}",
                            file.step + 1,
                            path.display()
                        );
                    }
                }
                Err(err) => errln!(
                    "chaosctl: ignored an unreadable answer in `{}`: {err}",
                    path.display()
                ),
            }
        }
    })
}

/// Asks on the terminal from a thread of its own (a read of stdin cannot be cancelled, and the
/// runtime must not wait for it at exit); the answer comes back through `typed`.
pub(crate) fn ask_on_terminal(
    step: usize,
    name: &str,
    prompt: &str,
    run_id: &str,
    typed: tokio::sync::mpsc::UnboundedSender<(usize, bool, Option<String>)>,
) {
    let question = format!(
        "\nstep {} `{name}` waits for you: {prompt}\n(or from another terminal: `chaosctl confirm {run_id}` / `chaosctl refuse {run_id} --reason TEXT`)\nConfirm? [y/n] ",
        step + 1
    );
    std::thread::spawn(move || {
        let read = || {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .ok()
                .filter(|n| *n > 0)?;
            Some(line.trim().to_ascii_lowercase())
        };
        err!("{question}");
        let _ = std::io::stderr().flush();
        loop {
            let Some(line) = read() else { return };
            match line.as_str() {
                "y" | "yes" => {
                    let _ = typed.send((step, true, None));
                    return;
                }
                "n" | "no" => {
                    err!("Why? (for the report; Enter for no reason) ");
                    let _ = std::io::stderr().flush();
                    let reason = read().filter(|r| !r.is_empty());
                    let _ = typed.send((step, false, reason));
                    return;
                }
                _ => {
                    err!("Answer y or n: ");
                    let _ = std::io::stderr().flush();
                }
            }
        }
    });
}
