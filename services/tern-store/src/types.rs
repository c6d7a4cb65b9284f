//! The openraft type configuration for tern-store.
//!
//! A log entry's application payload is a [`Request`]: a *batch* of commands proposed
//! together (group commit, see [`crate::proposer`]). Snapshots are files on disk
//! (`tokio::fs::File`), streamed in chunks by openraft's chunked transport, so a snapshot
//! is never held whole in memory.

use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};

/// Raft node identifiers are small integers chosen by the operator (1, 2, 3, ...).
pub type NodeId = u64;

/// A batch of state-machine commands that travels as one Raft log entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// Random id of this batch. A batch can reach the log twice (a leader appends it, loses
    /// leadership, and the proposer retries it elsewhere); the state machine applies an id
    /// only once and answers the second copy with the first one's outcomes.
    pub id: u64,
    /// Commands applied in order, atomically (one RocksDB write batch per entry).
    pub commands: Vec<Command>,
}

/// The outcome of every command of a [`Request`], in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Response {
    /// One outcome per command.
    pub outcomes: Vec<Outcome>,
}

openraft::declare_raft_types!(
    /// Type configuration of tern-store's Raft group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle used throughout the crate.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id in this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// Stored membership in this configuration.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// Snapshot metadata in this configuration.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// Storage errors in this configuration.
pub type StorageError = openraft::StorageError<NodeId>;
