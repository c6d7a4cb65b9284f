//! Message-format rules that several Tern services must apply identically.
//!
//! The store computes a message's wire size when it is appended, and POP3 (RETR) and IMAP
//! (RFC822.SIZE) send exactly that many octets; SMTP and POP3 both byte-stuff multi-line data.
//! Keeping one copy of these rules here means the size the store records and the bytes an
//! access node sends can never disagree.
//! Dates ([`date`]) likewise: every service writes RFC 5322 dates in one form. [`header`]
//! says where the header section ends (the one copy of that rule) and
//! reads one header field (the Message-ID the queue records) with a bounded scan.
//!
//! No dependencies: these are small pure functions over bytes.

pub mod date;
pub mod header;
pub mod lines;
