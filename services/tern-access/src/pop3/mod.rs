//! POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and AUTH (RFC 5034).

#[cfg(feature = "server")]
pub mod backend;
pub mod command;
#[cfg(feature = "server")]
pub mod server;
pub mod session;

#[cfg(test)]
mod session_tests;
