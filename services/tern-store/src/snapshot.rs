//! Snapshot files: a consistent dump of every state-machine column family, written and read
//! as a stream so a snapshot never has to fit in memory.
//!
//! Format: `TERNSNAP1`, a length-prefixed bincode [`SnapshotMeta`], then records
//! `[cf u8][key len u32][key][value len u32][value]`, and a final `0xFF`. Integers are
//! big-endian. The file is built from a RocksDB snapshot (a point-in-time view taken without
//! stopping writes), fsynced, and atomically renamed to `current.snap`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};

use crate::keys::{self, cf};
use crate::types::{LogId, SnapshotMeta, StoredMembership};

const MAGIC: &[u8; 9] = b"TERNSNAP1";
const END: u8 = 0xFF;
/// Write-batch size while installing.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// Name of the live snapshot file inside the snapshot directory.
pub fn current_path(dir: &Path) -> PathBuf {
    dir.join("current.snap")
}

/// Builds a snapshot of `db` into `dir/current.snap` and returns its metadata.
pub fn build(db: &DB, dir: &Path) -> anyhow::Result<SnapshotMeta> {
    std::fs::create_dir_all(dir)?;
    let snap = db.snapshot();
    let read_meta = |key: &[u8]| -> anyhow::Result<Option<Vec<u8>>> {
        Ok(snap.get_cf(db.cf_handle(cf::META).context("meta cf")?, key)?)
    };
    let last_log_id: Option<LogId> = match read_meta(keys::meta::APPLIED)? {
        Some(v) => bincode::deserialize(&v)?,
        None => None,
    };
    let last_membership: StoredMembership = match read_meta(keys::meta::MEMBERSHIP)? {
        Some(v) => bincode::deserialize(&v)?,
        None => StoredMembership::default(),
    };
    let snapshot_id = format!(
        "{}-{}-{:016x}",
        last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
        last_log_id.map(|l| l.index).unwrap_or(0),
        rand::random::<u64>()
    );
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    };

    let tmp = dir.join(format!("build-{}.tmp", meta.snapshot_id));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    let meta_bytes = bincode::serialize(&meta)?;
    w.write_all(&(meta_bytes.len() as u32).to_be_bytes())?;
    w.write_all(&meta_bytes)?;
    for (idx, name) in cf::STATE_MACHINE.iter().enumerate() {
        let handle = db.cf_handle(name).with_context(|| format!("cf {name}"))?;
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        for item in db.iterator_cf_opt(handle, ro, IteratorMode::Start) {
            let (k, v) = item?;
            w.write_all(&[idx as u8])?;
            w.write_all(&(k.len() as u32).to_be_bytes())?;
            w.write_all(&k)?;
            w.write_all(&(v.len() as u32).to_be_bytes())?;
            w.write_all(&v)?;
        }
    }
    w.write_all(&[END])?;
    let file = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("flushing snapshot: {e}"))?;
    file.sync_all()?;
    std::fs::rename(&tmp, current_path(dir))?;
    sync_dir(dir)?;
    Ok(meta)
}

/// Reads the metadata at the head of a snapshot file.
pub fn read_meta(path: &Path) -> anyhow::Result<SnapshotMeta> {
    let mut r =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    read_header(&mut r)
}

fn read_header(r: &mut impl Read) -> anyhow::Result<SnapshotMeta> {
    let mut magic = [0u8; 9];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        bail!("not a tern snapshot file");
    }
    let len = read_u32(r)? as usize;
    if len > 64 << 20 {
        bail!("snapshot header too large");
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(bincode::deserialize(&buf)?)
}

fn read_u32(r: &mut impl Read) -> anyhow::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Replaces the whole state machine with the contents of `path`.
///
/// Crash-safe: a marker is written (synced) first and removed in the last batch, and on
/// start a node that finds the marker installs `current.snap` again.
pub fn install(db: &DB, path: &Path) -> anyhow::Result<SnapshotMeta> {
    let meta_cf = db.cf_handle(cf::META).context("meta cf")?;
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.put_cf_opt(meta_cf, keys::meta::INSTALL_PENDING, b"1", &sync)?;

    for name in cf::STATE_MACHINE {
        if name == cf::META {
            // Key by key, sparing the marker: a crash before the final batch must still find
            // it and install again.
            let keys: Vec<Box<[u8]>> = db
                .iterator_cf(meta_cf, IteratorMode::Start)
                .map(|kv| kv.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            let mut batch = WriteBatch::default();
            for k in keys
                .iter()
                .filter(|k| k.as_ref() != keys::meta::INSTALL_PENDING)
            {
                batch.delete_cf(meta_cf, k);
            }
            db.write(batch)?;
        } else {
            clear_cf(db, name)?;
        }
    }
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let meta = read_header(&mut r)?;
    let handles: Vec<_> = cf::STATE_MACHINE
        .iter()
        .map(|n| db.cf_handle(n).with_context(|| format!("cf {n}")))
        .collect::<anyhow::Result<_>>()?;
    let mut batch = WriteBatch::default();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let handle = handles
            .get(tag[0] as usize)
            .context("corrupt snapshot: unknown column family")?;
        let klen = read_u32(&mut r)? as usize;
        let mut key = vec![0u8; klen];
        r.read_exact(&mut key)?;
        let vlen = read_u32(&mut r)? as usize;
        let mut value = vec![0u8; vlen];
        r.read_exact(&mut value)?;
        if key.as_slice() == keys::meta::INSTALL_PENDING {
            continue;
        }
        batch.put_cf(*handle, key, value);
        if batch.size_in_bytes() > INSTALL_BATCH_BYTES {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    batch.put_cf(
        meta_cf,
        keys::meta::APPLIED,
        bincode::serialize(&meta.last_log_id)?,
    );
    batch.put_cf(
        meta_cf,
        keys::meta::MEMBERSHIP,
        bincode::serialize(&meta.last_membership)?,
    );
    batch.delete_cf(meta_cf, keys::meta::INSTALL_PENDING);
    db.write_opt(batch, &sync)?;
    Ok(meta)
}

/// Deletes every key of a column family (a range tombstone up to the last key).
fn clear_cf(db: &DB, name: &str) -> anyhow::Result<()> {
    let handle = db.cf_handle(name).with_context(|| format!("cf {name}"))?;
    let first = db
        .iterator_cf(handle, IteratorMode::Start)
        .next()
        .transpose()?
        .map(|(k, _)| k);
    let last = db
        .iterator_cf(handle, IteratorMode::End)
        .next()
        .transpose()?
        .map(|(k, _)| k);
    if let (Some(first), Some(last)) = (first, last) {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(handle, &first, &last);
        batch.delete_cf(handle, &last);
        db.write(batch)?;
    }
    Ok(())
}

/// Makes a rename durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
