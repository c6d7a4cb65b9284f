//! The tern-store binary: parse settings, start the node, stop cleanly on SIGINT/SIGTERM.

use tern_store::config::StoreConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = tern_config::load::<StoreConfig>()?;
    let _telemetry = tern_telemetry::init("tern-store", config.log_format.parse()?)?;
    let running = tern_store::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down");
    running.stop().await
}
