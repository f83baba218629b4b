//! `chaos-agent`: parses the command line, checks the configuration (exit 64 when it is bad),
//! binds, and hands over to `agent::server::run` until SIGTERM or SIGINT.

use std::process::ExitCode;

use agent::server::{self, Args, EXIT_CONFIG};
use clap::Parser;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    agent::logging::init(tracing::level_filters::LevelFilter::INFO);
    let config = match args.resolve() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("chaos-agent: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chaos-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("chaos-agent: failed to bind {}: {err}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        match server::run(listener, config, agent::http::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("chaos-agent: {err}");
                ExitCode::FAILURE
            }
        }
    })
}
