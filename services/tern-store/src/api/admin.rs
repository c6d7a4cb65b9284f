//! The Admin service: cluster status, bootstrap, membership changes (forwarded to the
//! leader) and on-demand compaction.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::admin_client::AdminClient;
use tern_proto::store::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::AppError;

/// Admin service implementation.
pub struct AdminApi(pub Api);

impl AdminApi {
    fn status(&self) -> pb::ClusterStatusResponse {
        let node = &self.0.node;
        let m = node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let leader_id = m.current_leader.unwrap_or(0);
        let leader_addr = membership
            .get_node(&leader_id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let replication = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, n)| {
                let voter = voters.contains(id);
                let role = if *id == leader_id {
                    "leader"
                } else if !voter {
                    "learner"
                } else if *id == node.id && m.state == openraft::ServerState::Candidate {
                    "candidate"
                } else {
                    "follower"
                };
                let last_applied = if *id == node.id {
                    m.last_applied.map(|l| l.index).unwrap_or(0)
                } else {
                    replication
                        .get(id)
                        .copied()
                        .flatten()
                        .map(|l| l.index)
                        .unwrap_or(0)
                };
                pb::Member {
                    id: *id,
                    addr: n.addr.clone(),
                    role: role.into(),
                    last_applied,
                    voter,
                }
            })
            .collect();
        pb::ClusterStatusResponse {
            node_id: node.id,
            leader_id,
            leader_addr,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            members,
        }
    }

    async fn leader_client(&self) -> Result<AdminClient<tonic::transport::Channel>, Status> {
        let (_, addr) = self
            .0
            .node
            .leader()
            .ok_or_else(|| Status::unavailable("no leader elected"))?;
        let channel = self
            .0
            .node
            .channels
            .get(&addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(AdminClient::new(channel))
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(AdminApi::status(self)))
    }

    async fn init(
        &self,
        req: Request<pb::InitClusterRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let by = super::actor(&req);
        let members: Vec<(u64, String)> = req
            .into_inner()
            .members
            .into_iter()
            .map(|m| (m.id, m.addr))
            .collect();
        if members.is_empty() {
            return Err(Status::invalid_argument("init needs at least one member"));
        }
        self.0.node.initialize(&members).await?;
        // Recorded once a leader is elected, without holding up the answer.
        let target = members
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(", ");
        let api = self.0.clone();
        tokio::spawn(async move { api.note_by(by, "init-cluster", target).await });
        Ok(Response::new(AdminApi::status(self)))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        if r.id == 0 || r.addr.is_empty() {
            return Err(Status::invalid_argument(
                "add-node needs an id (1 or more) and an address",
            ));
        }
        let target = format!(
            "node {} at {}{}",
            r.id,
            r.addr,
            if r.learner_only { " (learner)" } else { "" }
        );
        let status = if self.0.node.is_leader() {
            self.0.node.add_node(r.id, r.addr, r.learner_only).await?;
            AdminApi::status(self)
        } else {
            self.leader_client().await?.add_node(r).await?.into_inner()
        };
        self.0.note_by(by, "add-node", target).await;
        Ok(Response::new(status))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let by = super::actor(&req);
        let r = req.into_inner();
        let target = format!("node {}", r.id);
        if !self.0.node.is_leader() {
            let status = self.leader_client().await?.remove_node(r).await?;
            self.0.note_by(by, "remove-node", target).await;
            return Ok(status);
        }
        let known = self
            .0
            .node
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&r.id)
            .is_some();
        if !known {
            return Err(AppError::not_found(format!("node {} is not a member", r.id)).into());
        }
        self.0.node.remove_node(r.id).await?;
        self.0.note_by(by, "remove-node", target).await;
        Ok(Response::new(AdminApi::status(self)))
    }

    async fn audit(
        &self,
        req: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let entries = self
            .0
            .read(move |txn| crate::apply::audit::list(txn, limit, r.before))
            .await?
            .into_iter()
            .map(|a| pb::AuditEntry {
                seq: a.seq,
                at_ms: a.at_ms,
                by: a.by,
                action: a.action,
                target: a.target,
            })
            .collect();
        Ok(Response::new(pb::AuditResponse { entries }))
    }

    async fn compact(
        &self,
        _: Request<pb::CompactRequest>,
    ) -> Result<Response<pb::CompactResponse>, Status> {
        let (snapshot_index, purged_index) = self.0.node.compact().await?;
        Ok(Response::new(pb::CompactResponse {
            snapshot_index,
            purged_index,
        }))
    }
}
