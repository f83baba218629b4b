//! `chaosctl`: run game days on this machine (the built-in `local` agent) and read their history.
//! This binary only parses arguments and maps outcomes to exit codes; the work is in `commands`.

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;
mod args;
mod commands;
mod state;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::parse();
    agent::logging::init(tracing::level_filters::LevelFilter::WARN);
    // A run keeps a connection to every agent it talks to, at once.
    if let Err(err) = chaosd::open_files::raise() {
        tracing::warn!("{err}; runs with many agents may fail with \"Too many open files\"");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            errln!("chaosctl: cannot start the async runtime: {err}");
            return ExitCode::from(5);
        }
    };
    let mut code = runtime.block_on(commands::dispatch(args));
    if let Some(err) = output::stdout_failure() {
        errln!("chaosctl: cannot write to standard output: {err}");
        if code == commands::EXIT_OK {
            code = commands::EXIT_FAILED;
        }
    }
    // Background tasks (samplers, the agent's timers) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}
