//! The tern-access binary: parse settings, start the listeners, drain and stop on SIGINT/SIGTERM.
//! `tern-access dev-cert DIR` writes the self-signed development certificate instead.

use tern_access::config::AccessConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("dev-cert") {
        let dir = argv
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("usage: tern-access dev-cert DIR"))?;
        let (cert, key) = tern_net::tls::ensure_dev_certificate(
            std::path::Path::new(dir),
            &["localhost", "127.0.0.1"],
        )?;
        println!("{}\n{}", cert.display(), key.display());
        return Ok(());
    }
    let config = tern_config::load::<AccessConfig>()?;
    let _telemetry = tern_telemetry::init("tern-access", config.log_format.parse()?)?;
    let running = tern_access::server::start(config).await?;
    tern_telemetry::shutdown_signal().await?;
    tracing::info!("shutting down: draining sessions");
    let left = running.serving.shutdown().await;
    tracing::info!(sessions_cut = left, "stopped");
    Ok(())
}
