//! A running store node: Raft, the database, and the two paths every request takes —
//! [`Node::write`] (group-committed, forwarded to the leader when this node is not it) and
//! [`Node::read_barrier`] (read-index: wait until this node has applied everything the
//! leader had committed when the read arrived).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use tern_proto::raft::v1::{ForwardRequest, ReadIndexRequest};
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use crate::command::{Command, Outcome};
use crate::config::StoreConfig;
use crate::db::Db;
use crate::engine::LocalState;
use crate::error::{AppError, AppResult};
use crate::network::Channels;
use crate::proposer::Proposer;
use crate::types::{NodeId, Raft, Request, Response};

/// Shared state of a running node.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// The Raft handle.
    pub raft: Raft,
    /// The state machine for local reads (after a read barrier, or where a slightly stale
    /// view is harmless): every read through it holds the state lock.
    pub state: LocalState,
    /// The RocksDB database itself, for what only RocksDB does (checkpoints, size
    /// properties); never for reading the state machine, which goes through [`Node::state`].
    pub db: Db,
    /// Channels to peers (Raft, forwarding).
    pub channels: Channels,
    /// What was last applied, for change-feed wake-ups.
    pub applied: watch::Receiver<crate::state_machine::Applied>,
    /// The directory's change feed (names changed by applied batches).
    pub directory: Arc<crate::directory_feed::DirectoryFeed>,
    /// Settings.
    pub config: StoreConfig,
    /// The data directory's free space, sampled by [`crate::disk::watch_free_space`].
    pub free_space: crate::disk::FreeSpace,
    proposer: Proposer,
}

/// What the state machine tells the node's readers after each apply.
pub struct Feeds {
    /// The last applied batch (the change feed's wake-ups).
    pub applied: watch::Receiver<crate::state_machine::Applied>,
    /// The directory's change feed.
    pub directory: Arc<crate::directory_feed::DirectoryFeed>,
}

/// Marker text of the status a non-leader returns to a forwarded request: nothing was done,
/// so the sender may retry elsewhere.
pub const NOT_LEADER: &str = "not the leader";

/// What a leader answers a forwarded batch it appended and then lost its leadership over:
/// the batch may still commit under the next leader, so the follower must not call its
/// outcome a definite "nothing done" (unlike [`NOT_LEADER`], said before appending).
pub const LOST_LEADERSHIP: &str = "lost the leadership after appending; the write may still commit";

impl Node {
    /// Wires a node together; the proposer task starts here.
    pub fn new(
        id: NodeId,
        raft: Raft,
        state: LocalState,
        db: Db,
        channels: Channels,
        feeds: Feeds,
        config: StoreConfig,
    ) -> Arc<Self> {
        let Feeds { applied, directory } = feeds;
        Arc::new_cyclic(|weak| Node {
            id,
            raft,
            state,
            db,
            channels,
            applied,
            directory,
            free_space: crate::disk::FreeSpace::new(config.min_free_mb.saturating_mul(1 << 20)),
            config,
            proposer: Proposer::start(weak.clone()),
        })
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.write_timeout_ms)
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.config.read_timeout_ms)
    }

    /// Commits one command through Raft and returns its outcome. Concurrent calls are
    /// batched into shared log entries (group commit).
    pub async fn write(&self, cmd: Command) -> Outcome {
        self.free_space.check(self.id, std::iter::once(&cmd))?;
        let started = std::time::Instant::now();
        let outcome = self.proposer.propose(cmd).await;
        crate::metrics::commit_observed(started);
        outcome
    }

    /// The current leader's id and address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// Whether this node is the leader right now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Appends a batch to the log (here, or at the leader) and waits for it to be applied.
    ///
    /// Fails UNAVAILABLE when no majority commits it within the write timeout; the outcome
    /// is then unknown, and idempotent commands (deliveries with an id) may be retried.
    pub async fn submit(&self, req: Request) -> AppResult<Response> {
        let deadline = Instant::now() + self.write_timeout();
        let unknown = || {
            AppError::unavailable(format!(
                "no quorum: the write was not committed within {} ms (its outcome is unknown; retry idempotently)",
                self.config.write_timeout_ms
            ))
        };
        // Whether an attempt may have reached a leader: then running out of time is an
        // unknown outcome, not a definite "nothing was done".
        let mut maybe_sent = false;
        loop {
            if self.is_leader() || self.leader().is_none() {
                match timeout_at(deadline, self.raft.client_write(req.clone())).await {
                    Err(_) => return Err(unknown()),
                    Ok(Ok(resp)) => return Ok(resp.data),
                    Ok(Err(e)) => {
                        if e.forward_to_leader::<BasicNode>().is_none() {
                            // A node shutting down or failed: an earlier attempt may still
                            // commit.
                            if maybe_sent {
                                return Err(unknown());
                            }
                            return Err(AppError::unavailable(format!("raft: {e}")));
                        }
                        // Not the leader (any more). The batch may have been appended before
                        // a newer leader truncated it, or may survive and commit later; a
                        // retry is safe because the state machine applies a request id once.
                        // Running out of time after this is therefore an unknown outcome.
                        maybe_sent = true;
                    }
                }
            } else if let Some((leader, addr)) = self.leader() {
                if leader != self.id {
                    match self.forward(&addr, &req, deadline).await {
                        Ok(resp) => return Ok(resp),
                        Err(ForwardError::NotLeader) => {}
                        // The leader could not be reached (it died, or is cut off): try again
                        // until the deadline, at whichever node leads by then. Safe even if
                        // the batch did reach it: the state machine applies a request id
                        // once and answers a second copy with the first one's outcome.
                        Err(ForwardError::Unreached) => maybe_sent = true,
                        // A leader that appended the batch and then stepped down: the same
                        // as the local case above.
                        Err(ForwardError::LostLeadership) => maybe_sent = true,
                        // An earlier attempt may have reached a leader, and this refusal
                        // does not undo it.
                        Err(ForwardError::Failed(_)) if maybe_sent => return Err(unknown()),
                        Err(ForwardError::Failed(e)) => return Err(e),
                    }
                }
            }
            if Instant::now() + Duration::from_millis(50) >= deadline {
                if maybe_sent {
                    return Err(unknown());
                }
                return Err(AppError::unavailable(
                    "no leader elected within the write timeout",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward(
        &self,
        addr: &str,
        req: &Request,
        deadline: Instant,
    ) -> Result<Response, ForwardError> {
        let command = bincode::serialize(req)
            .map_err(|e| ForwardError::Failed(AppError::internal(e.to_string())))?;
        let mut client = self.channels.raft_client(addr).map_err(|e| {
            ForwardError::Failed(AppError::unavailable(format!("leader {addr}: {e}")))
        })?;
        let mut request = tonic::Request::new(ForwardRequest { command });
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        tern_telemetry::grpc::inject_current(request.metadata_mut());
        match client.forward(request).await {
            Ok(reply) => bincode::deserialize(&reply.into_inner().outcome).map_err(|e| {
                ForwardError::Failed(AppError::internal(format!("leader reply: {e}")))
            }),
            Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message() == NOT_LEADER => {
                Err(ForwardError::NotLeader)
            }
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message() == LOST_LEADERSHIP =>
            {
                Err(ForwardError::LostLeadership)
            }
            // A status with a source is the client's own transport failure (connecting, the
            // TLS handshake, a connection cut): the leader did not answer. One without came
            // from the leader, which decided.
            Err(s) if std::error::Error::source(&s).is_some() => Err(ForwardError::Unreached),
            // The deadline ran out on this side (tonic answers CANCELLED "Timeout expired",
            // without a source) or the leader's: the batch may be in its log.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
                ) =>
            {
                Err(ForwardError::Unreached)
            }
            // Its answer says whether the outcome is unknown (a time-out) or not (a node
            // low on disk space refuses before appending).
            Err(s) => Err(ForwardError::Failed(AppError::unavailable(format!(
                "the leader at {addr} answered: {}",
                s.message()
            )))),
        }
    }

    /// Handles a batch forwarded by a follower: only the leader appends it.
    pub async fn accept_forwarded(&self, req: Request) -> Result<Response, tonic::Status> {
        if !self.is_leader() {
            return Err(tonic::Status::failed_precondition(NOT_LEADER));
        }
        self.free_space.check(self.id, req.commands.iter())?;
        match timeout_at(
            Instant::now() + self.write_timeout(),
            self.raft.client_write(req),
        )
        .await
        {
            Err(_) => Err(AppError::unavailable(
                "no quorum: the write was not committed in time; outcome unknown",
            )
            .into()),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) if e.forward_to_leader::<BasicNode>().is_some() => {
                Err(tonic::Status::failed_precondition(LOST_LEADERSHIP))
            }
            Ok(Err(e)) => Err(AppError::unavailable(format!("raft: {e}")).into()),
        }
    }

    /// Makes the next local read linearizable: the leader confirms its leadership with a
    /// quorum and names its commit index; this node waits until it has applied that index.
    pub async fn read_barrier(&self) -> AppResult<()> {
        let deadline = Instant::now() + self.read_timeout();
        let no_quorum = || AppError::unavailable("no quorum: cannot confirm a linearizable read");
        let index = loop {
            if self.is_leader() {
                let (read, _) = timeout_at(deadline, self.raft.get_read_log_id())
                    .await
                    .map_err(|_| no_quorum())?
                    .map_err(|e| AppError::unavailable(format!("read index: {e}")))?;
                break read.map(|l| l.index).unwrap_or(0);
            }
            if let Some((leader, addr)) = self.leader() {
                if leader != self.id {
                    let mut client = self
                        .channels
                        .raft_client(&addr)
                        .map_err(|e| AppError::unavailable(e.to_string()))?;
                    let mut request = tonic::Request::new(ReadIndexRequest {});
                    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
                    match client.read_index(request).await {
                        Ok(r) => break r.into_inner().index,
                        Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                        Err(s) => {
                            return Err(AppError::unavailable(format!(
                                "read index from {addr}: {}",
                                s.message()
                            )))
                        }
                    }
                }
            }
            if Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(no_quorum());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|e| AppError::unavailable(format!("waiting to apply index {index}: {e}")))?;
        Ok(())
    }

    /// Leader side of [`Node::read_barrier`].
    pub async fn read_index(&self) -> Result<u64, tonic::Status> {
        if !self.is_leader() {
            return Err(tonic::Status::failed_precondition(NOT_LEADER));
        }
        let (read, _) = timeout_at(
            Instant::now() + self.read_timeout(),
            self.raft.get_read_log_id(),
        )
        .await
        .map_err(|_| tonic::Status::unavailable("no quorum"))?
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(read.map(|l| l.index).unwrap_or(0))
    }

    /// Initializes a new cluster with `members` (only on a node that has no state yet).
    pub async fn initialize(&self, members: &[(NodeId, String)]) -> AppResult<()> {
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        if !nodes.contains_key(&self.id) {
            return Err(AppError::invalid(format!(
                "the member list must include this node ({})",
                self.id
            )));
        }
        self.raft
            .initialize(nodes)
            .await
            .map_err(|e| AppError::precondition(format!("initialize: {e}")))
    }

    /// Adds a node as a learner, waits for it to catch up, then (unless `learner_only`)
    /// promotes it to voter. Must run on the leader.
    pub async fn add_node(&self, id: NodeId, addr: String, learner_only: bool) -> AppResult<()> {
        self.require_leader()?;
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(|e| AppError::unavailable(format!("add learner {id}: {e}")))?;
        if !learner_only {
            let voters: BTreeSet<NodeId> = [id].into();
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(voters), true)
                .await
                .map_err(|e| AppError::unavailable(format!("promote {id}: {e}")))?;
        }
        Ok(())
    }

    /// Removes a node from the voters and from the cluster. Must run on the leader.
    pub async fn remove_node(&self, id: NodeId) -> AppResult<()> {
        self.require_leader()?;
        let m = self.raft.metrics().borrow().membership_config.clone();
        let set: BTreeSet<NodeId> = [id].into();
        if m.membership().voter_ids().any(|v| v == id) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(set.clone()), false)
                .await
                .map_err(|e| AppError::unavailable(format!("remove voter {id}: {e}")))?;
        }
        if m.membership().get_node(&id).is_some() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(set), false)
                .await
                .map_err(|e| AppError::unavailable(format!("remove node {id}: {e}")))?;
        }
        Ok(())
    }

    fn require_leader(&self) -> AppResult<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(AppError::precondition(NOT_LEADER))
        }
    }

    /// Builds a snapshot covering everything applied so far (unless one already does) and
    /// purges the log up to it. Returns (snapshot index, purged index).
    pub async fn compact(&self) -> AppResult<(u64, u64)> {
        let mut rx = self.raft.metrics();
        let applied = rx.borrow().last_applied.map(|l| l.index).unwrap_or(0);
        let covered = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
            m.snapshot.map(|l| l.index).unwrap_or(0) >= applied
        };
        if !covered(&rx.borrow()) {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| AppError::internal(e.to_string()))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !covered(&rx.borrow_and_update()) {
                if timeout_at(deadline, rx.changed()).await.is_err() {
                    return Err(AppError::unavailable(
                        "snapshot did not complete within 60 s",
                    ));
                }
            }
        }
        let snap = rx.borrow().snapshot.map(|l| l.index).unwrap_or(0);
        self.raft
            .trigger()
            .purge_log(snap)
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
        // Purging is asynchronous; give it a moment so the caller sees its effect.
        let deadline = Instant::now() + Duration::from_secs(2);
        while rx.borrow_and_update().purged.map(|l| l.index).unwrap_or(0) < snap {
            if timeout_at(deadline, rx.changed()).await.is_err() {
                break;
            }
        }
        let purged = rx.borrow().purged.map(|l| l.index).unwrap_or(0);
        Ok((snap, purged))
    }
}

enum ForwardError {
    /// The node asked is not the leader: nothing was done.
    NotLeader,
    /// The leader appended the batch, then lost its leadership: it may still commit.
    LostLeadership,
    /// The leader could not be reached or did not answer: the batch may or may not have
    /// reached it.
    Unreached,
    /// The leader answered with an error.
    Failed(AppError),
}
