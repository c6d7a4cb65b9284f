//! Local reads of the state machine, always under the state lock.

use std::sync::Arc;

use super::{Engine, KvRead};
use crate::error::AppResult;
use crate::state_machine::StateLock;
use crate::txn::Txn;

/// The state machine's engine as local readers see it. Every read holds the state lock
/// shared; a snapshot install holds it exclusively while it replaces the data, so no read
/// sees a half-installed state. There is no way to reach the engine from here without the
/// lock: that is the point of the type.
#[derive(Clone)]
pub struct LocalState {
    engine: Arc<dyn Engine>,
    lock: StateLock,
}

impl LocalState {
    /// Pairs the node's engine with the lock its state machine installs snapshots under.
    pub fn new(engine: Arc<dyn Engine>, lock: StateLock) -> Self {
        Self { engine, lock }
    }

    /// Runs `f` over the state as applied so far, holding the lock shared. Blocks (on the
    /// lock and on storage): call it from a blocking thread.
    pub fn read<T>(&self, f: impl FnOnce(&Txn<'_>) -> AppResult<T>) -> AppResult<T> {
        let _shared = self.lock.read().unwrap_or_else(|p| p.into_inner());
        f(&Txn::new(&*self.engine))
    }

    /// Runs `f` over the engine itself, holding the lock shared: for walks too long to
    /// collect into memory (the queue-depth count) that need no transaction overlay.
    pub fn read_engine<T>(&self, f: impl FnOnce(&dyn KvRead) -> AppResult<T>) -> AppResult<T> {
        let _shared = self.lock.read().unwrap_or_else(|p| p.into_inner());
        f(&*self.engine)
    }

    /// The lock, for engine-specific work that must also exclude installs (a checkpoint).
    pub fn lock(&self) -> &StateLock {
        &self.lock
    }
}
