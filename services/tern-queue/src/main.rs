//! The tern-queue binary: parse settings, start the API and workers, drain and stop on SIGINT/SIGTERM.

use tern_queue::config::QueueConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = tern_config::load::<QueueConfig>()?;
    let _telemetry = tern_telemetry::init("tern-queue", config.log_format.parse()?)?;
    let running = tern_queue::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down: finishing delivery attempts in flight");
    let left = running.shutdown().await;
    tracing::info!(attempts_cut = left, "stopped");
    Ok(())
}
