//! The authorization layer of every internal gRPC server: the caller's role (from its
//! certificate, [`crate::tls::Peer`]) against [`tern_trust::policy::RULES`], before any
//! handler runs.
//!
//! A refused call gets PERMISSION_DENIED naming the method and the role, is logged, and is
//! counted in `tern_grpc_denied_total{method, role}`. An admitted call is counted in
//! `tern_grpc_calls_total{method, role}` and carries the caller's [`Identity`] in its
//! extensions, for handlers that record who did what.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use prometheus::IntCounterVec;
use tern_trust::policy::{self, Denied};
use tern_trust::Identity;

use crate::tls::Peer;

/// Adds authorization to a server: `Server::builder().layer(Authorize::new(domain))`.
#[derive(Clone)]
pub struct Authorize {
    trust_domain: Arc<str>,
}

impl Authorize {
    /// Admits callers of `trust_domain` by the table.
    pub fn new(trust_domain: &str) -> Self {
        Self {
            trust_domain: trust_domain.into(),
        }
    }
}

impl<S> tower::Layer<S> for Authorize {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Authorized<S> {
        Authorized {
            inner,
            trust_domain: self.trust_domain.clone(),
        }
    }
}

/// A service behind [`Authorize`].
#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    trust_domain: Arc<str>,
}

fn denied_total() -> &'static IntCounterVec {
    static DENIED: OnceLock<IntCounterVec> = OnceLock::new();
    DENIED.get_or_init(|| {
        let c = IntCounterVec::new(
            prometheus::Opts::new(
                "tern_grpc_denied_total",
                "Internal gRPC calls refused by the method-by-role table.",
            ),
            &["method", "role"],
        )
        .expect("a valid metric");
        let _ = tern_telemetry::metrics::registry().register(Box::new(c.clone()));
        c
    })
}

fn calls_total() -> &'static IntCounterVec {
    static CALLS: OnceLock<IntCounterVec> = OnceLock::new();
    CALLS.get_or_init(|| {
        let c = IntCounterVec::new(
            prometheus::Opts::new(
                "tern_grpc_calls_total",
                "Internal gRPC calls admitted by the method-by-role table, by method and caller role: what each service costs the one it calls.",
            ),
            &["method", "role"],
        )
        .expect("a valid metric");
        let _ = tern_telemetry::metrics::registry().register(Box::new(c.clone()));
        c
    })
}

/// The decision for one call: the caller, or why not.
fn decide(path: &str, peer: Option<&Peer>, trust_domain: &str) -> Result<Identity, Denied> {
    let identity = peer
        .and_then(|p| p.identity.clone())
        .ok_or_else(|| Denied::NoIdentity {
            path: path.to_string(),
        })?;
    policy::authorize(path, &identity, trust_domain)?;
    Ok(identity)
}

/// The metric's labels: only methods the table names and roles that exist, so a caller
/// inventing paths cannot grow the metric without bound.
fn labels(path: &str, peer: Option<&Peer>) -> (String, &'static str) {
    let method = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(s, m)| policy::allowed(s, m).is_some())
        .map_or_else(|| "unlisted".to_string(), |(s, m)| format!("{s}/{m}"));
    let role = peer
        .and_then(|p| p.identity.as_ref())
        .map_or("none", |id| id.role.name());
    (method, role)
}

type Boxed<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Authorized<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Boxed<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let peer = req.extensions().get::<Peer>().cloned();
        match decide(&path, peer.as_ref(), &self.trust_domain) {
            Ok(identity) => {
                let (method, role) = labels(&path, peer.as_ref());
                calls_total()
                    .with_label_values(&[method.as_str(), role])
                    .inc();
                req.extensions_mut().insert(identity);
                Box::pin(self.inner.call(req))
            }
            Err(why) => {
                let (method, role) = labels(&path, peer.as_ref());
                denied_total()
                    .with_label_values(&[method.as_str(), role])
                    .inc();
                let from = peer
                    .as_ref()
                    .map(|p| p.addr.to_string())
                    .unwrap_or_default();
                tracing::warn!(peer = %from, %why, "internal call denied");
                let status = tonic::Status::permission_denied(why.to_string());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The identity of the caller of an admitted request, for handlers.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Identity> {
    request.extensions().get::<Identity>()
}
