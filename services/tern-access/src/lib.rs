//! tern-access: the IMAP4rev1 and POP3 access nodes of Tern.
//!
//! Access nodes are stateless: a session's state (the POP3 maildrop listing and its deletion
//! marks) lives in the connection, every byte of mail lives in the store, reached through
//! [`tern_proto::client::StoreClient`], which moves to another store node when one fails.
//! The POP3 maildrop lock is a store lease lock, so it holds across every access node behind
//! a load balancer, and a node that dies holding it frees it when the lease runs out.
//!
//! **State:** POP3 (RFC 1939 with CAPA, STLS, AUTH PLAIN, RESP-CODES) and IMAP4rev1 (RFC 3501
//! with IDLE, UIDPLUS, MOVE, LITERAL+, SASL-IR, SPECIAL-USE, NAMESPACE, ENABLE, UNSELECT,
//! CHILDREN, ID, QUOTA and CONDSTORE) are complete. An IMAP session holds only its view of
//! the selected mailbox; changes made anywhere reach it through the store's Watch stream.
//!
//! Protocol code is pure ([`pop3::command`] parses, [`pop3::session`] is a state machine over
//! a storage trait that hands a message over in pieces, `tern_mail::lines::DotStuffer` shapes
//! its output; [`imap::command`], [`imap::structure`],
//! [`imap::section`], [`imap::fetch`], [`imap::view`] and [`imap::utf7`] likewise) so it is
//! unit-tested and fuzzed without sockets; the `server` feature (on by default) adds the
//! listeners, the store sessions and the binary.
//!
//! Dependencies: `thiserror` for error types; `tern-sasl` for the SASL rules shared with SMTP;
//! `base64` for SASL challenges and RFC 2047 encoded
//! words; `mail-parser` for MIME structure (maintained, tolerant, keeps part offsets); `tern-mail` for the
//! line-ending rules shared with the store; `imap-codec` for the IMAP command grammar (the
//! maintained grammar crate with the extensions clients need), `nom` only to switch on a
//! feature imap-codec forgets; `chrono` for the calendar dates of SEARCH (imap-codec's own
//! date type). With `server`: `tokio` and `tonic` for I/O and the
//! store API, `futures` for response streams, `tern-net` for TLS, limits and bounded lines,
//! `tern-telemetry` + `tracing` + `prometheus` for logs, traces and metrics, `tern-config`/
//! `serde` for settings, `rand` for lock-owner ids, `anyhow` at the edges.

#[cfg(feature = "server")]
pub mod accept;
#[cfg(feature = "server")]
pub mod config;
pub mod imap;
#[cfg(feature = "server")]
mod metrics;
pub mod pop3;
#[cfg(feature = "server")]
pub mod retrieval;
#[cfg(feature = "server")]
pub mod server;
