//! The storage engine behind the state machine: a small trait, as TiKV's `engine_traits`.
//!
//! # Why
//! The apply logic ([`crate::apply`], [`crate::state_machine`], [`crate::snapshot`]) and the
//! read paths of the API only need a handful of operations: read a key, walk a key range
//! forward, write a batch atomically (durably, for crash-recovery markers), take a
//! point-in-time view (snapshot files are built from one while applies go on) and empty a
//! keyspace (installing a snapshot). Naming exactly those in [`KvRead`] and [`Engine`] lets
//! every Raft command, and snapshot building and installing, be unit-tested on
//! [`MemoryEngine`] (no files, no RocksDB), while production runs on [`RocksEngine`], which keeps the on-disk layout (one column family per keyspace, the
//! key encoding of [`crate::keys`], the format-version check of [`crate::db`]) and the write
//! behaviour (one unsynced atomic batch per apply call: the Raft log is the fsynced copy).
//!
//! [`LocalState`] is the one way to read the state machine locally: it holds the state lock
//! shared, so a snapshot install (which holds it exclusively) never swaps the data under a
//! reader.
//!
//! # What it deliberately leaves out
//! - **Reverse iteration, arbitrary range deletes, write options**: nothing of the state
//!   machine needs them. The Raft log store ([`crate::log_store`]) stays on RocksDB directly:
//!   it is the RocksDB log, and an abstraction would only hide its fsync-per-append.
//!   Backups (RocksDB checkpoints) and size metrics (RocksDB properties) are RocksDB
//!   features and use the database directly ([`crate::node::Node::db`]); the backup holds
//!   the state lock, and the metrics read the queue through [`LocalState`].
//! - **Transactions**: read-your-writes inside an apply call is [`crate::txn::Txn`]'s
//!   overlay over any [`KvRead`]; the engine only sees the final batch.
//! - **Typed records**: values are bytes here; bincode encoding lives in the transaction.

mod local;
mod memory;
mod rocks;

pub use local::LocalState;
pub use memory::MemoryEngine;
pub use rocks::RocksEngine;

use crate::error::AppResult;

/// A key and its value, as the engine returns them from a scan (boxed slices: RocksDB's
/// iterator hands these out without a further copy).
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// A forward walk over a key range; ends at the first key outside the range.
pub type KvIter<'a> = Box<dyn Iterator<Item = AppResult<KeyValue>> + 'a>;

/// Reads of the state machine's keyspaces (column families named in [`crate::keys::cf`]).
pub trait KvRead: Send + Sync {
    /// The value of `key` in column family `cf`.
    fn get(&self, cf: &str, key: &[u8]) -> AppResult<Option<Vec<u8>>>;

    /// Whether `key` exists in `cf` (without copying its value out: it may be a body).
    fn contains(&self, cf: &str, key: &[u8]) -> AppResult<bool>;

    /// The keys of `cf` that start with `prefix`, from `start` on (`start` is at or after
    /// `prefix`), in ascending byte order.
    fn scan<'a>(&'a self, cf: &str, prefix: &[u8], start: &[u8]) -> AppResult<KvIter<'a>>;
}

/// A storage engine: reads plus atomic batch writes.
pub trait Engine: KvRead {
    /// Writes every operation of `batch` atomically (all or nothing), not synced: the
    /// state machine is rebuilt from the fsynced Raft log after a crash.
    fn write(&self, batch: Batch) -> AppResult<()>;

    /// Like [`Engine::write`], but durable when it returns: for the markers that crash
    /// recovery relies on (a snapshot install in progress).
    fn write_synced(&self, batch: Batch) -> AppResult<()>;

    /// A point-in-time view: writes after it do not show in it.
    fn view(&self) -> AppResult<Box<dyn KvRead + '_>>;

    /// Removes every key of `cf` at once (a range deletion on RocksDB, not a walk).
    fn clear(&self, cf: &'static str) -> AppResult<()>;
}

/// One write of a [`Batch`]: a put (`Some(value)`) or a delete (`None`).
pub type BatchOp = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Writes applied together by [`Engine::write`]. Owned keys and values move into it, so a
/// message body is not copied on its way from a command to the engine.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<BatchOp>,
    /// Bytes of keys and values so far, so a bulk load can cut batches by size.
    bytes: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `cf` to `value`.
    pub fn put(&mut self, cf: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.ops.push((cf, key, Some(value)));
    }

    /// Removes `key` from `cf`.
    pub fn delete(&mut self, cf: &'static str, key: Vec<u8>) {
        self.bytes += key.len();
        self.ops.push((cf, key, None));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of the keys and values written so far.
    pub fn size_in_bytes(&self) -> usize {
        self.bytes
    }

    /// The writes, in the order they were added (a later write to a key wins).
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

#[cfg(test)]
mod tests;
