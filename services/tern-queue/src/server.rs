//! Starting a queue node: the Enqueue API, the delivery workers, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tern_proto::client::StoreClient;
use tern_proto::queue::v1::queue_server::QueueServer;
use tern_proto::tls::ClusterTls;
use tern_telemetry::Health;
use tern_trust::Role;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::QueueApi;
use crate::config::QueueConfig;
use crate::worker::Worker;

/// A running queue node.
pub struct Running {
    /// Bound gRPC address, if the API is on.
    pub grpc: Option<SocketAddr>,
    /// Bound metrics/health address.
    pub metrics: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The API server, which stops gracefully (requests in progress complete).
    api: Option<JoinHandle<()>>,
    worker: Option<(Arc<Worker>, JoinHandle<()>)>,
    drain_time: Duration,
}

impl Running {
    /// Stops leasing new entries and the API; deliveries in flight end with the process (their
    /// leases expire and another worker retries them).
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks.into_iter().chain(self.api) {
            t.abort();
        }
        if let Some((_, run)) = self.worker {
            run.abort();
        }
    }

    /// The clean stop (SIGTERM): the worker stops leasing and the API stops accepting;
    /// Enqueue calls in progress complete, and so do delivery attempts in flight, each
    /// recording its outcome, so a scale-down never makes another worker send again what
    /// a remote server already accepted. Waits up to the configured drain time; returns
    /// the attempts still running then (their leases expire and another worker retries).
    pub async fn shutdown(self) -> usize {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.drain_time;
        let mut left = 0;
        if let Some((worker, run)) = self.worker {
            // The lease loop returns once its current Lease call has been answered and
            // the entries it got have been started.
            let _ = tokio::time::timeout_at(deadline, run).await;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !worker.drain(remaining).await {
                left = worker.attempts_in_flight();
            }
        }
        if let Some(api) = self.api {
            let _ = tokio::time::timeout_at(deadline, api).await;
        }
        for t in self.tasks {
            t.abort();
        }
        left
    }
}

fn load_roots(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// Binds the listeners and starts the API and the workers.
pub async fn start(config: QueueConfig) -> anyhow::Result<Running> {
    config.validate()?;
    let drain_time = Duration::from_secs(config.drain_secs);
    let tls = ClusterTls::load_as(&tern_trust::pki::CertFiles::of(&config), Role::Queue)
        .context("cluster TLS")?;
    let store = StoreClient::new(&config.store, Duration::from_secs(15), &tls, Role::Store)
        .context("store addresses")?;
    let metrics_listener = TcpListener::bind(&config.metrics_listen)
        .await
        .with_context(|| format!("binding metrics to {}", config.metrics_listen))?;
    let grpc_listener = if config.listen.is_empty() {
        None
    } else {
        Some(
            TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("binding the queue API to {}", config.listen))?,
        )
    };
    let grpc = grpc_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let metrics = metrics_listener.local_addr()?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut api_task = None;
    let mut worker_task = None;
    crate::metrics::register();
    // Ready while a store quorum answers (tern_proto::client::follow_store_quorum).
    tasks.extend(tern_proto::client::spawn_health(
        store.clone(),
        Health::default(),
        metrics_listener,
    ));
    if let Some(listener) = grpc_listener {
        let (_reporter, health_service) = tern_telemetry::tonic_health::server::health_reporter();
        let api = QueueApi {
            store: store.clone(),
            budget: crate::budget::EnqueueBudget::new(
                config.enqueue_memory_mb,
                Duration::from_millis(config.enqueue_wait_ms),
            ),
        };
        let server = tls
            .server()
            .add_service(health_service)
            .add_service(
                QueueServer::new(api).max_decoding_message_size(crate::api::MAX_MESSAGE as usize),
            )
            .serve_with_incoming_shutdown(tls.incoming(listener), {
                let mut stopping = stop_rx.clone();
                async move {
                    let _ = stopping.wait_for(|s| *s).await;
                }
            });
        api_task = Some(tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "queue API server failed");
            }
        }));
    }
    if config.workers {
        let roots = match &config.tls_ca_file {
            Some(p) => load_roots(p)?,
            None => Vec::new(),
        };
        let id = config.worker_id.clone().unwrap_or_else(|| {
            format!(
                "{}-{}-{:08x}",
                config.hostname,
                std::process::id(),
                rand::random::<u32>()
            )
        });
        let config = Arc::new(config.clone());
        let worker = Arc::new(Worker::new(store.clone(), config, id.clone(), roots)?);
        tracing::info!(worker = %id, "delivery worker started");
        let run = tokio::spawn(worker.clone().run(stop_rx));
        worker_task = Some((worker, run));
    }
    if let Some(path) = &config.addr_file {
        let mut text = String::new();
        if let Some(a) = grpc {
            text.push_str(&format!("grpc={a}\n"));
        }
        text.push_str(&format!("metrics={metrics}\n"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(grpc = ?grpc, %metrics, store = ?config.store, "queue node started");
    Ok(Running {
        grpc,
        metrics,
        stop,
        tasks,
        api: api_task,
        worker: worker_task,
        drain_time,
    })
}
