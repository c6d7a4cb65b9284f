//! The SMTP client used for remote delivery.
//!
//! Replies are parsed with `tern_smtp_proto::reply::parse`, a pure, bounded, incremental
//! function over bytes shared with the server side (unit tested and fuzzed in
//! `crates/tern-smtp-proto/fuzz`, target `smtp_reply`); [`client`] runs SMTP sessions over TCP
//! and STARTTLS with it: EHLO, PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and DSN parameters,
//! per-recipient replies, deadlines and connection reuse.

pub mod client;
