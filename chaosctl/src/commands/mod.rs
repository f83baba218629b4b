//! One module per command. Each returns the process's exit code; errors are printed here, once,
//! with their whole context chain.

mod agents;
pub mod answer;
mod certs;
mod diff;
mod import;
mod init;
mod monkey;
mod plan;
mod remote;
mod report;
mod revert;
mod run;
mod runs;
mod schedule;
mod validate;

use std::collections::BTreeMap;

use crate::args::{Args, Command, LoadArgs};

/// Exit codes shared by every command but `run`, whose codes follow its verdict.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 2;
pub const EXIT_FAILED: u8 = 5;

/// Why a command failed: the user's input (2) or the work itself (5).
pub enum Failure {
    Invalid(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::Failed(err)
    }
}

impl From<chaosd::store::StoreError> for Failure {
    fn from(err: chaosd::store::StoreError) -> Failure {
        Failure::Failed(err.into())
    }
}

pub async fn dispatch(args: Args) -> u8 {
    let state_dir = args.state_dir.clone();
    let server = remote::Server::from_args(&args);
    let result = match (args.command, server) {
        (Command::Schedule { action }, server) => schedule::run(action, server).await,
        (
            Command::Diff {
                run_a,
                run_b,
                format,
                output,
            },
            Some(server),
        ) => diff::remote(&server, [&run_a, &run_b], format, output.as_deref()).await,
        (
            command @ (Command::Run(_)
            | Command::Monkey(_)
            | Command::Runs { .. }
            | Command::Report { .. }
            | Command::Abort { .. }
            | Command::Confirm { .. }
            | Command::Refuse { .. }
            | Command::Halt
            | Command::Resume),
            Some(server),
        ) => remote::dispatch(command, server).await,
        (Command::Abort { .. } | Command::Halt | Command::Resume, None) => {
            Err(Failure::Invalid(anyhow::anyhow!(
                "chaosctl: `abort`, `halt` and `resume` talk to a chaosd server: pass --server URL or set CHAOSD_URL"
            )))
        }
        (command, _) => local(command, state_dir).await,
    };
    match result {
        Ok(code) => code,
        Err(Failure::Invalid(err)) => {
            errln!("{err:#}");
            EXIT_INVALID
        }
        Err(Failure::Failed(err)) => {
            errln!("chaosctl: {err:#}");
            EXIT_FAILED
        }
    }
}

/// The commands done here, in-process.
async fn local(command: Command, state_dir: Option<std::path::PathBuf>) -> Result<u8, Failure> {
    match command {
        Command::Validate { files, load } => validate::run(&files, &load),
        Command::Schema => {
            out!("{}", chaosd::scenario::schema::scenario_schema_json());
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            let shell = match shell {
                crate::args::CompletionShell::Bash => clap_complete::Shell::Bash,
                crate::args::CompletionShell::Zsh => clap_complete::Shell::Zsh,
                crate::args::CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut command = <crate::args::Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "chaosctl", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(EXIT_OK)
        }
        Command::Man { program } => {
            use clap::CommandFactory;
            let (command, section) = match program {
                crate::args::ManPage::Chaosctl => (crate::args::Args::command(), "1"),
                crate::args::ManPage::Chaosd => (chaosd::service::Args::command(), "8"),
                crate::args::ManPage::ChaosAgent => (agent::server::Args::command(), "8"),
            };
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .section(section)
                .render(&mut page)
                .map_err(|err| anyhow::anyhow!("cannot write the man page: {err}"))?;
            out!("{}", String::from_utf8_lossy(&page));
            Ok(EXIT_OK)
        }
        Command::Init {
            url,
            process,
            output,
            force,
        } => init::run(&url, &process, output.as_deref(), force),
        Command::Import {
            from:
                crate::args::ImportFrom::Chaostoolkit {
                    file,
                    output,
                    force,
                    partial,
                },
        } => import::chaostoolkit(&file, output.as_deref(), force, partial),
        Command::Plan {
            file,
            load,
            seed,
            output,
        } => plan::run(&file, &load, seed, output),
        Command::Run(run_args) => run::run(run_args, state_dir.as_deref()).await,
        Command::Runs { limit, output } => runs::run(state_dir.as_deref(), limit, output),
        Command::Report {
            run,
            format,
            output,
        } => report::run(state_dir.as_deref(), &run, format, output.as_deref()),
        Command::Diff {
            run_a,
            run_b,
            format,
            output,
        } => diff::run(
            state_dir.as_deref(),
            [&run_a, &run_b],
            format,
            output.as_deref(),
        ),
        Command::Revert { all: _, load } => revert::run(state_dir.as_deref(), &load).await,
        Command::Agents { load, output } => agents::run(&load, output).await,
        Command::Monkey(monkey_args) => monkey::run(monkey_args, state_dir.as_deref()).await,
        Command::Certs { action } => certs::run(action),
        Command::Confirm { run, by } => {
            answer::local(state_dir.as_deref(), &run, true, by, None).await
        }
        Command::Refuse { run, reason, by } => {
            answer::local(state_dir.as_deref(), &run, false, by, reason).await
        }
        Command::Abort { .. } | Command::Halt | Command::Resume | Command::Schedule { .. } => {
            unreachable!("sent to the server by `dispatch`")
        }
    }
}

/// Load options from the command line.
pub fn load_options(load: &LoadArgs) -> chaosd::scenario::LoadOptions {
    chaosd::scenario::LoadOptions {
        vars: load.vars.iter().cloned().collect::<BTreeMap<_, _>>(),
        inventory: load.inventory.clone(),
        client_cert: None,
    }
}

/// Loads a scenario, or a `Failure::Invalid` whose message points into the file.
pub fn load_scenario(
    file: &std::path::Path,
    load: &LoadArgs,
) -> Result<chaosd::scenario::model::Scenario, Failure> {
    chaosd::scenario::load(file, &load_options(load))
        .map_err(|err| Failure::Invalid(anyhow::anyhow!("{err}")))
}

/// Writes `text` to `path`, which must not exist unless `force`.
pub(crate) fn write_new(path: &std::path::Path, text: &str, force: bool) -> Result<(), Failure> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    if force {
        open.create(true).truncate(true);
    } else {
        // Refused by the kernel when the file exists, so no check-then-write race either.
        open.create_new(true);
    }
    let mut f = match open.open(path) {
        Ok(f) => f,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::Invalid(anyhow::anyhow!(
                "chaosctl: `{}` exists; pass --force to overwrite it, or -o another file",
                path.display()
            )));
        }
        Err(err) => {
            return Err(Failure::Failed(
                anyhow::anyhow!(err).context(format!("cannot write `{}`", path.display())),
            ));
        }
    };
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|err| {
        anyhow::anyhow!(err).context(format!("cannot write `{}`", path.display()))
    })?;
    Ok(())
}
