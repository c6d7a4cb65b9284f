//! The RocksDB instance of a node: opening it and checking its format version.
//!
//! One RocksDB database per node holds the Raft log and the state machine, one column family
//! per keyspace (see [`crate::keys::cf`]). The state machine reads and writes it through
//! [`crate::engine::RocksEngine`]; the Raft log store uses it directly.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, DB};

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

#[cfg(test)]
mod tests {
    use super::*;

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
