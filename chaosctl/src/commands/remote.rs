//! `chaosctl --server URL ...`: `run`, `runs`, `report`, `abort`, `halt` and `resume` sent to a
//! chaosd server. `run` submits the file's text, then follows the run's event stream with the same
//! live progress, summary and exit code as a local run; Ctrl-C asks the server to abort the run and
//! keeps following until it has ended.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use chaosd::engine::live::Observer;
use chaosd::service::api::{StreamLine, SubmitRequest};
use chaosd::service::client::{ClientError, ServiceClient, TOKEN_ENV};
use tokio::signal::unix::{SignalKind, signal};

use super::report::{emit, format_name};
use super::run::{Kind, confirm, show_result, wrong_kind};
use super::{EXIT_FAILED, EXIT_OK, Failure, load_scenario};
use crate::args::{Args, Command, LaunchArgs, LoadArgs, MonkeyArgs, Output, RunArgs};
use crate::output;

/// `--server`, `--token-file`, `--ca-file` as given.
pub struct Server {
    /// One URL, or several chaosd instances sharing a store (comma-separated): the first that
    /// answers is used.
    urls: Vec<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

impl Server {
    /// `None` without `--server` (nor `CHAOSD_URL`).
    pub fn from_args(args: &Args) -> Option<Server> {
        let urls: Vec<String> = args
            .server
            .as_deref()?
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return None;
        }
        Some(Server {
            urls,
            token_file: args.token_file.clone(),
            ca_file: args.ca_file.clone(),
        })
    }

    pub(super) async fn client(&self) -> Result<ServiceClient, Failure> {
        let token = match &self.token_file {
            // The first token: the file may list the next ones while chaosd's token rotates.
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file `{}`", path.display()))
                .map_err(Failure::Invalid)
                .and_then(|text| {
                    agent::http::auth::first_token(&text).ok_or_else(|| {
                        Failure::Invalid(anyhow!(
                            "chaosctl: the token file `{}` holds no token (only blank lines and `#` comments); put chaosd's token in it",
                            path.display()
                        ))
                    })
                })?,
            None => std::env::var(TOKEN_ENV).map_err(|_| {
                Failure::Invalid(anyhow!(
                    "chaosctl: no token for {}: pass --token-file F or set {TOKEN_ENV}",
                    self.urls.join(", ")
                ))
            })?,
        };
        ServiceClient::first_answering(&self.urls, &token, self.ca_file.as_deref())
            .await
            .map_err(|e| match e {
                ClientError::Setup(_) => Failure::Invalid(anyhow!("chaosctl: {e}")),
                other => Failure::Failed(anyhow!("chaosctl: {other}")),
            })
    }
}

/// A refusal of the user's input (400, 403, 404, 413) exits 2; anything else 5.
pub(super) fn failure(err: ClientError) -> Failure {
    match err.status() {
        Some(400 | 403 | 404 | 413) => Failure::Invalid(match &err {
            // The scenario's own rendering (`FILE:LINE:COL` and carets) stands alone.
            ClientError::Refused { error, .. } if error.code == "invalid_scenario" => {
                anyhow!("{}", error.message)
            }
            _ => anyhow!("chaosctl: {err}"),
        }),
        _ => Failure::Failed(anyhow!(err)),
    }
}

pub async fn dispatch(command: Command, server: Server) -> Result<u8, Failure> {
    let client = server.client().await?;
    match command {
        Command::Run(args) => run(&client, args).await,
        Command::Monkey(args) => monkey(&client, args).await,
        Command::Runs { limit, output } => {
            let list = client.runs(limit).await.map_err(failure)?;
            super::runs::print(&list.runs, output);
            Ok(EXIT_OK)
        }
        Command::Report {
            run,
            format,
            output,
        } => {
            let text = client
                .report(&run, format_name(format))
                .await
                .map_err(failure)?;
            emit(&text, output.as_deref())?;
            Ok(EXIT_OK)
        }
        Command::Abort { run } => {
            let answer = client.abort(&run).await.map_err(failure)?;
            if answer.aborted {
                errln!(
                    "chaosctl: asked chaosd to abort run {}; its faults are being reverted",
                    answer.run_id
                );
            } else {
                errln!("chaosctl: run {} was already aborting", answer.run_id);
            }
            Ok(EXIT_OK)
        }
        Command::Confirm { run, by } => {
            let req = chaosd::service::api::AnswerRequest {
                by: Some(by.unwrap_or_else(super::answer::user_name)),
                reason: None,
                step: None,
            };
            let answer = client.answer(&run, true, &req).await.map_err(failure)?;
            errln!(
                "chaosctl: confirmed step {} `{}` of run {}; the run goes on",
                answer.step + 1,
                answer.step_name,
                answer.run_id
            );
            Ok(EXIT_OK)
        }
        Command::Refuse { run, reason, by } => {
            let req = chaosd::service::api::AnswerRequest {
                by: Some(by.unwrap_or_else(super::answer::user_name)),
                reason,
                step: None,
            };
            let answer = client.answer(&run, false, &req).await.map_err(failure)?;
            errln!(
                "chaosctl: refused step {} `{}` of run {}; it ends deviated",
                answer.step + 1,
                answer.step_name,
                answer.run_id
            );
            Ok(EXIT_OK)
        }
        Command::Halt => {
            let answer = client.halt().await.map_err(failure)?;
            if answer.aborted.is_empty() {
                errln!(
                    "chaosctl: chaosd halted; no run was going on; new runs are refused until `chaosctl resume`"
                );
            } else {
                errln!(
                    "chaosctl: chaosd halted; aborting {}; new runs are refused until `chaosctl resume`",
                    answer.aborted.join(", ")
                );
            }
            Ok(EXIT_OK)
        }
        Command::Resume => {
            client.resume().await.map_err(failure)?;
            errln!("chaosctl: chaosd accepts runs again");
            Ok(EXIT_OK)
        }
        _ => unreachable!("only server commands are sent here"),
    }
}

/// Submits the file and follows the run to its end; the exit code is the report's.
async fn run(client: &ServiceClient, args: RunArgs) -> Result<u8, Failure> {
    let mut request = submission(&args.file, &args.load, &args.launch)?;
    request.seed = args.seed;
    request.dry_run = args.dry_run;
    if !args.launch.yes && !args.dry_run && std::io::stdin().is_terminal() {
        // The plan as this machine reads the file; the server checks it again. The seed shown
        // is sent, so the server makes the picks shown.
        if let Ok(scenario) = load_scenario(&args.file, &args.load) {
            let origin = super::plan::SeedOrigin::of(args.seed, &scenario, true);
            let chosen = chaosd::engine::plan::choose_seed(args.seed, &scenario);
            request.seed = Some(chosen);
            let plan = chaosd::engine::plan::Plan::resolve(&scenario, chosen);
            err!(
                "{}",
                super::plan::render(&scenario, &plan, origin, super::plan::LocalHost::OnServer)
            );
        }
        if !confirm(&format!("\nRun this on {}? [y/N] ", client.url())).await {
            errln!("chaosctl: not submitted; nothing was injected");
            return Ok(EXIT_OK);
        }
    }
    submit_and_follow(client, &request, args.launch.output).await
}

/// `chaosctl --server URL monkey FILE`: the monkey runs on chaosd; chaosctl follows it.
pub async fn monkey(client: &ServiceClient, args: MonkeyArgs) -> Result<u8, Failure> {
    let mut request = submission(&args.file, &args.load, &args.launch)?;
    request.seed = args.seed;
    request.run_for_ms = args.run_for.map(|d| d.as_millis() as u64);
    // The server checks the file again; a steps file is refused here with the local message.
    if let Ok(scenario) = load_scenario(&args.file, &args.load)
        && scenario.monkey.is_none()
    {
        return Err(wrong_kind(&args.file, Kind::Monkey));
    }
    if !args.launch.yes
        && std::io::stdin().is_terminal()
        && !confirm(&format!("\nStart this monkey on {}? [y/N] ", client.url())).await
    {
        errln!("chaosctl: not submitted; nothing was injected");
        return Ok(EXIT_OK);
    }
    submit_and_follow(client, &request, args.launch.output).await
}

/// What `run` and `monkey` send alike: the file's text, its variables and the labels; the
/// inventory is chaosd's own.
fn submission(file: &Path, load: &LoadArgs, launch: &LaunchArgs) -> Result<SubmitRequest, Failure> {
    if load.inventory.is_some() {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: --inventory is chaosd's own with --server (`inventory:` in its configuration); leave it out"
        )));
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))
        .map_err(Failure::Invalid)?;
    Ok(SubmitRequest {
        scenario: text,
        file: Some(file.display().to_string()),
        vars: load.vars.iter().cloned().collect(),
        labels: launch.labels.iter().cloned().collect(),
        seed: None,
        dry_run: false,
        run_for_ms: None,
    })
}

/// Submits a run, follows it to its end (Ctrl-C asks chaosd to abort it) and returns the
/// report's exit code.
async fn submit_and_follow(
    client: &ServiceClient,
    request: &SubmitRequest,
    output: Output,
) -> Result<u8, Failure> {
    let submitted = client.submit(request).await.map_err(failure)?;
    let run_id = submitted.run_id;
    if output == Output::Text {
        errln!("chaosctl: run {run_id} started on {}", client.url());
    }
    let aborting = Arc::new(AtomicBool::new(false));
    let signals = abort_on_signals(client.clone(), run_id.clone(), Arc::clone(&aborting))?;
    let result = follow(client, &run_id, output).await;
    signals.abort();
    let (report, report_dir) = result?;
    let Some(report) = report else {
        errln!(
            "chaosctl: run {run_id} ended without a report (chaosd died during it: interrupted)"
        );
        return Ok(EXIT_FAILED);
    };
    let report_dir = report_dir.unwrap_or_default();
    show_result(&report, &report_dir, output);
    if output == Output::Text {
        outln!("{report_dir}");
    }
    Ok(report.exit_code())
}

type Ended = (Option<chaosd::report::model::Report>, Option<String>);

/// Reads the event stream into the observer until its `end` line.
async fn follow(client: &ServiceClient, run_id: &str, out: Output) -> Result<Ended, Failure> {
    let observer: Box<dyn Observer> = output::observer(out);
    let mut stream = client.events(run_id).await.map_err(failure)?;
    let terminal = std::io::stdin().is_terminal();
    while let Some(line) = stream.next().await {
        match line.map_err(|e| Failure::Failed(anyhow!(e)))? {
            StreamLine::Event(event) => {
                observer.event(&event);
                // A `manual` step is asked on this terminal too; the answer goes to chaosd,
                // which takes the first one from anywhere.
                if terminal && event.kind == "manual_waiting" {
                    answer_from_terminal(client.clone(), run_id.to_string(), &event.fields);
                }
            }
            StreamLine::Status { status } => {
                if observer.wants_status()
                    && let Some(status) = status.to_status()
                {
                    observer.status(&status);
                }
            }
            StreamLine::End {
                report, report_dir, ..
            } => {
                drop(observer);
                return Ok((report.map(|r| *r), report_dir));
            }
        }
    }
    drop(observer);
    Err(Failure::Failed(anyhow!(
        "the event stream of run {run_id} ended early; `chaosctl --server {} report {run_id}` shows the result once the run is over",
        client.url()
    )))
}

/// Asks a waiting `manual` step's question on the terminal and sends the answer to chaosd.
fn answer_from_terminal(
    client: ServiceClient,
    run_id: String,
    fields: &serde_json::Map<String, serde_json::Value>,
) {
    let Some(step) = fields.get("index").and_then(|i| i.as_u64()) else {
        return;
    };
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    super::answer::ask_on_terminal(step as usize, &text("step"), &text("prompt"), &run_id, tx);
    tokio::spawn(async move {
        let Some((_, confirmed, reason)) = rx.recv().await else {
            return;
        };
        let req = chaosd::service::api::AnswerRequest {
            by: Some(super::answer::user_name()),
            reason,
            step: Some(step as usize),
        };
        if let Err(err) = client.answer(&run_id, confirmed, &req).await {
            errln!("chaosctl: your answer was not taken: {err}");
        }
    });
}

/// Ctrl-C, SIGTERM and SIGHUP ask chaosd to abort the run; chaosctl keeps following it.
fn abort_on_signals(
    client: ServiceClient,
    run_id: String,
    aborting: Arc<AtomicBool>,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT (Ctrl-C)",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            if aborting.swap(true, Ordering::SeqCst) {
                errln!(
                    "\nchaosctl: {name} again: chaosd is still reverting; following the run until it ends"
                );
                continue;
            }
            errln!(
                "\nchaosctl: {name}: asking chaosd to abort run {run_id}; following it until every fault is reverted"
            );
            if let Err(err) = client.abort(&run_id).await {
                errln!("chaosctl: could not ask chaosd to abort: {err}");
                aborting.store(false, Ordering::SeqCst);
            }
        }
    }))
}
