//! The replicated state machine: applies committed entries to RocksDB and builds, serves and
//! installs snapshots.
//!
//! All entries handed to one `apply` call are applied in one [`Txn`] and written as one
//! batch together with the new last-applied log id, so a crash never leaves an entry half
//! applied. The batch is not synced: the log entries are, and on restart openraft re-applies
//! whatever the state machine had not durably recorded.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use tokio::sync::watch;

use crate::apply::apply_command;
use crate::db::{self, Db, Txn};
use crate::keys::{self, cf};
use crate::snapshot;
use crate::types::{LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The state machine of one node.
pub struct StateMachine {
    db: Db,
    snapshot_dir: PathBuf,
    /// Where the snapshot being received is written.
    receiving: Option<PathBuf>,
    /// Bumped after every apply, with the last applied index: the change feed's wake-up.
    applied_tx: Arc<watch::Sender<u64>>,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        AnyError::error(e.to_string()),
    )
    .into()
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        AnyError::error(e.to_string()),
    )
    .into()
}

impl StateMachine {
    /// Opens the state machine, finishing an interrupted snapshot install if there was one.
    pub fn open(
        db: Db,
        snapshot_dir: PathBuf,
        applied_tx: Arc<watch::Sender<u64>>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&snapshot_dir)?;
        let pending: Option<Vec<u8>> =
            db.get_cf(db::handle(&db, cf::META)?, keys::meta::INSTALL_PENDING)?;
        if pending.is_some() {
            tracing::warn!("an interrupted snapshot install was found; installing it again");
            snapshot::install(&db, &snapshot::current_path(&snapshot_dir))?;
        }
        let sm = Self {
            db,
            snapshot_dir,
            receiving: None,
            applied_tx,
        };
        if let Ok((Some(applied), _)) = sm.read_applied() {
            sm.applied_tx.send_replace(applied.index);
        }
        Ok(sm)
    }

    fn read_applied(&self) -> anyhow::Result<(Option<LogId>, StoredMembership)> {
        let applied: Option<LogId> =
            db::get::<Option<LogId>>(&self.db, cf::META, keys::meta::APPLIED)?.flatten();
        let membership: StoredMembership =
            db::get(&self.db, cf::META, keys::meta::MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }
}

/// Applies entries; runs on a blocking thread.
fn apply_entries(
    db: &Db,
    entries: Vec<openraft::Entry<TypeConfig>>,
) -> Result<(Vec<Response>, u64), StorageError> {
    let mut txn = Txn::new(db);
    let mut responses = Vec::with_capacity(entries.len());
    let mut last: Option<LogId> = None;
    for entry in entries {
        last = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => responses.push(Response::default()),
            EntryPayload::Normal(req) => {
                let outcomes = req
                    .commands
                    .iter()
                    .map(|c| apply_command(&mut txn, c))
                    .collect();
                responses.push(Response { outcomes });
            }
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m);
                txn.put(cf::META, keys::meta::MEMBERSHIP.to_vec(), &stored)
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                responses.push(Response::default());
            }
        }
    }
    let Some(last) = last else {
        return Ok((responses, 0));
    };
    txn.put(cf::META, keys::meta::APPLIED.to_vec(), &Some(last))
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
    let batch = txn.into_batch().map_err(|e| sm_err(ErrorVerb::Write, e))?;
    db.write(batch).map_err(|e| sm_err(ErrorVerb::Write, e))?;
    Ok((responses, last.index))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_applied().map_err(|e| sm_err(ErrorVerb::Read, e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let db = self.db.clone();
        let (responses, last) = tokio::task::spawn_blocking(move || apply_entries(&db, entries))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))??;
        if last > 0 {
            self.applied_tx.send_replace(last);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            dir: self.snapshot_dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self
            .snapshot_dir
            .join(format!("recv-{:016x}.tmp", rand::random::<u64>()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        if let Some(old) = self.receiving.replace(path) {
            let _ = std::fs::remove_file(old);
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        snapshot
            .sync_all()
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        drop(snapshot);
        let received = self
            .receiving
            .take()
            .ok_or_else(|| snap_err(ErrorVerb::Write, "no snapshot was being received"))?;
        let dir = self.snapshot_dir.clone();
        let db = self.db.clone();
        let expected = meta.snapshot_id.clone();
        let installed = tokio::task::spawn_blocking(move || -> anyhow::Result<SnapshotMeta> {
            let in_file = snapshot::read_meta(&received)?;
            if in_file.snapshot_id != expected {
                anyhow::bail!(
                    "snapshot id mismatch: file has {}, expected {expected}",
                    in_file.snapshot_id
                );
            }
            let current = snapshot::current_path(&dir);
            std::fs::rename(&received, &current)?;
            snapshot::sync_dir(&dir)?;
            snapshot::install(&db, &current)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        if let Some(l) = installed.last_log_id {
            self.applied_tx.send_replace(l.index);
        }
        tracing::info!(snapshot = %installed.snapshot_id, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let path = snapshot::current_path(&self.snapshot_dir);
        if !path.exists() {
            return Ok(None);
        }
        let meta = snapshot::read_meta(&path).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Builds snapshots from a RocksDB point-in-time view, off the apply path.
pub struct SnapshotBuilder {
    db: Db,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let db = self.db.clone();
        let dir = self.dir.clone();
        let meta = tokio::task::spawn_blocking(move || snapshot::build(&db, &dir))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        let file = tokio::fs::File::open(snapshot::current_path(&self.dir))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}
