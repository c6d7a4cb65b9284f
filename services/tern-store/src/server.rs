//! Starting a node: storage, Raft, the gRPC server, health and metrics, bootstrap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::{Config, SnapshotPolicy};
use prometheus::{IntCounter, IntGauge};
use tern_proto::raft::v1::raft_server::RaftServer;
use tern_proto::store::v1::{
    admin_server::AdminServer, directory_server::DirectoryServer,
    mailboxes_server::MailboxesServer, messages_server::MessagesServer, queue_server::QueueServer,
    watch_server::WatchServer,
};
use tern_proto::tls::ClusterTls;
use tern_telemetry::tonic_health::ServingStatus;
use tern_telemetry::Health;
use tern_trust::Role;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::api::{
    self, admin::AdminApi, directory::DirectoryApi, mailboxes::MailboxesApi, messages::MessagesApi,
};
use crate::api::{queue::QueueApi, raft::RaftApi, watch::WatchApi, MAX_GRPC_MESSAGE};
use crate::config::{parse_members, StoreConfig};
use crate::log_store::LogStore;
use crate::network::{Channels, Network, MAX_RAFT_MESSAGE};
use crate::node::Node;
use crate::state_machine::StateMachine;
use crate::types::Raft;

/// A node that is serving.
pub struct Running {
    /// The node.
    pub node: Arc<Node>,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound metrics/health address.
    pub metrics_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    /// Stops serving and shuts Raft down.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.node.directory.close();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.node
            .raft
            .shutdown()
            .await
            .map_err(|e| anyhow::anyhow!("raft shutdown: {e}"))?;
        Ok(())
    }
}

fn raft_config(c: &StoreConfig) -> anyhow::Result<Arc<Config>> {
    let config = Config {
        cluster_name: "tern".into(),
        heartbeat_interval: c.heartbeat_ms,
        election_timeout_min: c.election_timeout_ms,
        election_timeout_max: c.election_timeout_max(),
        install_snapshot_timeout: 5_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_logs),
        max_in_snapshot_log_to_keep: 100,
        // openraft 0.9 gives each AppendEntries one heartbeat interval to complete: keep
        // payloads small. The log reader bounds them in bytes (log_store::MAX_APPEND_BYTES);
        // this bounds the count of small entries.
        max_payload_entries: 64,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().context("raft config")?))
}

/// Opens storage, starts Raft and serves the API until [`Running::stop`].
pub async fn start(config: StoreConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = crate::db::open(&config.data_dir.join("db"))?;
    crate::db::check_format(&db)
        .with_context(|| format!("data directory {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let grpc_addr = listener.local_addr()?;
    let metrics_listener = TcpListener::bind(&config.metrics_listen)
        .await
        .with_context(|| format!("binding {}", config.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;

    let (applied_tx, applied_rx) = watch::channel(crate::state_machine::Applied::default());
    let state_lock = crate::state_machine::StateLock::default();
    // The production engine; the state machine and the local reads share it.
    let engine: Arc<dyn crate::engine::Engine> =
        Arc::new(crate::engine::RocksEngine::new(db.clone()));
    let state = crate::engine::LocalState::new(engine.clone(), state_lock.clone());
    let directory = Arc::new(crate::directory_feed::DirectoryFeed::new());
    let sm = StateMachine::open(
        engine,
        config.data_dir.join("snapshots"),
        Arc::new(applied_tx),
        directory.clone(),
        state_lock.clone(),
    )?;
    let tls = ClusterTls::load_as(&tern_trust::pki::CertFiles::of(&config), Role::Store)
        .context("cluster TLS")?;
    let network = Network {
        channels: Channels::new(tls.clone()),
    };
    let channels = network.channels.clone();
    let raft = Raft::new(
        config.id,
        raft_config(&config)?,
        network,
        LogStore::new(db.clone()),
        sm,
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting raft: {e}"))?;
    let node = Node::new(
        config.id,
        raft,
        state,
        db,
        channels,
        crate::node::Feeds {
            applied: applied_rx,
            directory,
        },
        config.clone(),
    );

    let health = Health::default();
    let (reporter, health_service) = tern_telemetry::tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    tokio::spawn(watch_health(node.clone(), health.clone(), reporter));
    let http_health = health.clone();
    tokio::spawn(async move {
        if let Err(e) = tern_telemetry::serve_http(metrics_listener, http_health).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    let a = api::api(node.clone())?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tls
        .server()
        .add_service(health_service)
        .add_service(
            RaftServer::new(RaftApi(node.clone()))
                .max_decoding_message_size(MAX_RAFT_MESSAGE)
                .max_encoding_message_size(MAX_RAFT_MESSAGE),
        )
        .add_service(DirectoryServer::new(DirectoryApi(a.clone())))
        .add_service(tern_proto::store::v1::locks_server::LocksServer::new(
            crate::api::locks::LocksApi(a.clone()),
        ))
        .add_service(MailboxesServer::new(MailboxesApi(a.clone())))
        .add_service(
            MessagesServer::new(MessagesApi(a.clone())).max_decoding_message_size(MAX_GRPC_MESSAGE),
        )
        .add_service(
            QueueServer::new(QueueApi(a.clone())).max_decoding_message_size(MAX_GRPC_MESSAGE),
        )
        .add_service(WatchServer::new(WatchApi(a.clone())))
        .add_service(tern_proto::store::v1::backups_server::BackupsServer::new(
            crate::api::backups::BackupsApi(a.clone()),
        ))
        .add_service(AdminServer::new(AdminApi(a)))
        .serve_with_incoming_shutdown(
            // Every connection is mutual TLS (no plaintext), accepted with TCP_NODELAY.
            tls.incoming(listener),
            async {
                let _ = shutdown_rx.await;
            },
        );
    let server = tokio::spawn(server);

    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| grpc_addr.to_string());
    if let Some(path) = &config.addr_file {
        let text = format!("grpc={grpc_addr}\nmetrics={metrics_addr}\nadvertise={advertise}\n");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)?;
    }
    crate::metrics::register();
    tokio::spawn(crate::metrics::sample_forever(node.clone()));
    if config.trace_retention_days > 0 {
        tokio::spawn(prune_traces(node.clone(), config.trace_retention_days));
    }
    tokio::spawn(retain_records(
        node.clone(),
        Duration::from_secs(config.record_retention_secs),
    ));
    tokio::spawn(crate::disk::watch_free_space(node.clone()));
    if let Some(spec) = &config.initial_members {
        let members = parse_members(spec)?;
        tokio::spawn(bootstrap(node.clone(), members));
    }
    tracing::info!(id = config.id, grpc = %grpc_addr, metrics = %metrics_addr, "tern-store node started");
    Ok(Running {
        node,
        grpc_addr,
        metrics_addr,
        shutdown: Some(shutdown_tx),
        server,
    })
}

/// Drops message timelines older than the retention, on the leader only, in bounded
/// batches (each one Raft command), once a minute.
async fn prune_traces(node: Arc<Node>, retention_days: u64) {
    const BATCH: u32 = 500;
    let retention_ms = retention_days
        .saturating_mul(86_400_000)
        .min(i64::MAX as u64) as i64;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        if !node.is_leader() {
            continue;
        }
        loop {
            let before_ms = crate::api::now_ms().saturating_sub(retention_ms);
            match node
                .write(crate::command::Command::PruneTraces {
                    before_ms,
                    max: BATCH,
                })
                .await
            {
                Ok(crate::command::Reply::Count(n)) if n == BATCH as u64 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old message timelines failed");
                    break;
                }
            }
        }
    }
}

/// Keeps delivery ids, enqueue ids and the change feed within the retention (see
/// [`crate::apply::retention`]): on the leader only, begins a new epoch once per `period`
/// (the epoch's start is replicated, so a new leader keeps the pace) and prunes what is two
/// epochs old in bounded batches, each one Raft command.
async fn retain_records(node: Arc<Node>, period: Duration) {
    use crate::command::{Command, Reply};
    const BATCH: u32 = 500;
    let tick = (period / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(tick).await;
        if !node.is_leader() {
            continue;
        }
        let started = node.state.read(crate::apply::retention::epoch_started_ms);
        let now = crate::api::now_ms();
        match started {
            Ok(started) if now.saturating_sub(started) >= period_ms => {
                if let Err(e) = node.write(Command::AdvanceRetention { now_ms: now }).await {
                    tracing::warn!(error = %e, "beginning a retention epoch failed");
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the retention epoch failed");
                continue;
            }
        }
        loop {
            match node.write(Command::PruneRetained { max: BATCH }).await {
                Ok(Reply::Count(n)) if n == u64::from(BATCH) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old delivery ids and changes failed");
                    break;
                }
            }
        }
    }
}

/// The lowest-numbered initial member initializes an empty cluster; every other member waits
/// to be contacted. A node that already has state ignores the member list.
async fn bootstrap(node: Arc<Node>, members: Vec<(u64, String)>) {
    let Some(lowest) = members.iter().map(|(id, _)| *id).min() else {
        return;
    };
    if node.id != lowest {
        return;
    }
    match node.raft.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot tell whether the cluster is initialized");
            return;
        }
    }
    match node.initialize(&members).await {
        Ok(()) => tracing::info!(?members, "initialized a new cluster"),
        Err(e) => tracing::warn!(error = %e, "cluster initialization skipped"),
    }
}

/// Keeps readiness, gRPC health and the Raft gauges in step with Raft's metrics.
async fn watch_health(
    node: Arc<Node>,
    health: Health,
    reporter: tern_telemetry::tonic_health::server::HealthReporter,
) {
    let registry = tern_telemetry::metrics::registry();
    let term = IntGauge::new("tern_store_raft_term", "Current Raft term").ok();
    let applied = IntGauge::new("tern_store_raft_last_applied", "Last applied log index").ok();
    let last_log = IntGauge::new("tern_store_raft_last_log_index", "Last log index").ok();
    let is_leader = IntGauge::new("tern_store_raft_is_leader", "1 if this node is the leader").ok();
    let changes = IntCounter::new(
        "tern_store_raft_leader_changes_total",
        "Leader changes seen by this node",
    )
    .ok();
    for g in [&term, &applied, &last_log, &is_leader]
        .into_iter()
        .flatten()
    {
        let _ = registry.register(Box::new(g.clone()));
    }
    if let Some(c) = &changes {
        let _ = registry.register(Box::new(c.clone()));
    }
    let mut rx = node.raft.metrics();
    let mut last_leader = None;
    let mut was_ready = None;
    loop {
        let m = rx.borrow_and_update().clone();
        let applied_idx = m.last_applied.map(|l| l.index).unwrap_or(0);
        let set = |g: &Option<IntGauge>, v: u64| {
            if let Some(g) = g {
                g.set(v as i64);
            }
        };
        set(&term, m.current_term);
        set(&applied, applied_idx);
        set(&last_log, m.last_log_index.unwrap_or(0));
        set(&is_leader, (m.current_leader == Some(node.id)) as u64);
        let last_index = m.last_log_index.unwrap_or(0);
        let lags: Vec<(u64, u64)> = m
            .replication
            .iter()
            .flat_map(|r| r.iter())
            .filter(|(id, _)| **id != node.id)
            .map(|(id, matched)| {
                let matched = matched.as_ref().map(|l| l.index).unwrap_or(0);
                (*id, last_index.saturating_sub(matched))
            })
            .collect();
        crate::metrics::set_follower_lag(&lags);
        if m.current_leader != last_leader {
            if let (Some(c), Some(_)) = (&changes, m.current_leader) {
                c.inc();
            }
            last_leader = m.current_leader;
        }
        // Ready: a leader is known and this node has applied everything in its log.
        let ready = m.current_leader.is_some() && applied_idx >= m.last_log_index.unwrap_or(0);
        if was_ready != Some(ready) {
            health.set_ready(ready);
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            was_ready = Some(ready);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
