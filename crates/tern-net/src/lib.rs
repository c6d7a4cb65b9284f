//! What every Tern listener that faces the internet shares: one client connection of a line
//! protocol with its bounded reads, buffered writes, time-outs, STARTTLS and byte counts
//! ([`connection`]), over the transport that can be upgraded to TLS in place ([`conn`]); TLS
//! certificates loaded from files and reloaded when they change ([`tls`]), limits on concurrent connections in total and per client address
//! ([`limit`]), line reads that never buffer more than a fixed bound ([`line`]), and writes
//! that give up on a peer that stops reading ([`timed`]), and stopping without cutting
//! sessions in progress ([`drain`]).
//!
//! POP3 and IMAP (tern-access) and SMTP (tern-smtp) use the same code so their limits and TLS
//! behave the same.
//!
//! Dependencies: `tokio` for sockets; `rustls` + `tokio-rustls` (ring provider: pure Rust and
//! assembly, no cmake, unlike aws-lc) for TLS; `rustls-pki-types` to read PEM files; `rcgen` to
//! make the self-signed development certificate; `thiserror`/`anyhow` for errors; `tracing`
//! to log reloads; `tern-trust` for the one reload-on-change rule the internal ports share.

pub mod conn;
pub mod connection;
pub mod drain;
pub mod limit;
pub mod line;
pub mod listen;
pub mod timed;
pub mod tls;
