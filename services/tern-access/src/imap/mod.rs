//! IMAP4rev1 (RFC 3501), being built. What exists is pure library code with unit tests:
//! [`structure`] describes a message the way FETCH ENVELOPE / BODY / BODYSTRUCTURE must, and
//! [`section`] cuts the bytes of BODY[section]<partial>, and [`command`] parses a command with
//! imap-codec behind guards against nesting and oversized literals, and [`utf7`] converts
//! mailbox names between modified UTF-7 and UTF-8, strictly. The session and the
//! listeners are not built yet, so no IMAP port is open.

pub mod command;
pub mod section;
pub mod structure;
pub mod utf7;
