//! The production engine: the node's RocksDB, one column family per keyspace.

use rocksdb::{
    DBIteratorWithThreadMode, Direction, IteratorMode, PrefixRange, ReadOptions, Snapshot,
    WriteBatch, WriteOptions, DB,
};

use super::{Batch, Engine, KvIter, KvRead};
use crate::db::{self, Db};
use crate::error::{AppError, AppResult};

/// [`Engine`] over the node's RocksDB (opened by [`crate::db::open`], which creates every
/// column family and checks nothing else: the format check is [`crate::db::check_format`]).
#[derive(Clone)]
pub struct RocksEngine {
    db: Db,
}

impl RocksEngine {
    /// Wraps an open database.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database itself, for the RocksDB-specific work the trait leaves out
    /// (checkpoints, size properties). Reads of the state machine through it must hold the
    /// state lock, as [`super::LocalState`] does.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn write_batch(&self, batch: Batch) -> AppResult<WriteBatch> {
        let mut wb = WriteBatch::default();
        for (cf, key, value) in batch.into_ops() {
            let h = db::handle(&self.db, cf)?;
            match value {
                Some(v) => wb.put_cf(h, key, v),
                None => wb.delete_cf(h, key),
            }
        }
        Ok(wb)
    }
}

/// Read options bounding a walk to `prefix` inside RocksDB too, so it never reads past it.
fn prefix_options(prefix: &[u8]) -> ReadOptions {
    let mut ro = ReadOptions::default();
    ro.set_iterate_range(PrefixRange(prefix));
    ro
}

/// Boxes a RocksDB iterator as a [`KvIter`] that ends at the first key outside `prefix`.
fn bounded<'a>(iter: DBIteratorWithThreadMode<'a, DB>, prefix: &[u8]) -> KvIter<'a> {
    let prefix = prefix.to_vec();
    Box::new(
        iter.map(|item| item.map_err(AppError::from))
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))),
    )
}

impl KvRead for RocksEngine {
    fn get(&self, cf: &str, key: &[u8]) -> AppResult<Option<Vec<u8>>> {
        Ok(self.db.get_cf(db::handle(&self.db, cf)?, key)?)
    }

    fn contains(&self, cf: &str, key: &[u8]) -> AppResult<bool> {
        Ok(self
            .db
            .get_pinned_cf(db::handle(&self.db, cf)?, key)?
            .is_some())
    }

    fn scan<'a>(&'a self, cf: &str, prefix: &[u8], start: &[u8]) -> AppResult<KvIter<'a>> {
        let iter = self.db.iterator_cf_opt(
            db::handle(&self.db, cf)?,
            prefix_options(prefix),
            IteratorMode::From(start, Direction::Forward),
        );
        Ok(bounded(iter, prefix))
    }
}

impl Engine for RocksEngine {
    fn write(&self, batch: Batch) -> AppResult<()> {
        self.db.write(self.write_batch(batch)?)?;
        Ok(())
    }

    fn write_synced(&self, batch: Batch) -> AppResult<()> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(self.write_batch(batch)?, &sync)?;
        Ok(())
    }

    fn view(&self) -> AppResult<Box<dyn KvRead + '_>> {
        Ok(Box::new(RocksView {
            db: &self.db,
            snap: self.db.snapshot(),
        }))
    }

    fn clear(&self, cf: &'static str) -> AppResult<()> {
        let h = db::handle(&self.db, cf)?;
        let first = self
            .db
            .iterator_cf(h, IteratorMode::Start)
            .next()
            .transpose()?;
        let last = self
            .db
            .iterator_cf(h, IteratorMode::End)
            .next()
            .transpose()?;
        if let (Some((first, _)), Some((last, _))) = (first, last) {
            // One range tombstone (its end is exclusive) and the last key itself.
            let mut wb = WriteBatch::default();
            wb.delete_range_cf(h, &first, &last);
            wb.delete_cf(h, &last);
            self.db.write(wb)?;
        }
        Ok(())
    }
}

/// A RocksDB snapshot (a point-in-time view taken without stopping writes) as a [`KvRead`].
struct RocksView<'a> {
    db: &'a DB,
    snap: Snapshot<'a>,
}

impl KvRead for RocksView<'_> {
    fn get(&self, cf: &str, key: &[u8]) -> AppResult<Option<Vec<u8>>> {
        Ok(self.snap.get_cf(db::handle(self.db, cf)?, key)?)
    }

    fn contains(&self, cf: &str, key: &[u8]) -> AppResult<bool> {
        Ok(self
            .snap
            .get_pinned_cf(db::handle(self.db, cf)?, key)?
            .is_some())
    }

    fn scan<'a>(&'a self, cf: &str, prefix: &[u8], start: &[u8]) -> AppResult<KvIter<'a>> {
        let iter = self.snap.iterator_cf_opt(
            db::handle(self.db, cf)?,
            prefix_options(prefix),
            IteratorMode::From(start, Direction::Forward),
        );
        Ok(bounded(iter, prefix))
    }
}
