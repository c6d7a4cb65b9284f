//! The tern-smtp binary: parse settings, start the listeners, stop on SIGINT/SIGTERM.

use clap::Parser;
use tern_smtp::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    let _telemetry = tern_telemetry::init("tern-smtp", config.log_format.parse()?)?;
    let running = tern_smtp::server::start(config).await?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    running.stop();
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
