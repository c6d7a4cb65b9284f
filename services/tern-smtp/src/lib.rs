//! tern-smtp: SMTP ingress (RFC 5321 with ESMTP) on three listeners: MX (port 25, mail for
//! hosted domains), submission (587, RFC 6409: AUTH required, STARTTLS) and submissions (465,
//! implicit TLS, RFC 8314). Recipients are checked against the directory in the store, and
//! a message is streamed to tern-queue while DATA (or BDAT) arrives; the 250 goes out only
//! once the queue says a Raft majority has committed it.
//!
//! Layout: [`command`] parses command lines and [`data`] decodes the DATA phase (pure code,
//! unit-tested and fuzzed); [`reply`] formats replies; [`compose`] adds the Received field
//! (and Message-ID/Date on submission); [`session`] is one conversation; [`backend`] talks to
//! the store and the queue; [`server`] runs the listeners; [`config`] and [`metrics`].
//!
//! The parsers are hand-written rather than taken from a crate: the SMTP command grammar is
//! small, and the crates that parse it (smtp-proto, mailin) either bundle a server model of
//! their own or lag the RFC 6531 rules; what matters here is strictness at the edges
//! (smuggling, line bounds), which the fuzz targets and the unit tests pin down.
//!
//! Dependencies: `tokio` (sockets), `tern-net` (TLS with tokio-rustls, connection limits,
//! bounded lines, shared with tern-access), `tonic`/`tern-proto` (store and queue gRPC),
//! `tokio-stream` (the Enqueue request stream), `base64` (SASL), `rand` (Message-IDs and
//! request ids), `prometheus` (metrics), `tern-config`/`serde` (settings), `tracing` and
//! `tern-telemetry` (logs and trace propagation), `thiserror`/`anyhow` (errors), `tern-mail`
//! (RFC 5322 dates). Tests use `lettre` as an independent Rust SMTP client.

pub mod command;
pub mod compose;
pub mod data;
pub mod reply;

#[cfg(feature = "server")]
pub mod backend;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod session;
