//! IMAP4rev1 (RFC 3501) with the extensions clients expect. Pure library code, unit-tested
//! and fuzzed without sockets: [`command`] parses a command with imap-codec behind guards
//! against nesting and oversized literals, [`structure`] describes a message the way FETCH
//! ENVELOPE / BODY / BODYSTRUCTURE must, [`section`] cuts the bytes of
//! BODY[section]<partial>, [`fetch`] turns FETCH items into responses, [`view`] keeps a
//! session's sequence map and RFC 3501's rules on when changes are announced, [`sequence`]
//! and [`wire`] are response syntax, and [`utf7`] converts mailbox names between modified
//! UTF-7 and UTF-8, strictly.
//!
//! With the `server` feature: [`search`] turns SEARCH keys into the store's, [`session`] is
//! the state machine (connection state, dispatch, untagged updates) over an
//! [`backend::ImapBackend`], [`op`] holds one handler module per command family,
//! [`grpc`] is the backend over the store's gRPC API, and [`server`] the listeners.

#[cfg(feature = "server")]
pub mod backend;
pub mod command;
pub mod fetch;
#[cfg(feature = "server")]
pub mod grpc;
#[cfg(all(test, feature = "server"))]
mod mem_backend;
#[cfg(feature = "server")]
pub mod op;
#[cfg(feature = "server")]
pub mod search;
pub mod section;
pub mod sequence;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod session;
#[cfg(all(test, feature = "server"))]
mod session_tests;
pub mod structure;
pub mod utf7;
pub mod view;
pub mod wire;
