//! Issue 18, item 3: openraft's own storage conformance suite (`openraft::testing::Suite`:
//! log reads and purges, vote and committed-index persistence, membership from the log and
//! the state machine, snapshots built and installed) against tern-store's Raft log on RocksDB
//! and its state machine on each engine it has: RocksDB, as in production, and the in-memory
//! engine the unit tests use.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use tempfile::TempDir;
use tern_store::engine::{Engine, MemoryEngine, RocksEngine};
use tern_store::log_store::LogStore;
use tern_store::state_machine::{Applied, StateLock, StateMachine};
use tern_store::types::{StorageError, TypeConfig};

/// Which engine the state machine runs on.
#[derive(Clone, Copy)]
enum Machine {
    Rocks,
    Memory,
}

/// A fresh node's storage in a temporary directory (the guard openraft keeps while a test
/// runs, removed after it).
struct Fresh(Machine);

fn failed(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Store,
        ErrorVerb::Write,
        AnyError::error(format!("{what}: {e}")),
    )
    .into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Fresh {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| failed("temporary directory", e))?;
        let db = tern_store::db::open(&dir.path().join("db")).map_err(|e| failed("RocksDB", e))?;
        tern_store::db::check_format(&db).map_err(|e| failed("format", e))?;
        let engine: Arc<dyn Engine> = match self.0 {
            Machine::Rocks => Arc::new(RocksEngine::new(db.clone())),
            Machine::Memory => Arc::new(MemoryEngine::new()),
        };
        let (applied, _) = tokio::sync::watch::channel(Applied::default());
        let sm = StateMachine::open(
            engine,
            dir.path().join("snapshots"),
            Arc::new(applied),
            Arc::default(),
            StateLock::default(),
        )
        .map_err(|e| failed("state machine", e))?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_suite_on_rocksdb() -> Result<(), Box<StorageError>> {
    Suite::test_all(Fresh(Machine::Rocks)).map_err(Box::new)
}

#[test]
fn openraft_storage_suite_with_the_in_memory_state_machine() -> Result<(), Box<StorageError>> {
    Suite::test_all(Fresh(Machine::Memory)).map_err(Box::new)
}
