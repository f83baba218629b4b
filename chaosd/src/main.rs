//! `chaosd [--config FILE]`: reads and checks the configuration (exit 64 when it is wrong), binds,
//! and serves [`chaosd::service::run`] until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use chaosd::service::{self, Args, EXIT_CONFIG};
use clap::Parser;

fn main() -> ExitCode {
    let args = Args::parse();
    agent::logging::init(tracing::level_filters::LevelFilter::INFO);
    // Configuration first, before any runtime or socket.
    let config = match args.resolve() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("chaosd: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A connection to every agent a run talks to, at once.
    if let Err(err) = chaosd::open_files::raise() {
        tracing::warn!("{err}; runs with many agents may fail with \"Too many open files\"");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chaosd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chaosd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: service::Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to bind {listen}"))?;
    service::run(listener, config, service::shutdown_signal()).await?;
    Ok(())
}
