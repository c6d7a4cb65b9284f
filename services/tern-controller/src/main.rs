//! The tern-controller binary: parse flags, then run the membership controller (with
//! /metrics and health) until SIGINT/SIGTERM, act as a store pod's preStop hook, or make
//! the Helm chart's cluster certificates.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tern_controller::cli::{Cli, Command};
use tern_proto::tls::ClusterTls;
use tern_trust::Role;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Run(args) => {
            let _telemetry = tern_telemetry::init("tern-controller", args.log_format)?;
            // Refuses to start with another role's certificate: the store would deny its
            // membership changes anyway, with a less helpful message.
            let tls = ClusterTls::load_as(&args.cluster_tls.files(), Role::Controller)
                .context("cluster TLS (--cluster-ca, --cluster-cert, --cluster-key)")?;
            let client = kube::Client::try_default().await?;
            let namespace = std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let settings = args.settings(&namespace);
            let listener = tokio::net::TcpListener::bind(args.metrics_listen).await?;
            tracing::info!(
                metrics = %listener.local_addr()?,
                identity = %tls.identity(),
                ?settings,
                "tern-controller starting"
            );
            let health = tern_telemetry::Health::default();
            let http = tern_telemetry::serve_http(listener, health.clone());
            tokio::select! {
                r = tern_controller::controller::run(client, settings, tls, health) => r?,
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
            // Whatever role the certificate names (the store pod's own): every role may read
            // the cluster status.
            let tls = match ClusterTls::load(&args.cluster_tls.files()) {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::error!(error = %e, "cluster TLS: cannot read the membership");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let client = kube::Client::try_default().await?;
            let outcome =
                tern_controller::prestop::wait_removed(client, tls, &args.settings()).await;
            tracing::info!(?outcome, "wait-removed finished");
            Ok(if outcome.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Pki(args) => {
            let _telemetry = tern_telemetry::init("tern-controller", args.log_format)?;
            let settings = args.settings();
            let client = kube::Client::try_default().await?;
            let done = tern_controller::pki::run(client, &settings).await?;
            for (secret, outcome) in done {
                tracing::info!(namespace = %settings.namespace, %secret, ?outcome, "cluster TLS Secret");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
