//! tern-smtp: SMTP ingress (RFC 5321 with ESMTP) on three listeners: MX (port 25, mail for
//! hosted domains), submission (587, RFC 6409: AUTH required, STARTTLS) and submissions (465,
//! implicit TLS, RFC 8314). Recipients are checked against the directory in the store, and
//! a message is streamed to tern-queue while DATA (or BDAT) arrives; the 250 goes out only
//! once the queue says a Raft majority has committed it.
//!
//! Layout: the SMTP grammar (commands, typed parameters, replies, xtext) is the shared crate
//! `tern-smtp-proto`, which tern-queue's client uses too (it says there why it is kept over
//! Stalwart's smtp-proto); [`data`] decodes the DATA phase (pure code, unit-tested and
//! fuzzed); [`compose`] adds the Received field (and Message-ID/Date on submission);
//! [`session`] is one conversation; [`backend`] talks to the store and the queue; [`server`]
//! runs the listeners; [`config`] and [`metrics`].
//!
//! Dependencies: `tokio` (sockets), `tern-net` (TLS with tokio-rustls, connection limits,
//! bounded lines, shared with tern-access), `tonic`/`tern-proto` (store and queue gRPC),
//! `tokio-stream` (the Enqueue request stream), `tern-sasl` (the SASL rules shared with
//! IMAP and POP3), `base64` (AUTH's `334` challenges), `rand` (Message-IDs and
//! request ids), `prometheus` (metrics), `tern-config`/`serde` (settings), `tracing` and
//! `tern-telemetry` (logs and trace propagation), `thiserror`/`anyhow` (errors), `tern-mail`
//! (RFC 5322 dates), `tern-clock` (the wall clock those dates read), `tern-smtp-proto` (the SMTP grammar shared with the queue's client), `mail-parser` (the
//! header From addresses [`sender`] checks on submission), `mail-auth` (Stalwart's SPF,
//! DKIM, DMARC and ARC: the [`inbound`] checks, with its own DNS resolver), `ipnet` (the
//! trusted networks exempt from them). [`claims`] removes forged Authentication-Results.
//! The end-to-end tests (`tests/e2e`) use `lettre`, swaks and Python's smtplib as independent
//! clients.

pub mod claims;
pub mod compose;
pub mod data;

#[cfg(feature = "server")]
pub mod backend;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod inbound;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod sender;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod session;
