//! The tern-smtp binary: parse settings, start the listeners, stop on SIGINT/SIGTERM.

use clap::Parser;
use tern_smtp::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    let _telemetry = tern_telemetry::init("tern-smtp", config.log_format.parse()?)?;
    let running = tern_smtp::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down");
    running.stop();
    Ok(())
}
