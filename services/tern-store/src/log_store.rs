//! The Raft log and vote on RocksDB (`log` and `raft` column families).
//!
//! Every append is one write batch written with `sync = true`, so an entry is on disk before
//! openraft counts this node towards a commit. Appends, truncations, purges and vote saves
//! all run on the caller's task one after another, which keeps them in order as openraft
//! requires.
//!
//! Unlike the state machine, the log does not go through [`crate::engine`]: it is RocksDB's
//! log by design (synced appends, reverse seeks for the last entry, range purges), none of
//! the apply logic reads it, and a trait would only hide the fsync-per-append that
//! durability rests on.

// openraft's StorageError is large; it is openraft's API, returned as openraft defines it.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::db::{self, Db};
use crate::keys::{self, cf};
use crate::types::{LogId, NodeId, StorageError, TypeConfig};

/// The log store; cheap to clone (all clones share the database).
#[derive(Clone)]
pub struct LogStore {
    db: Db,
}

fn io(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn other(subject: ErrorSubject<NodeId>, verb: ErrorVerb, msg: String) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(msg)).into()
}

impl LogStore {
    /// Wraps the node's database.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        db::handle(&self.db, name)
            .map_err(|e| other(ErrorSubject::Store, ErrorVerb::Read, e.message))
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let v = self
            .db
            .get_cf(self.cf(cf::RAFT)?, key)
            .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Read, e))?;
        match v {
            Some(v) => bincode::deserialize(&v)
                .map(Some)
                .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Read, e)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let v =
            bincode::serialize(value).map_err(|e| io(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .put_cf_opt(self.cf(cf::RAFT)?, key, v, &wo)
            .map_err(|e| io(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut iter = self.db.iterator_cf(self.cf(cf::LOG)?, IteratorMode::End);
        match iter.next() {
            Some(Ok((_, v))) => {
                let entry: Entry<TypeConfig> = bincode::deserialize(&v)
                    .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(entry.log_id))
            }
            Some(Err(e)) => Err(io(ErrorSubject::Logs, ErrorVerb::Read, e)),
            None => Ok(None),
        }
    }
}

/// Most log-entry octets one AppendEntries carries: entries are added while they fit, and
/// at least one goes whatever its size (one entry holds at most
/// [`crate::proposer::MAX_BATCH_BYTES`] or one message). openraft 0.9 gives each
/// AppendEntries one heartbeat interval to complete and sends the same range again when it
/// does not, so a payload must stay small enough to cross in that time; a burst of large
/// messages then goes over as several payloads instead of one that never arrives.
pub const MAX_APPEND_BYTES: usize = 8 << 20;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.read_entries(range, usize::MAX)
    }

    /// What replication sends: bounded by [`MAX_APPEND_BYTES`].
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.read_entries(start..end, MAX_APPEND_BYTES)
    }
}

impl LogStore {
    /// The entries in `range`, stopping before the one that would take the encoded total
    /// past `max_bytes` (the first is always returned).
    fn read_entries<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        max_bytes: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        let iter = self.db.iterator_cf(
            self.cf(cf::LOG)?,
            IteratorMode::From(&keys::log_key(start), Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index =
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| {
                    other(ErrorSubject::Logs, ErrorVerb::Read, "bad log key".into())
                })?);
            if !range.contains(&index) {
                break;
            }
            if !out.is_empty() && total.saturating_add(v.len()) > max_bytes {
                break;
            }
            total = total.saturating_add(v.len());
            out.push(
                bincode::deserialize(&v)
                    .map_err(|e| io(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?,
            );
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(keys::raft::PURGED)?;
        let last = std::cmp::max(self.last_entry_log_id()?, last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(keys::raft::VOTE, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(keys::raft::VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying from the state machine's own record.
        self.put_meta(keys::raft::COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<Option<LogId>>(keys::raft::COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let log_cf = self.cf(cf::LOG)?;
        let mut count = 0u64;
        for entry in entries {
            count += 1;
            let v = bincode::serialize(&entry)
                .map_err(|e| io(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            batch.put_cf(log_cf, keys::log_key(entry.log_id.index), v);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || db.write_opt(batch, &wo))
            .await
            .map_err(|e| {
                other(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    format!("log writer task: {e}"),
                )
            })?;
        match result {
            Ok(()) => {
                crate::metrics::log_synced(count);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let log_cf = self.cf(cf::LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log_cf, keys::log_key(log_id.index), keys::log_key(u64::MAX));
        batch.delete_cf(log_cf, keys::log_key(u64::MAX));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point and the deletion land together, synced: never a state where the
        // recorded purge point and the entries present disagree.
        let v = bincode::serialize(&log_id)
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(cf::RAFT)?, keys::raft::PURGED, v);
        batch.delete_range_cf(
            self.cf(cf::LOG)?,
            keys::log_key(0),
            keys::log_key(log_id.index + 1),
        );
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| io(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
