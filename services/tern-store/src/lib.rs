//! tern-store: the one stateful service of Tern — a Raft-replicated RocksDB store holding
//! the directory, mailboxes, messages, content-addressed blobs, queue entries with leases
//! and a per-account change feed.
//!
//! # Design
//! - **Raft**: openraft **0.9** (the stable line). 0.10 is still alpha with a moving API;
//!   0.9's storage-v2 traits give separate log and state-machine stores, streaming file
//!   snapshots and leader read-index, which is all this store needs.
//! - **Storage**: one RocksDB per node, one column family per keyspace ([`keys::cf`]). The
//!   log is written with fsync per append; applying an entry is one atomic write batch that
//!   also records the last applied log id ([`state_machine`]). The state machine and the
//!   local reads see storage through a small engine trait ([`engine`]): RocksDB in
//!   production, an in-memory engine in unit tests; local reads go through
//!   [`engine::LocalState`], which holds the state lock.
//! - **Group commit** ([`proposer`]): concurrent writes share log entries, so throughput
//!   grows with concurrency instead of being capped at one fsync per message.
//! - **Any node answers any request** ([`node`]): writes are forwarded to the leader; reads
//!   wait for a read index from the leader (no log write) and are then served locally.
//! - **Snapshots** ([`snapshot`]) are files built from a RocksDB point-in-time view and
//!   streamed in chunks; they never sit whole in memory.
//! - **Keys** lead with the account id, so the keyspace can later be split into many Raft
//!   groups by account without a data-model change.
//!
//! # Dependencies
//! - `openraft`: Raft consensus (see above).
//! - `rocksdb`: the storage engine (log, state machine, blob files for bodies).
//! - `tonic`/`prost`/`tern-proto`: the gRPC API and the Raft transport.
//! - `bincode`/`serde`: compact encoding of records and Raft payloads private to the store.
//! - `argon2`: argon2id password hashes.
//! - `sha2`/`hex`: content addresses of blobs.
//! - `ring`: HMAC-SHA256 of session tokens ([`session`]), the TLS stack's crypto already.
//! - `mail-parser`: MIME decoding for server-side search.
//! - `tokio`/`tokio-stream`/`futures`: the async runtime and streams.
//! - `tern-config`: settings from the file, `TERN_*` variables and flags.
//! - `tracing`/`tern-telemetry`/`prometheus`: logs, traces, metrics and health.
//! - `rand`: salts, snapshot and queue ids. `thiserror`/`anyhow`: errors.
//! - `tern-clock`: the wall clock commands carry, which fault tests can make jump.
//! - `rustix`: `statvfs` for the data directory's free space ([`disk`]), without `unsafe`.

pub mod api;
pub mod apply;
pub mod command;
pub mod config;
pub mod credential_cache;
pub mod db;
pub mod directory_feed;
pub mod disk;
pub mod engine;
pub mod error;
pub mod keys;
pub mod log_store;
pub mod login_throttle;
pub mod metrics;
pub mod model;
pub mod network;
pub mod node;
pub mod password;
pub mod proposer;
pub mod search;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod state_machine;
pub mod txn;
pub mod types;
