//! tern-access: the IMAP4rev1 and POP3 access nodes of Tern.
//!
//! **State:** only the POP3 command parser ([`pop3::command`]), wire form ([`pop3::wire`]) and
//! session state machine ([`pop3::session`], over a storage trait) exist so far; the listeners,
//! sessions, TLS and the store client are not built yet, and there is no `tern-access`
//! binary. Protocol parsers live here as pure functions over bytes so they can be unit-tested
//! and fuzzed without sockets.
//!
//! Dependencies: `thiserror` for error types; `base64` for SASL PLAIN responses.

pub mod pop3;
