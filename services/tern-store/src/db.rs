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

/// Version of the on-disk format (log entries, records). Bump it when either changes
/// incompatibly; a node refuses data written in another version instead of failing
/// somewhere in Raft's start-up.
pub const FORMAT: u32 = 2;

/// Checks (or, for a new database, records) the on-disk format version.
pub fn check_format(db: &DB) -> anyhow::Result<()> {
    let raft_cf = handle(db, cf::RAFT).map_err(|e| anyhow::anyhow!(e.message))?;
    match db.get_cf(raft_cf, crate::keys::raft::FORMAT)? {
        Some(v) if v.as_slice() == FORMAT.to_be_bytes() => Ok(()),
        Some(v) => anyhow::bail!(
            "the data directory holds format {:?}, this tern-store reads format {FORMAT}; \
             migrate it or start from an empty directory",
            v
        ),
        None => {
            let empty = cf::ALL.iter().all(|name| {
                db.cf_handle(name)
                    .is_none_or(|h| db.iterator_cf(h, IteratorMode::Start).next().is_none())
            });
            if !empty {
                anyhow::bail!(
                    "the data directory was written by a development build before format \
                     versions existed; it cannot be read by this tern-store (for a dev cluster, \
                     remove the data directory, e.g. .tern/dev, and start again)"
                );
            }
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.put_cf_opt(
                raft_cf,
                crate::keys::raft::FORMAT,
                FORMAT.to_be_bytes(),
                &wo,
            )?;
            Ok(())
        }
    }
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
    /// Keys this transaction writes (not deletes) in column family `cf`.
    pub fn written_keys<'s>(&'s self, cf: &'static str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.overlay
            .iter()
            .filter(move |((c, _), v)| *c == cf && v.is_some())
            .map(|((_, k), _)| k.as_slice())
    }

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
        self.scan_prefix_limit(cf_name, prefix, usize::MAX)
    }

    /// The first `limit` live (key, value) pairs under `prefix`, in key order: the database
    /// iterator and the overlay are merged lazily, so memory is bounded by `limit`.
    pub fn scan_prefix_limit(
        &self,
        cf_name: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> AppResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(rocksdb::PrefixRange(prefix));
        let mut db_iter = self
            .db
            .iterator_cf_opt(
                handle(self.db, cf_name)?,
                ro,
                IteratorMode::From(prefix, Direction::Forward),
            )
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .peekable();
        let mut overlay = self
            .overlay
            .range((cf_name, prefix.to_vec())..)
            .take_while(|((c, k), _)| *c == cf_name && k.starts_with(prefix))
            .peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let db_key = match db_iter.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => match db_iter.next() {
                    Some(Err(e)) => return Err(e.into()),
                    _ => None,
                },
                None => None,
            };
            let ov_key = overlay.peek().map(|((_, k), _)| k.clone());
            match (db_key, ov_key) {
                (None, None) => break,
                (Some(d), Some(o)) if o <= d => {
                    if o == d {
                        db_iter.next();
                    }
                    if let Some((_, Some(v))) = overlay.next() {
                        out.push((o, v.clone()));
                    }
                }
                (Some(_), _) => {
                    if let Some(Ok(kv)) = db_iter.next() {
                        out.push(kv);
                    }
                }
                (None, Some(o)) => {
                    if let Some((_, Some(v))) = overlay.next() {
                        out.push((o, v.clone()));
                    }
                }
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_scans_see_the_overlay_over_the_database_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("db")).unwrap();
        let mut seed = Txn::new(&db);
        for k in ["p1", "p3", "p5", "q1"] {
            seed.put_raw(cf::DIR, k.as_bytes().to_vec(), b"db".to_vec());
        }
        db.write(seed.into_batch().unwrap()).unwrap();
        let mut txn = Txn::new(&db);
        txn.put_raw(cf::DIR, b"p2".to_vec(), b"new".to_vec());
        txn.put_raw(cf::DIR, b"p3".to_vec(), b"changed".to_vec());
        txn.delete(cf::DIR, b"p5".to_vec());
        txn.put_raw(cf::DIR, b"p9".to_vec(), b"new".to_vec());
        let all: Vec<(String, String)> = txn
            .scan_prefix(cf::DIR, b"p")
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let expected = [
            ("p1", "db"),
            ("p2", "new"),
            ("p3", "changed"),
            ("p9", "new"),
        ];
        assert_eq!(
            all,
            expected
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec()
        );
        assert_eq!(txn.scan_prefix_limit(cf::DIR, b"p", 2).unwrap().len(), 2);
        let sp = txn.savepoint();
        txn.delete(cf::DIR, b"p1".to_vec());
        txn.rollback_to(sp);
        assert_eq!(txn.scan_prefix(cf::DIR, b"p").unwrap().len(), 4);
    }

    #[test]
    fn the_format_version_is_recorded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("db")).unwrap();
        check_format(&db).unwrap();
        check_format(&db).unwrap();
        let raft_cf = db.cf_handle(cf::RAFT).unwrap();
        db.put_cf(raft_cf, crate::keys::raft::FORMAT, 99u32.to_be_bytes())
            .unwrap();
        assert!(check_format(&db)
            .unwrap_err()
            .to_string()
            .contains("format"));

        let old = tempfile::tempdir().unwrap();
        let db = open(&old.path().join("db")).unwrap();
        db.put_cf(db.cf_handle(cf::LOG).unwrap(), b"x", b"y")
            .unwrap();
        assert!(check_format(&db)
            .unwrap_err()
            .to_string()
            .contains("development build"));
    }
}
