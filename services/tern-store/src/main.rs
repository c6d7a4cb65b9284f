//! The tern-store binary: parse settings, start the node, stop cleanly on SIGINT/SIGTERM.

use clap::Parser;
use tern_store::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    let _telemetry = tern_telemetry::init("tern-store", config.log_format.parse()?)?;
    let running = tern_store::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down");
    running.stop().await
}
