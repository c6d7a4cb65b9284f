//! The replicated state machine: applies committed entries to the storage engine and builds,
//! serves and installs snapshots.
//!
//! All entries handed to one `apply` call are applied in one [`Txn`] and written as one
//! batch together with the new last-applied log id, so a crash never leaves an entry half
//! applied. Applying, snapshot building and installing all run against the [`Engine`]
//! trait: RocksDB in production, memory in unit tests. The batch is not synced: the log entries are, and on restart openraft re-applies
//! whatever the state machine had not durably recorded.
//!
//! A batch can reach the log twice (a leader appends it, loses leadership before committing
//! it, and the proposer retries it elsewhere while the first copy survives). Every batch has
//! a random id; the state machine applies an id once and answers a second copy with the
//! first one's outcomes, remembering ids for [`REQUEST_WINDOW`] log entries.

// openraft's StorageError is large; it is openraft's API, returned as openraft defines it.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use tokio::sync::watch;

use crate::apply::apply_command;
use crate::command::{Outcome, Reply};
use crate::engine::Engine;
use crate::error::{AppError, ErrorKind};
use crate::keys::{self, cf};
use crate::snapshot;
use crate::txn::Txn;
use crate::types::{LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// How many log entries a request id is remembered for.
pub const REQUEST_WINDOW: u64 = 100_000;
/// Old request ids forgotten per apply call, so pruning never stalls applying.
const PRUNE_PER_APPLY: usize = 256;

/// Held shared by snapshot builds and local reads, exclusively by snapshot installs: a read
/// never sees a half-installed state, and a build never races an install.
pub type StateLock = Arc<std::sync::RwLock<()>>;

/// What the change feed's readers wake up on: the last applied index, a count of apply
/// batches, and the accounts whose change log the last batch wrote to, so a Watch stream
/// re-reads the feed only when its own account changed instead of on every write anywhere.
/// A reader that sees `batch` jump by more than one missed a batch (the channel keeps only
/// the latest value) and re-reads regardless.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Last applied log index.
    pub index: u64,
    /// Apply batches so far (on this node, since it started).
    pub batch: u64,
    /// Accounts with new change records in the last batch; `None`: anything may have
    /// changed (a snapshot was installed, or the node just opened).
    pub accounts: Option<Arc<Vec<u64>>>,
}

impl Applied {
    /// Whether the last batch may have changed `account`'s feed.
    pub fn touches(&self, account: u64) -> bool {
        self.accounts.as_ref().is_none_or(|a| a.contains(&account))
    }
}

/// The state machine of one node.
pub struct StateMachine {
    engine: Arc<dyn Engine>,
    state_lock: StateLock,
    snapshot_dir: PathBuf,
    /// Where the snapshot being received is written.
    receiving: Option<PathBuf>,
    /// Bumped after every apply: the change feed's wake-up.
    applied_tx: Arc<watch::Sender<Applied>>,
    /// The directory's change feed, told of every batch.
    directory: Arc<crate::directory_feed::DirectoryFeed>,
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
        engine: Arc<dyn Engine>,
        snapshot_dir: PathBuf,
        applied_tx: Arc<watch::Sender<Applied>>,
        directory: Arc<crate::directory_feed::DirectoryFeed>,
        state_lock: StateLock,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&snapshot_dir)?;
        // Leftovers of builds and transfers that a crash interrupted.
        for entry in std::fs::read_dir(&snapshot_dir)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if engine.contains(cf::META, keys::meta::INSTALL_PENDING)? {
            tracing::warn!("an interrupted snapshot install was found; installing it again");
            snapshot::install(&*engine, &snapshot::current_path(&snapshot_dir))?;
        }
        let sm = Self {
            engine,
            state_lock,
            snapshot_dir,
            receiving: None,
            applied_tx,
            directory,
        };
        if let Ok((Some(applied), _)) = sm.read_applied() {
            sm.announce(applied.index, None, Vec::new());
        }
        Ok(sm)
    }

    /// Wakes the change feeds' readers after a batch (or a snapshot install or the node's
    /// start: `None`), with the directory names the batch changed.
    fn announce(&self, index: u64, accounts: Option<Vec<u64>>, directory_names: Vec<String>) {
        match accounts {
            Some(_) => self.directory.applied(index, directory_names),
            None => self.directory.reset(index),
        }
        self.applied_tx.send_modify(|a| {
            a.index = index;
            a.batch += 1;
            a.accounts = accounts.map(Arc::new);
        });
    }

    fn read_applied(&self) -> anyhow::Result<(Option<LogId>, StoredMembership)> {
        let txn = Txn::new(&*self.engine);
        let applied: Option<LogId> = txn
            .get::<Option<LogId>>(cf::META, keys::meta::APPLIED)?
            .flatten();
        let membership: StoredMembership = txn
            .get(cf::META, keys::meta::MEMBERSHIP)?
            .unwrap_or_default();
        Ok((applied, membership))
    }
}

fn request_key(id: u64) -> Vec<u8> {
    let mut k = b"r/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Prefix of the request-id index by log index (oldest first), what pruning walks.
const REQUEST_INDEX_PREFIX: &[u8] = b"R/";

fn request_index_key(index: u64) -> Vec<u8> {
    let mut k = REQUEST_INDEX_PREFIX.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// A storage failure inside a command must stop this replica, not become a replicated
/// outcome that the other replicas (whose storage worked) did not produce.
fn storage_failure(outcome: &Outcome) -> Option<&AppError> {
    match outcome {
        Err(e) if e.kind == ErrorKind::Internal => Some(e),
        Ok(Reply::Delivered { results, .. }) => results
            .iter()
            .filter_map(|r| r.result.as_ref().err())
            .find(|e| e.kind == ErrorKind::Internal),
        _ => None,
    }
}

/// Forgets request ids older than the window (a bounded number per call).
fn prune_requests(txn: &mut Txn<'_>, applied: u64) -> Result<(), StorageError> {
    let Some(horizon) = applied.checked_sub(REQUEST_WINDOW) else {
        return Ok(());
    };
    let oldest = txn
        .scan_prefix_limit(cf::DEDUP, REQUEST_INDEX_PREFIX, PRUNE_PER_APPLY)
        .map_err(|e| sm_err(ErrorVerb::Read, e))?;
    for (k, v) in oldest {
        let Some(raw) = k.strip_prefix(REQUEST_INDEX_PREFIX) else {
            break;
        };
        let index = u64::from_be_bytes(
            raw.try_into()
                .map_err(|_| sm_err(ErrorVerb::Read, "bad request index key"))?,
        );
        if index >= horizon {
            break;
        }
        let id = u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| sm_err(ErrorVerb::Read, "bad request id"))?,
        );
        txn.delete(cf::DEDUP, k);
        txn.delete(cf::DEDUP, request_key(id));
    }
    Ok(())
}

/// What applying a batch of entries gave.
struct AppliedBatch {
    responses: Vec<Response>,
    /// Last index applied; 0 for an empty batch.
    last: u64,
    /// Accounts whose change feed the batch extended.
    accounts: Vec<u64>,
    /// Directory names the batch's commands changed (or tried to).
    directory_names: Vec<String>,
}

/// Applies entries; runs on a blocking thread.
fn apply_entries(
    engine: &dyn Engine,
    entries: Vec<openraft::Entry<TypeConfig>>,
) -> Result<AppliedBatch, StorageError> {
    let mut txn = Txn::new(engine);
    let mut responses = Vec::with_capacity(entries.len());
    let mut directory_names = Vec::new();
    let mut last: Option<LogId> = None;
    for entry in entries {
        last = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => responses.push(Response::default()),
            EntryPayload::Normal(req) => {
                if req.id != 0 {
                    let seen: Option<Response> = txn
                        .get(cf::DEDUP, &request_key(req.id))
                        .map_err(|e| sm_err(ErrorVerb::Read, e))?;
                    if let Some(first) = seen {
                        responses.push(first);
                        continue;
                    }
                }
                let outcomes: Vec<Outcome> = req
                    .commands
                    .iter()
                    .map(|c| {
                        crate::metrics::command_applied(c.kind());
                        c.directory_names(&mut directory_names);
                        apply_command(&mut txn, c)
                    })
                    .collect();
                if let Some(e) = outcomes.iter().find_map(storage_failure) {
                    return Err(sm_err(
                        ErrorVerb::Write,
                        format!("applying entry {}: {e}", entry.log_id),
                    ));
                }
                let resp = Response { outcomes };
                if req.id != 0 {
                    txn.put(cf::DEDUP, request_key(req.id), &resp)
                        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                    txn.put_raw(
                        cf::DEDUP,
                        request_index_key(entry.log_id.index),
                        req.id.to_be_bytes().to_vec(),
                    );
                }
                responses.push(resp);
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
        return Ok(AppliedBatch {
            responses,
            last: 0,
            accounts: Vec::new(),
            directory_names,
        });
    };
    // The accounts whose change feed this batch extends (a change key starts with the
    // account id; the feed's retention index is no account's).
    let mut accounts: Vec<u64> = txn
        .written_keys(cf::CHANGES)
        .filter(|k| !k.starts_with(&keys::CHANGE_RETENTION_PREFIX))
        .filter_map(|k| k.get(..8)?.try_into().ok().map(u64::from_be_bytes))
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    prune_requests(&mut txn, last.index)?;
    txn.put(cf::META, keys::meta::APPLIED.to_vec(), &Some(last))
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
    engine
        .write(txn.into_batch())
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
    directory_names.sort_unstable();
    directory_names.dedup();
    Ok(AppliedBatch {
        responses,
        last: last.index,
        accounts,
        directory_names,
    })
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
        let engine = self.engine.clone();
        let batch = tokio::task::spawn_blocking(move || apply_entries(&*engine, entries))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))??;
        if batch.last > 0 {
            self.announce(batch.last, Some(batch.accounts), batch.directory_names);
        }
        Ok(batch.responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            engine: self.engine.clone(),
            dir: self.snapshot_dir.clone(),
            state_lock: self.state_lock.clone(),
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
            // Unlinking is harmless to a transfer still holding the old handle.
            let _ = std::fs::remove_file(old);
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncSeekExt;
        // Copy out of the handle openraft gives us rather than trusting a remembered path: a
        // newer transfer may have started in the meantime.
        let staged = self
            .snapshot_dir
            .join(format!("install-{:016x}.tmp", rand::random::<u64>()));
        {
            snapshot
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|e| snap_err(ErrorVerb::Read, e))?;
            let mut out = tokio::fs::File::create(&staged)
                .await
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
            tokio::io::copy(&mut *snapshot, &mut out)
                .await
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
            out.sync_all()
                .await
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        }
        drop(snapshot);
        if let Some(received) = self.receiving.take() {
            let _ = std::fs::remove_file(received);
        }
        let dir = self.snapshot_dir.clone();
        let engine = self.engine.clone();
        let lock = self.state_lock.clone();
        let expected = meta.snapshot_id.clone();
        let installed = tokio::task::spawn_blocking(move || -> anyhow::Result<SnapshotMeta> {
            let _exclusive = lock.write().unwrap_or_else(|p| p.into_inner());
            let in_file = snapshot::read_meta(&staged)?;
            if in_file.snapshot_id != expected {
                let _ = std::fs::remove_file(&staged);
                anyhow::bail!(
                    "snapshot id mismatch: file has {}, expected {expected}",
                    in_file.snapshot_id
                );
            }
            let current = snapshot::current_path(&dir);
            std::fs::rename(&staged, &current)?;
            snapshot::sync_dir(&dir)?;
            snapshot::install(&*engine, &current)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        if let Some(l) = installed.last_log_id {
            self.announce(l.index, None, Vec::new());
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

/// Builds snapshots from a point-in-time view of the engine, off the apply path.
pub struct SnapshotBuilder {
    engine: Arc<dyn Engine>,
    dir: PathBuf,
    state_lock: StateLock,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let engine = self.engine.clone();
        let dir = self.dir.clone();
        let lock = self.state_lock.clone();
        let meta = tokio::task::spawn_blocking(move || {
            let _shared = lock.read().unwrap_or_else(|p| p.into_inner());
            snapshot::build(&*engine, &dir)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Target};

    fn entry(index: u64, req: crate::types::Request) -> openraft::Entry<TypeConfig> {
        openraft::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(req),
        }
    }

    fn setup(id: u64) -> crate::types::Request {
        crate::types::Request {
            id,
            commands: vec![
                Command::AddDomain {
                    name: "example.test".into(),
                },
                Command::AddUser {
                    address: "a@example.test".into(),
                    password_hash: "h".into(),
                    quota_bytes: 0,
                    now_ms: 1,
                },
            ],
        }
    }

    /// A delivery without a delivery id: only the request id can stop a second copy.
    fn deliver(id: u64) -> crate::types::Request {
        crate::types::Request {
            id,
            commands: vec![Command::Deliver {
                targets: vec![Target {
                    account: "a@example.test".into(),
                    mailbox: "INBOX".into(),
                    delivery_id: String::new(),
                    flags: vec![],
                }],
                body: b"x".to_vec(),
                internal_date: 1,
            }],
        }
    }

    fn applied_once(engine: &dyn Engine) {
        let set_up = apply_entries(engine, vec![entry(1, setup(7))]).unwrap();
        // The directory feed hears of the domain and the user, and of nothing else.
        assert_eq!(set_up.directory_names, ["a@example.test", "example.test"]);
        let first = apply_entries(engine, vec![entry(2, deliver(42))]).unwrap();
        // The delivery wrote to the account's change feed, so its readers are woken; the
        // duplicate wrote nothing, so nobody is.
        assert_eq!(first.accounts.len(), 1, "{:?}", first.accounts);
        assert!(first.directory_names.is_empty());
        let second = apply_entries(engine, vec![entry(3, deliver(42))]).unwrap();
        assert!(second.accounts.is_empty(), "{:?}", second.accounts);
        assert_eq!(
            first.responses, second.responses,
            "the second copy gets the first copy's outcome"
        );
        let txn = Txn::new(engine);
        assert_eq!(txn.scan_prefix(cf::MSG, b"").unwrap().len(), 1);
    }

    #[test]
    fn a_batch_that_reaches_the_log_twice_is_applied_once() {
        applied_once(&crate::engine::MemoryEngine::new());
    }

    #[test]
    fn a_batch_that_reaches_the_log_twice_is_applied_once_on_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("db")).unwrap();
        applied_once(&crate::engine::RocksEngine::new(db));
    }

    #[test]
    fn request_ids_are_forgotten_after_the_window() {
        let engine = crate::engine::MemoryEngine::new();
        apply_entries(&engine, vec![entry(1, setup(7))]).unwrap();
        apply_entries(&engine, vec![entry(2, deliver(42))]).unwrap();
        fn remembered(engine: &dyn crate::engine::KvRead) -> bool {
            Txn::new(engine)
                .exists(cf::DEDUP, &request_key(42))
                .unwrap()
        }
        assert!(remembered(&engine));
        // Still inside the window: kept.
        apply_entries(&engine, vec![entry(REQUEST_WINDOW + 2, deliver(43))]).unwrap();
        assert!(remembered(&engine));
        // Past it: both the id and its index entry go, the newer id stays.
        apply_entries(&engine, vec![entry(REQUEST_WINDOW + 3, deliver(44))]).unwrap();
        assert!(!remembered(&engine));
        let txn = Txn::new(&engine);
        assert!(!txn.exists(cf::DEDUP, &request_index_key(2)).unwrap());
        assert!(txn.exists(cf::DEDUP, &request_key(43)).unwrap());
        assert!(txn
            .exists(cf::DEDUP, &request_index_key(REQUEST_WINDOW + 2))
            .unwrap());
    }
}
