//! tern-access: the IMAP4rev1 and POP3 access nodes of Tern.
//!
//! **State:** only the POP3 command parser ([`pop3::command`]) and wire form ([`pop3::wire`])
//! exist so far; the listeners,
//! sessions, TLS and the store client are not built yet, and there is no `tern-access`
//! binary. Protocol parsers live here as pure functions over bytes so they can be unit-tested
//! and fuzzed without sockets.
//!
//! Dependencies: `thiserror` for the parser's error type.

pub mod pop3;
