//! `chaosctl`: run game days on this machine (the built-in `local` agent) and read their history.
//! This binary only parses arguments and maps outcomes to exit codes; the work is in `commands`.

mod args;
mod commands;
mod output;
mod state;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chaosctl: cannot start the async runtime: {err}");
            return ExitCode::from(5);
        }
    };
    let code = runtime.block_on(commands::dispatch(args));
    // Background tasks (samplers, the agent's timers) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}
