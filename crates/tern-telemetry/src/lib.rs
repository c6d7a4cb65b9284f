//! Logging, metrics, health and trace propagation shared by every Tern binary.
//!
//! # Why this crate exists
//!
//! The architecture brief makes a few promises about *every* service: it logs structured lines
//! to stderr, exposes `/metrics` (Prometheus) and gRPC health checking, exports traces over OTLP
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and carries the W3C trace context in gRPC metadata
//! across every hop so that one trace id names a message in ternctl, in its `Received` header and
//! in the logs. If each service wired that up itself, the services would drift apart (different
//! span names, a forgotten propagator, a hop that drops the context). This crate is the one place
//! that wiring lives, so a service needs four lines:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let _guard = tern_telemetry::init("tern-queue", tern_telemetry::LogFormat::Json)?;
//! let health = tern_telemetry::Health::default();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! tokio::spawn(tern_telemetry::serve_http(listener, health.clone()));
//! // tonic::transport::Server::builder().trace_fn(tern_telemetry::grpc::server_span) ...
//! health.set_ready(true);
//! # Ok(())
//! # }
//! ```
//!
//! # Design decisions
//!
//! - **Trace ids exist even without a collector.** The OpenTelemetry layer is always installed;
//!   only the *exporter* depends on `OTEL_EXPORTER_OTLP_ENDPOINT`. Otherwise a development
//!   platform without a collector would have no trace ids for ternctl, `Received` headers and
//!   logs, and would silently break the context chain between hops.
//! - **Log verbosity and trace content are independent.** `RUST_LOG` filters only the stderr
//!   log layer; the OpenTelemetry layer always records spans at INFO and above (minus the
//!   OpenTelemetry crates' own spans, so exporting never traces itself). Turning logs down to
//!   `warn` must not cut distributed traces into pieces.
//! - **gRPC server spans record `trace_id` as a span field**, so every log line emitted while
//!   handling an RPC names its trace without each handler having to add it.
//! - **One metrics registry:** [`metrics::registry`] is the `prometheus` crate's default
//!   registry, so metrics registered with the crate's `register_*!` macros are served too.
//!
//! # Dependencies
//!
//! - `anyhow`: setup errors are reported to `main`, not matched on.
//! - `tokio`: the listener type for [`serve_http`] and runtime detection for OTLP shutdown.
//! - `tonic`: metadata and interceptor types for gRPC trace propagation.
//! - `tonic-health`: re-exported so every service serves the standard `grpc.health.v1` service.
//! - `http`: the request type tonic hands to `trace_fn`.
//! - `axum`: a small, correct HTTP/1.1 server for `/metrics`, `/healthz`, `/readyz`.
//! - `tracing`, `tracing-subscriber`: the logging facade every crate uses, and its fmt/JSON output.
//! - `opentelemetry`, `opentelemetry_sdk`: span ids, W3C propagation and the tracer provider.
//! - `opentelemetry-otlp`: the OTLP/gRPC exporter the brief names.
//! - `tracing-opentelemetry`: turns `tracing` spans into OpenTelemetry spans.
//! - `prometheus`: the registry and text format `/metrics` serves.

#![warn(missing_docs)]

pub mod grpc;
mod http;
mod logging;
pub mod metrics;

pub use crate::http::{serve_http, Health};
pub use logging::{init, subscriber_with_exporter, LogFormat, ParseLogFormatError, TelemetryGuard};

/// Re-exported so services add the standard `grpc.health.v1` service (and its reporter)
/// without declaring their own dependency and risking a second, mismatched version.
pub use tonic_health;

/// Waits for Ctrl-C (SIGINT) or SIGTERM (what Kubernetes and `cargo xtask up` send), the
/// one shutdown trigger of every Tern binary's `main`.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
