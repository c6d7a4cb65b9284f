//! The RocksDB instance of a node and a small read-your-writes transaction over it.
//!
//! One RocksDB database per node holds the Raft log and the state machine, one column family
//! per keyspace (see [`crate::keys::cf`]). Applying a Raft entry goes through a [`Txn`]: the
//! commands of the entry read their own earlier writes from an in-memory overlay, and the
//! whole entry, with the new last-applied log id, is written as one atomic write batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteBatch, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::keys::cf;

/// Shared handle to the node's database.
pub type Db = Arc<DB>;

/// Opens (or creates) the database with every column family.
pub fn open(path: &Path) -> anyhow::Result<Db> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    let descriptors = cf::ALL.iter().map(|name| {
        let mut o = Options::default();
        if *name == cf::BLOB {
            // Message bodies: keep large values in blob files instead of rewriting them at
            // every compaction.
            o.set_enable_blob_files(true);
            o.set_min_blob_size(4096);
        }
        ColumnFamilyDescriptor::new(*name, o)
    });
    let db = DB::open_cf_descriptors(&opts, path, descriptors)
        .map_err(|e| anyhow::anyhow!("opening RocksDB at {}: {e}", path.display()))?;
    Ok(Arc::new(db))
}

/// Looks up a column family that [`open`] always creates.
pub fn handle<'a>(db: &'a DB, name: &str) -> AppResult<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| AppError::internal(format!("missing column family {name}")))
}

/// Reads and decodes one record.
pub fn get<T: DeserializeOwned>(db: &DB, cf_name: &str, key: &[u8]) -> AppResult<Option<T>> {
    match db.get_pinned_cf(handle(db, cf_name)?, key)? {
        Some(v) => Ok(Some(bincode::deserialize(&v)?)),
        None => Ok(None),
    }
}

/// Every (key, value) whose key starts with `prefix`, in key order.
pub fn scan_prefix(db: &DB, cf_name: &str, prefix: &[u8]) -> AppResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut ro = ReadOptions::default();
    ro.set_iterate_range(rocksdb::PrefixRange(prefix));
    let iter = db.iterator_cf_opt(
        handle(db, cf_name)?,
        ro,
        IteratorMode::From(prefix, Direction::Forward),
    );
    for item in iter {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

/// A write transaction over the state machine: reads see earlier writes of the same
/// transaction; nothing reaches RocksDB until [`Txn::into_batch`] is written.
pub struct Txn<'a> {
    db: &'a DB,
    overlay: BTreeMap<OverlayKey, Option<Vec<u8>>>,
    /// Previous overlay values, newest last, so a failed command can be rolled back.
    undo: Vec<(OverlayKey, Option<Option<Vec<u8>>>)>,
}

type OverlayKey = (&'static str, Vec<u8>);

impl<'a> Txn<'a> {
    /// Starts a transaction.
    pub fn new(db: &'a DB) -> Self {
        Self {
            db,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
        }
    }

    /// Raw read.
    pub fn get_raw(&self, cf_name: &'static str, key: &[u8]) -> AppResult<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(&(cf_name, key.to_vec())) {
            return Ok(v.clone());
        }
        Ok(self.db.get_cf(handle(self.db, cf_name)?, key)?)
    }

    /// Whether a key exists.
    pub fn exists(&self, cf_name: &'static str, key: &[u8]) -> AppResult<bool> {
        if let Some(v) = self.overlay.get(&(cf_name, key.to_vec())) {
            return Ok(v.is_some());
        }
        Ok(self
            .db
            .get_pinned_cf(handle(self.db, cf_name)?, key)?
            .is_some())
    }

    /// Typed read.
    pub fn get<T: DeserializeOwned>(
        &self,
        cf_name: &'static str,
        key: &[u8],
    ) -> AppResult<Option<T>> {
        match self.get_raw(cf_name, key)? {
            Some(v) => Ok(Some(bincode::deserialize(&v)?)),
            None => Ok(None),
        }
    }

    /// Raw write.
    pub fn put_raw(&mut self, cf_name: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.write((cf_name, key), Some(value));
    }

    fn write(&mut self, key: OverlayKey, value: Option<Vec<u8>>) {
        let previous = self.overlay.insert(key.clone(), value);
        self.undo.push((key, previous));
    }

    /// Typed write.
    pub fn put<T: Serialize>(
        &mut self,
        cf_name: &'static str,
        key: Vec<u8>,
        value: &T,
    ) -> AppResult<()> {
        let v = bincode::serialize(value)?;
        self.put_raw(cf_name, key, v);
        Ok(())
    }

    /// Delete.
    pub fn delete(&mut self, cf_name: &'static str, key: Vec<u8>) {
        self.write((cf_name, key), None);
    }

    /// Every live (key, value) under `prefix`, merging the overlay over the database.
    pub fn scan_prefix(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
    ) -> AppResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            scan_prefix(self.db, cf_name, prefix)?.into_iter().collect();
        let start = (cf_name, prefix.to_vec());
        for ((c, k), v) in self.overlay.range(start..) {
            if *c != cf_name || !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Typed prefix scan.
    pub fn scan<T: DeserializeOwned>(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
    ) -> AppResult<Vec<(Vec<u8>, T)>> {
        self.scan_prefix(cf_name, prefix)?
            .into_iter()
            .map(|(k, v)| Ok((k, bincode::deserialize(&v)?)))
            .collect()
    }

    /// Turns the overlay into a write batch.
    pub fn into_batch(self) -> AppResult<WriteBatch> {
        let mut batch = WriteBatch::default();
        for ((c, k), v) in self.overlay {
            let h = handle(self.db, c)?;
            match v {
                Some(v) => batch.put_cf(h, k, v),
                None => batch.delete_cf(h, k),
            }
        }
        Ok(batch)
    }

    /// A point to roll back to if the next command fails half-way.
    pub fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undoes every write made after `savepoint`: a failed command leaves no partial writes.
    pub fn rollback_to(&mut self, savepoint: usize) {
        while self.undo.len() > savepoint {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            match previous {
                Some(v) => self.overlay.insert(key, v),
                None => self.overlay.remove(&key),
            };
        }
    }
}
