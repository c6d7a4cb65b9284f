//! The tern-controller binary: parse flags, then either run the membership controller
//! (with /metrics and health) until SIGINT/SIGTERM, or act as a store pod's preStop hook.

use std::process::ExitCode;

use clap::Parser;
use tern_controller::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run(args) => {
            let _telemetry = tern_telemetry::init("tern-controller", args.log_format)?;
            let client = kube::Client::try_default().await?;
            let namespace = std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let settings = args.settings(&namespace);
            let listener = tokio::net::TcpListener::bind(args.metrics_listen).await?;
            tracing::info!(metrics = %listener.local_addr()?, ?settings, "tern-controller starting");
            let health = tern_telemetry::Health::default();
            let http = tern_telemetry::serve_http(listener, health.clone());
            tokio::select! {
                r = tern_controller::controller::run(client, settings, health) => r?,
                r = http => r?,
                r = tern_telemetry::shutdown_signal() => {
                    r?;
                    tracing::info!("shutting down");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::WaitRemoved(args) => {
            let _telemetry = tern_telemetry::init("tern-controller", args.log_format)?;
            let client = kube::Client::try_default().await?;
            let outcome = tern_controller::prestop::wait_removed(client, &args.settings()).await;
            tracing::info!(?outcome, "wait-removed finished");
            Ok(if outcome.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
