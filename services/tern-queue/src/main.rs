//! The tern-queue binary: parse settings, start the API and workers, stop on SIGINT/SIGTERM.

use clap::Parser;
use tern_queue::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    let _telemetry = tern_telemetry::init("tern-queue", config.log_format.parse()?)?;
    let running = tern_queue::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down");
    running.stop();
    Ok(())
}
