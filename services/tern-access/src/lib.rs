//! tern-access: the POP3 (and, to come, IMAP4rev1) access nodes of Tern.
//!
//! Access nodes are stateless: a session's state (the POP3 maildrop listing and its deletion
//! marks) lives in the connection, every byte of mail lives in the store, reached through
//! [`tern_proto::client::StoreClient`], which moves to another store node when one fails.
//! The POP3 maildrop lock is a store lease lock, so it holds across every access node behind
//! a load balancer, and a node that dies holding it frees it when the lease runs out.
//!
//! **State:** POP3 (RFC 1939 with CAPA, STLS, AUTH PLAIN, RESP-CODES) is complete. IMAP has
//! its first library piece, [`imap::structure`] (ENVELOPE, BODY, BODYSTRUCTURE); there is no
//! IMAP listener yet.
//!
//! Protocol code is pure ([`pop3::command`] parses, [`pop3::session`] is a state machine over
//! a storage trait, [`pop3::wire`] shapes output) so it is unit-tested and fuzzed without
//! sockets; the `server` feature (on by default) adds the listeners, the store backend and
//! the binary.
//!
//! Dependencies: `thiserror` for error types; `base64` for SASL PLAIN and RFC 2047 encoded
//! words; `mail-parser` for MIME structure (maintained, tolerant, keeps part offsets); `tern-mail` for the
//! line-ending rules shared with the store. With `server`: `tokio` and `tonic` for I/O and the
//! store API, `futures` for response streams, `tern-net` for TLS, limits and bounded lines,
//! `tern-telemetry` + `tracing` + `prometheus` for logs, traces and metrics, `clap`/`serde`/
//! `toml` for settings, `rand` for lock-owner ids, `anyhow` at the edges.

#[cfg(feature = "server")]
pub mod config;
pub mod imap;
#[cfg(feature = "server")]
mod metrics;
pub mod pop3;
#[cfg(feature = "server")]
pub mod server;
