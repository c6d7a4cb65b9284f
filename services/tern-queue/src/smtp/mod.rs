//! The SMTP client used for remote delivery.
//!
//! [`reply`] parses server replies as a pure, bounded, incremental function over bytes (unit
//! tested and fuzzed in `fuzz/`, target `smtp_reply`); [`client`] runs SMTP sessions over TCP
//! and STARTTLS with it: EHLO, PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and DSN parameters,
//! per-recipient replies, deadlines and connection reuse.

pub mod client;
pub mod reply;
