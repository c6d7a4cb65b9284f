//! Starting an access node: the store client, TLS, the listeners, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tern_net::drain::Drain;
use tern_net::limit::ConnectionLimiter;
use tern_net::listen::{bind_optional, write_addr_file, Serving};
use tern_net::tls::ReloadingTls;
use tern_proto::client::StoreClient;
use tern_proto::tls::ClusterTls;
use tern_telemetry::Health;
use tern_trust::Role;
use tokio::net::TcpListener;

use crate::accept::ListenerPolicy;
use crate::config::AccessConfig;
use crate::imap::server::ImapContext;
use crate::pop3::server::{serve, Pop3Context};

/// A running access node.
pub struct Running {
    /// Bound POP3 address, if that listener is on.
    pub pop3: Option<SocketAddr>,
    /// Bound POP3S address, if that listener is on.
    pub pop3s: Option<SocketAddr>,
    /// Bound IMAP address, if that listener is on.
    pub imap: Option<SocketAddr>,
    /// Bound IMAPS address, if that listener is on.
    pub imaps: Option<SocketAddr>,
    /// Bound metrics/health address.
    pub metrics: SocketAddr,
    /// Stopping: `serving.shutdown()` is the clean stop (SIGTERM). It stops accepting, lets
    /// each session finish the command in progress and then closes it (IMAP with `* BYE`,
    /// at once when idle or in IDLE; POP3 with `-ERR [SYS/TEMP]`, deleting nothing and giving
    /// its maildrop lock back), waiting up to the configured drain time.
    pub serving: Serving,
}

/// Binds every configured listener and starts serving.
pub async fn start(config: AccessConfig) -> anyhow::Result<Running> {
    config.validate()?;
    let cluster = ClusterTls::load_as(&tern_trust::pki::CertFiles::of(&config), Role::Access)
        .context("cluster TLS")?;
    let retry = Duration::from_secs(config.store_retry_secs);
    let store =
        StoreClient::new(&config.store, retry, &cluster, Role::Store).context("store addresses")?;
    let tls = ReloadingTls::load_optional(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
    let pop3 = bind_optional(&config.pop3_listen, "POP3").await?;
    let pop3s = bind_optional(&config.pop3s_listen, "POP3S").await?;
    let imap = bind_optional(&config.imap_listen, "IMAP").await?;
    let imaps = bind_optional(&config.imaps_listen, "IMAPS").await?;
    let metrics_listener = TcpListener::bind(&config.metrics_listen)
        .await
        .with_context(|| format!("binding metrics to {}", config.metrics_listen))?;
    let node = format!(
        "{}-{}",
        hostname(),
        pop3.as_ref()
            .or(pop3s.as_ref())
            .or(imap.as_ref())
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
            .unwrap_or(0)
    );
    let drain = Drain::default();
    // One limiter for POP3 and IMAP together: the limits are the node's.
    let policy = ListenerPolicy {
        tls,
        limiter: ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip),
        plaintext_auth: config.loopback_plaintext_auth,
        auth_failure_delay: Duration::from_millis(config.auth_failure_delay_ms),
        max_auth_failures: config.max_auth_failures,
        max_errors: config.max_errors,
        timeouts: tern_net::connection::Timeouts {
            write: Duration::from_secs(config.write_timeout_secs.max(1)),
            ..crate::imap::server::timeouts()
        },
        drain: drain.clone(),
    };
    let retrievals = crate::retrieval::RetrievalTracer::new(store.clone(), &node);
    let imap_ctx = Arc::new(ImapContext {
        retrievals: retrievals.clone(),
        store: store.clone(),
        policy: policy.clone(),
        idle_timeout: Duration::from_secs(config.imap_idle_timeout_secs),
        max_message: config.max_message_bytes,
    });
    let ctx = Arc::new(Pop3Context {
        store: store.clone(),
        node,
        retrievals,
        policy,
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        lock_ttl: Duration::from_secs(config.lock_ttl_secs.max(3)),
    });
    let mut running = Running {
        pop3: pop3.as_ref().map(TcpListener::local_addr).transpose()?,
        pop3s: pop3s.as_ref().map(TcpListener::local_addr).transpose()?,
        imap: imap.as_ref().map(TcpListener::local_addr).transpose()?,
        imaps: imaps.as_ref().map(TcpListener::local_addr).transpose()?,
        metrics: metrics_listener.local_addr()?,
        serving: Serving::new(drain, Duration::from_secs(config.drain_secs)),
    };
    if let Some(l) = pop3 {
        running.serving.tasks.spawn(serve(l, ctx.clone(), false));
    }
    if let Some(l) = pop3s {
        running.serving.tasks.spawn(serve(l, ctx.clone(), true));
    }
    if let Some(l) = imap {
        running
            .serving
            .tasks
            .spawn(crate::imap::server::serve(l, imap_ctx.clone(), false));
    }
    if let Some(l) = imaps {
        running
            .serving
            .tasks
            .spawn(crate::imap::server::serve(l, imap_ctx.clone(), true));
    }
    // Ready while a store quorum answers (tern_proto::client::follow_store_quorum).
    running
        .serving
        .tasks
        .extend(tern_proto::client::spawn_health(
            store,
            Health::default(),
            metrics_listener,
        ));
    if let Some(path) = &config.addr_file {
        write_addr_file(
            path,
            &[
                ("pop3", running.pop3),
                ("pop3s", running.pop3s),
                ("imap", running.imap),
                ("imaps", running.imaps),
                ("metrics", Some(running.metrics)),
            ],
        )?;
    }
    tracing::info!(pop3 = ?running.pop3, pop3s = ?running.pop3s, imap = ?running.imap, imaps = ?running.imaps, metrics = %running.metrics, store = ?config.store, "access node started");
    Ok(running)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "access".into())
}
