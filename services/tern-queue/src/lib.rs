//! tern-queue: the delivery service of Tern.
//!
//! SMTP ingress hands a message to the Enqueue API ([`api`]); it returns a queue id once the
//! entry and its content are committed by a Raft majority in the store. Delivery workers
//! ([`worker`]) lease due entries from the store, expand aliases and lists through the
//! directory ([`routing`]), deliver local recipients into their INBOX in one store write (one
//! blob however many recipients), and send remote recipients over SMTP ([`smtp`]) to their
//! domain's MX hosts ([`mx`]) — one copy per destination host with all of its recipients, over
//! pooled connections ([`pool`]). Temporary failures are retried with exponential backoff; a
//! permanent failure, or a message that outlived the queue lifetime, is reported to the sender
//! in a delivery status notification ([`dsn`]). Workers hold no state: a dead worker's leases
//! expire and another worker takes its entries over; local delivery is idempotent per queue id
//! and account, so nothing is delivered twice.
//!
//! Dependencies: `tokio`, `tonic`, `prost`, `futures` for I/O and the store/queue APIs;
//! `hickory-resolver` for MX/A/AAAA lookups against configurable servers; `rustls`,
//! `tokio-rustls`, `rustls-pki-types` and `webpki-roots` for STARTTLS (opportunistic, or
//! verified against Mozilla's roots plus configured CAs); `tern-mail` for CRLF and
//! byte-stuffing rules; `tern-smtp-proto` for the SMTP grammar shared with tern-smtp (reply
//! parsing, typed MAIL parameters, enhanced status codes, xtext); `tern-telemetry`, `tracing`
//! and `prometheus` for logs, traces and metrics; `tern-config`/`serde` for settings;
//! `rand`/`hex` for ids and boundaries; `tern-clock` for the wall clock (due and retry times);
//! `thiserror`/`anyhow` for errors.

pub mod api;
pub mod budget;
pub mod config;
pub mod dsn;
pub mod metrics;
pub mod mx;
pub mod pool;
pub mod routing;
pub mod server;
pub mod smtp;
pub mod worker;
