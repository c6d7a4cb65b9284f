//! Starting an SMTP node: the store and queue clients, TLS, the three listeners (MX,
//! submission, submissions), connection limits, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tern_net::connection::{Connection, Timeouts};
use tern_net::drain::Drain;
use tern_net::limit::ConnectionLimiter;
use tern_net::listen::{bind_optional, write_addr_file, Serving};
use tern_net::tls::ReloadingTls;
use tern_proto::client::StoreClient;
use tern_proto::tls::ClusterTls;
use tern_telemetry::Health;
use tern_trust::Role;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::backend::Backend;
use crate::config::SmtpConfig;
use crate::inbound::InboundChecks;
use crate::metrics;
use crate::session::Session;

/// Bound on the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which listener a connection came in on; each has its own policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Port 25: mail for hosted domains from anyone, no AUTH, no relaying.
    Mx,
    /// Port 587 (RFC 6409): AUTH required before MAIL, STARTTLS offered.
    Submission,
    /// Port 465 (RFC 8314): submission inside implicit TLS.
    Submissions,
}

impl Listener {
    /// Label for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Mx => "mx",
            Listener::Submission => "submission",
            Listener::Submissions => "submissions",
        }
    }
}

/// What every session of a node shares.
pub struct SmtpContext {
    /// Directory and queue.
    pub backend: Backend,
    /// Name in the greeting and Received fields.
    pub hostname: String,
    /// Certificate for STARTTLS and submissions.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Connection limits shared by all listeners.
    pub limiter: ConnectionLimiter,
    /// AUTH allowed without TLS (development, loopback-only submission).
    pub plaintext_auth: bool,
    /// Where `<postmaster>` goes.
    pub postmaster: String,
    /// Largest message.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Errors before the session is closed.
    pub max_errors: u32,
    /// Submission: the header From must be owned by the user.
    pub sender_header_check: bool,
    /// Wrong passwords before the session is closed.
    pub max_auth_failures: u32,
    /// Pause after a wrong password.
    pub auth_failure_delay: Duration,
    /// Wait for a command.
    pub command_timeout: Duration,
    /// Wait for message content.
    pub data_timeout: Duration,
    /// Time for one message's whole content (DATA, or BDAT's chunks).
    pub message_time_limit: Duration,
    /// Set on SIGTERM: sessions answer their next command with 421.
    pub drain: Drain,
    /// The MX listener's sender checks (SPF); `None` when turned off.
    pub inbound: Option<InboundChecks>,
}

/// A running SMTP node.
pub struct Running {
    /// Bound MX address, if on.
    pub mx: Option<SocketAddr>,
    /// Bound submission address, if on.
    pub submission: Option<SocketAddr>,
    /// Bound submissions address, if on.
    pub submissions: Option<SocketAddr>,
    /// Bound metrics/health address.
    pub metrics: SocketAddr,
    /// Stopping: `serving.shutdown()` is the clean stop (SIGTERM). It stops accepting,
    /// answers each session's next command with 421, lets a message in DATA or BDAT complete,
    /// and waits up to the configured drain time for every session to end.
    pub serving: Serving,
}

/// Binds every configured listener and starts serving.
pub async fn start(config: SmtpConfig) -> anyhow::Result<Running> {
    config.validate()?;
    let retry = Duration::from_secs(config.store_retry_secs);
    let cluster = ClusterTls::load_as(&tern_trust::pki::CertFiles::of(&config), Role::Smtp)
        .context("cluster TLS")?;
    let store =
        StoreClient::new(&config.store, retry, &cluster, Role::Store).context("store addresses")?;
    let queue =
        StoreClient::new(&config.queue, retry, &cluster, Role::Queue).context("queue addresses")?;
    let tls = ReloadingTls::load_optional(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
    let mx = bind_optional(&config.mx_listen, "MX").await?;
    let submission = bind_optional(&config.submission_listen, "submission").await?;
    let submissions = bind_optional(&config.submissions_listen, "submissions").await?;
    let metrics_listener = TcpListener::bind(&config.metrics_listen)
        .await
        .with_context(|| format!("binding metrics to {}", config.metrics_listen))?;
    // One answer to "does the store have a quorum" for both the greeting (421 without one)
    // and /readyz; known before the first client is greeted.
    let health = Health::default();
    health.set_ready(tern_proto::client::probe_store_quorum(&store).await);
    let inbound = if config.spf {
        let dns: Vec<SocketAddr> = config
            .dns_servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .context("dns_servers")?;
        Some(InboundChecks::new(
            &config.hostname,
            &dns,
            &config.trusted_networks,
        )?)
    } else {
        None
    };
    let ctx = Arc::new(SmtpContext {
        backend: Backend::new(
            store.clone(),
            queue,
            health.clone(),
            tern_proto::directory_cache::Resolver::start(
                store.clone(),
                tern_proto::directory_cache::CacheSettings {
                    capacity: config.directory_cache_entries,
                    ttl: Duration::from_secs(config.directory_cache_ttl_secs.max(1)),
                },
            ),
        ),
        hostname: config.hostname.clone(),
        tls,
        limiter: ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip),
        plaintext_auth: config.loopback_plaintext_auth,
        postmaster: config.postmaster_address(),
        max_message_size: config.max_message_size,
        max_recipients: config.max_recipients,
        max_errors: config.max_errors.max(1),
        sender_header_check: config.sender_header_check,
        max_auth_failures: config.max_auth_failures.max(1),
        auth_failure_delay: Duration::from_millis(config.auth_failure_delay_ms),
        command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
        data_timeout: Duration::from_secs(config.data_timeout_secs.max(1)),
        message_time_limit: Duration::from_secs(config.message_time_limit_secs.max(1)),
        drain: Drain::default(),
        inbound,
    });
    let addr = |l: &Option<TcpListener>| l.as_ref().map(TcpListener::local_addr).transpose();
    let mut running = Running {
        mx: addr(&mx)?,
        submission: addr(&submission)?,
        submissions: addr(&submissions)?,
        metrics: metrics_listener.local_addr()?,
        serving: Serving::new(ctx.drain.clone(), Duration::from_secs(config.drain_secs)),
    };
    for (listener, kind) in [
        (mx, Listener::Mx),
        (submission, Listener::Submission),
        (submissions, Listener::Submissions),
    ] {
        if let Some(l) = listener {
            running.serving.tasks.spawn(serve(l, ctx.clone(), kind));
        }
    }
    // Ready while a store quorum answers (tern_proto::client::follow_store_quorum).
    running
        .serving
        .tasks
        .extend(tern_proto::client::spawn_health(
            store,
            health,
            metrics_listener,
        ));
    if let Some(path) = &config.addr_file {
        write_addr_file(
            path,
            &[
                ("mx", running.mx),
                ("submission", running.submission),
                ("submissions", running.submissions),
                ("metrics", Some(running.metrics)),
            ],
        )?;
    }
    tracing::info!(mx = ?running.mx, submission = ?running.submission, submissions = ?running.submissions, metrics = %running.metrics, "SMTP node started");
    Ok(running)
}

/// Accepts connections on one listener until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<SmtpContext>, kind: Listener) {
    loop {
        let (tcp, peer) = tern_net::listen::accept_retrying(&listener).await;
        let ctx = ctx.clone();
        let span = tracing::info_span!("smtp", listener = kind.name(), peer = %peer);
        tokio::spawn(
            async move {
                let slot = match ctx.limiter.try_acquire(peer.ip()) {
                    Ok(s) => s,
                    Err(refused) => {
                        metrics::refused(kind.name());
                        if kind != Listener::Submissions {
                            let mut tcp = tcp;
                            // A greeting-time reply: no enhanced code (RFC 2034 §3).
                            let line = format!("421 {} Error: {refused}\r\n", ctx.hostname);
                            let _ = tcp.write_all(line.as_bytes()).await;
                        }
                        return;
                    }
                };
                let _open = metrics::SessionGauge::open(kind.name());
                let _draining = ctx.drain.session();
                if let Err(e) = converse(tcp, peer, &ctx, kind).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}

async fn converse(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: &SmtpContext,
    kind: Listener,
) -> std::io::Result<()> {
    // A client that stops reading our replies is dropped after the command time-out.
    let timeouts = Timeouts {
        write: ctx.command_timeout,
        handshake: HANDSHAKE_TIMEOUT,
    };
    let mut conn = if kind == Listener::Submissions {
        let Some(tls) = &ctx.tls else {
            return Ok(());
        };
        Connection::accept_tls(tcp, &tls.acceptor(), timeouts).await?
    } else {
        Connection::new(tcp, timeouts)
    };
    let mut greet = true;
    while let Some(mut plain) = Session::new(ctx, kind, peer, conn).run(greet).await? {
        let Some(tls) = &ctx.tls else {
            return Ok(());
        };
        // Input pipelined after STARTTLS (CVE-2011-0411) or a failed handshake ends the
        // connection. Then a fresh session over TLS, without a second greeting (RFC 3207
        // §4.2).
        if plain.start_tls(&tls.acceptor()).await.is_err() {
            return Ok(());
        }
        conn = plain;
        greet = false;
    }
    Ok(())
}
