//! tern-smtp-proto: the SMTP grammar (RFC 5321 with its ESMTP extensions) that Tern's server
//! (tern-smtp) and client (tern-queue's remote delivery) share, kept apart from both as
//! Stalwart keeps `smtp-proto` apart from its server. Pure functions over bytes and strings,
//! no I/O, so every rule is unit-tested and fuzzed (`fuzz/`: `smtp_command`, `smtp_reply`,
//! `xtext`) without sockets.
//!
//! - [`command`]: command lines into [`command::Command`]s, addresses into mailboxes;
//! - [`params`]: the MAIL (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH) and RCPT (NOTIFY, ORCPT)
//!   parameters as typed values, and the canonical text the store keeps them in;
//! - [`reply`]: one [`reply::Reply`] type, written by the server and parsed (bounded,
//!   incremental) by the client;
//! - [`enhanced`]: RFC 3463 enhanced status codes, checked in one place;
//! - [`xtext`]: RFC 3461 xtext, encoded and decoded in one place.
//!
//! **Why not Stalwart's `smtp-proto` (0.2.5, Apache-2.0 OR MIT)?** It was weighed against the
//! code here, which was already fuzzed, and this code was kept because it is stricter where
//! strictness matters on hostile input:
//! - `smtp-proto` validates an address only by counting one `@` and a length of at most 256
//!   octets (no 64-octet local part, no domain-label or address-literal check), and silently
//!   drops a CR inside a path, where this parser refuses control characters outright
//!   (SMTP-smuggling style input gets a 501, not a repaired command);
//! - its replies are bounded only as a whole (4,096 octets), so a real EHLO reply of many
//!   lines can be refused while one long line is not bounded separately; here every line is
//!   bounded ([`reply::MAX_LINE`]) and so is the number of lines ([`reply::MAX_LINES`]), and
//!   malformed input is refused from its first wrong octet;
//! - its error model (one `SyntaxError`, `InvalidSenderAddress`, ...) does not carry the
//!   distinctions the session's replies are built from (500 unknown, 501 syntax, 501 5.1.7
//!   sender / 5.1.3 recipient), which the integration tests pin byte for byte.
//!
//! Adopting it would have meant wrapping it in the same checks again, i.e. two parsers. The
//! only dependency is `thiserror`, for the error types.

pub mod command;
pub mod enhanced;
pub mod params;
pub mod reply;
pub mod xtext;
