//! The tern-smtp binary: parse settings, start the listeners, drain and stop on SIGINT/SIGTERM.

use tern_smtp::config::SmtpConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = tern_config::load::<SmtpConfig>()?;
    let _telemetry = tern_telemetry::init("tern-smtp", config.log_format.parse()?)?;
    let running = tern_smtp::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down: draining sessions");
    let left = running.serving.shutdown().await;
    tracing::info!(sessions_cut = left, "stopped");
    Ok(())
}
