//! POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and AUTH (RFC 5034).

pub mod command;
pub mod session;
pub mod wire;

#[cfg(test)]
mod session_tests;
