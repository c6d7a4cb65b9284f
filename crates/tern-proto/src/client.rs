//! A store client for the stateless services (access, SMTP, queue): it knows every store
//! node and moves on to the next when one is down or has no leader, so losing a node (or an
//! election) delays a request instead of failing it.
//!
//! Only idempotent requests may be retried: a write that timed out may still commit later.
//! Every call of the store API used through [`StoreClient::call`] is idempotent by design
//! (flag changes set a state, expunge by UID, locks by owner, appends and deliveries carry a
//! delivery id), which is why retrying is the default.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_telemetry::grpc::TraceInterceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::session::SessionSlot;
use crate::store::v1::SessionToken;

/// HTTP/2 flow-control windows for every Tern gRPC connection. The protocol default (64 KiB)
/// makes any message larger than that wait a round trip (and, with delayed ACKs, tens of
/// milliseconds) for a WINDOW_UPDATE; messages are up to tens of MiB.
pub const STREAM_WINDOW: u32 = 8 << 20;
/// See [`STREAM_WINDOW`].
pub const CONNECTION_WINDOW: u32 = 16 << 20;

/// A channel that carries the caller's trace context, and its session token when it has
/// one, on every request.
pub type TracedChannel = InterceptedService<Channel, StoreInterceptor>;

/// What every store call carries: the trace context ([`TraceInterceptor`]) and, for a
/// client of one user's session, that session's token ([`crate::session`]).
#[derive(Clone, Debug, Default)]
pub struct StoreInterceptor {
    session: Option<Arc<SessionSlot>>,
}

impl StoreInterceptor {
    /// Carries a fixed `token` (a tool or test that holds one token; a service's session
    /// uses [`StoreClient::for_session`], which also renews it).
    pub fn with_token(token: &str) -> Self {
        let slot = SessionSlot::default();
        slot.set(token);
        Self {
            session: Some(Arc::new(slot)),
        }
    }
}

impl tonic::service::Interceptor for StoreInterceptor {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let mut request = TraceInterceptor.call(request)?;
        if let Some(token) = self.session.as_ref().and_then(|s| s.current()) {
            request
                .metadata_mut()
                .insert(crate::session::METADATA, token);
        }
        Ok(request)
    }
}

/// Connections to every store node, used in turn.
#[derive(Clone)]
pub struct StoreClient {
    channels: std::sync::Arc<Vec<(String, Channel)>>,
    next: std::sync::Arc<AtomicUsize>,
    retry_for: Duration,
    call_timeout: Duration,
    /// The session this client's calls belong to, if any ([`StoreClient::for_session`]).
    session: Option<Arc<SessionSlot>>,
}

/// Errors that say "try another node or try again later"; everything else is the answer.
fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

impl StoreClient {
    /// Clients for `addrs` (`host:port`), over mutual TLS with `tls` to servers holding
    /// `server_role`'s certificate (`Store`, or `Queue` for tern-queue's nodes); connections
    /// are made on first use. Retryable failures are retried on the next node for up to
    /// `retry_for`.
    pub fn new(
        addrs: &[String],
        retry_for: Duration,
        tls: &std::sync::Arc<crate::tls::ClusterTls>,
        server_role: tern_trust::Role,
    ) -> Result<Self, tonic::transport::Error> {
        let mut channels = Vec::with_capacity(addrs.len());
        for addr in addrs {
            channels.push((addr.clone(), tls.channel(addr, server_role)?));
        }
        Ok(Self {
            channels: std::sync::Arc::new(channels),
            next: std::sync::Arc::default(),
            retry_for,
            call_timeout: Duration::from_secs(30),
            session: None,
        })
    }

    /// A client for one user's session: the same connections, with a token slot of its own
    /// that [`StoreClient::start_session`] fills after the password check. Its clones share
    /// the slot; the token's renewal stops when the last of them is dropped.
    pub fn for_session(&self) -> Self {
        Self {
            session: Some(Arc::default()),
            ..self.clone()
        }
    }

    /// Starts carrying `token` (from a successful CheckPassword) on every call of this
    /// session's client, renewing it before it expires. Does nothing on a client not made by
    /// [`StoreClient::for_session`].
    pub fn start_session(&self, token: SessionToken) {
        if let Some(slot) = &self.session {
            let renewer = Self {
                session: None,
                ..self.clone()
            };
            crate::session::start(slot, renewer, token);
        }
    }

    fn interceptor(&self) -> StoreInterceptor {
        StoreInterceptor {
            session: self.session.clone(),
        }
    }

    /// The node addresses this client uses.
    pub fn addrs(&self) -> Vec<String> {
        self.channels.iter().map(|(a, _)| a.clone()).collect()
    }

    /// A channel to one node (the one that answered last), for calls that must not be
    /// retried or that stream for long (Watch).
    pub fn channel(&self) -> TracedChannel {
        let i = self.next.load(Ordering::Relaxed) % self.channels.len().max(1);
        InterceptedService::new(self.channels[i].1.clone(), self.interceptor())
    }

    /// Moves on to the next node, for callers of [`StoreClient::channel`] whose call failed
    /// in a way that says this node is down.
    pub fn advance(&self) {
        self.next.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `f` against a node; on a retryable failure runs it again against the next node,
    /// backing off from 50 ms up to 1 s, until `retry_for` has passed. Each attempt is bounded
    /// by 30 s until the response (or, for a stream, its first message) arrives.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> Result<T, Status>
    where
        F: FnMut(TracedChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        if self.channels.is_empty() {
            return Err(Status::unavailable("no store nodes configured"));
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let i = self.next.load(Ordering::Relaxed) % self.channels.len();
            let (addr, channel) = &self.channels[i];
            let attempt = f(InterceptedService::new(channel.clone(), self.interceptor()));
            let result = match tokio::time::timeout(self.call_timeout, attempt).await {
                Ok(r) => r,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "store node {addr} did not answer within {}s",
                    self.call_timeout.as_secs()
                ))),
            };
            match result {
                Err(status) if is_retryable(&status) && started.elapsed() < self.retry_for => {
                    tracing::debug!(node = %addr, error = %status.message(), "store call failed; trying the next node");
                    let _ = self.next.compare_exchange(
                        i,
                        (i + 1) % self.channels.len(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }
}

/// How often [`follow_store_quorum`] probes the store.
pub const QUORUM_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Keeps `health`'s readiness equal to "a linearizable read through the store succeeds",
/// probed every [`QUORUM_PROBE_EVERY`]: the readiness of the stateless services (access,
/// SMTP, queue). A linearizable read needs a leader that a majority still follows, so a node
/// that cannot reach a store quorum leaves the load balancer instead of answering every
/// client with a temporary failure. Runs until the task is dropped.
pub async fn follow_store_quorum(store: StoreClient, health: tern_telemetry::Health) {
    let mut was = None;
    loop {
        let ready = probe_store_quorum(&store).await;
        if was != Some(ready) {
            if ready {
                tracing::info!("the store has a quorum: ready");
            } else {
                tracing::warn!("no store quorum reachable: not ready");
            }
            health.set_ready(ready);
            was = Some(ready);
        }
        tokio::time::sleep(QUORUM_PROBE_EVERY).await;
    }
}

/// Starts what every stateless node (access, SMTP, queue) runs beside its listeners: the
/// metrics and health endpoint on `listener`, and [`follow_store_quorum`] keeping `health`
/// ready while a store quorum answers. Both run until their tasks are aborted.
pub fn spawn_health(
    store: StoreClient,
    health: tern_telemetry::Health,
    listener: tokio::net::TcpListener,
) -> [tokio::task::JoinHandle<()>; 2] {
    let quorum = tokio::spawn(follow_store_quorum(store, health.clone()));
    let http = tokio::spawn(async move {
        if let Err(e) = tern_telemetry::serve_http(listener, health).await {
            tracing::error!(error = format!("{e:#}"), "metrics endpoint failed");
        }
    });
    [quorum, http]
}

/// One probe of [`follow_store_quorum`]: whether a linearizable read through the store
/// succeeds within [`QUORUM_PROBE_EVERY`]. A service that must know the answer before it
/// serves (tern-smtp greets 421 without a quorum) awaits one probe at startup.
pub async fn probe_store_quorum(store: &StoreClient) -> bool {
    use crate::store::v1::{directory_client::DirectoryClient, ListDomainsRequest};
    let probe = store.call(|ch| async move {
        DirectoryClient::new(ch)
            .list_domains(ListDomainsRequest::default())
            .await
    });
    matches!(
        tokio::time::timeout(QUORUM_PROBE_EVERY, probe).await,
        Ok(Ok(_))
    )
}
