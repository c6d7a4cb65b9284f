//! The operations HTTP endpoint: `/metrics`, `/healthz` and `/readyz`.
//!
//! Served on its own port (9090 in production) rather than multiplexed on the gRPC port so
//! that Prometheus and orchestrator probes keep working when the gRPC server is saturated
//! or not yet started, and so that no gRPC client code is needed to probe a service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Liveness/readiness flags served over HTTP.
///
/// Liveness is implicit (the process answers, so it lives); readiness is explicit because
/// only the service knows when it can take traffic (a store node that has joined the cluster,
/// a queue that reached the store). It starts not ready. Clones share the same flag, so keep
/// one clone in the server task and flip it from wherever startup completes.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the service ready (`/readyz` answers 200) or not ready (503), e.g. while
    /// draining before shutdown so load balancers stop sending new connections.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the service currently reports itself ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Serves `GET /metrics` (Prometheus text format), `/healthz` (200 while the process runs)
/// and `/readyz` (200 when [`Health::is_ready`], else 503) on `listener` until the returned
/// future is dropped.
///
/// Taking a bound listener (not an address) lets callers bind port 0 in tests and report the
/// real port, and surfaces bind errors at startup where they belong.
///
/// # Errors
///
/// Only if accepting connections fails fatally; errors on individual connections are not
/// returned.
pub async fn serve_http(listener: tokio::net::TcpListener, health: Health) -> anyhow::Result<()> {
    axum::serve(listener, router(health))
        .await
        .context("metrics/health HTTP server failed")
}

fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics() -> Response {
    match crate::metrics::encode() {
        Ok(body) => (
            [(header::CONTENT_TYPE, crate::metrics::content_type())],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering Prometheus metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n").into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
