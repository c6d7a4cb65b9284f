//! The store side: reading the membership from the Raft leader and executing
//! [`Action`]s through the store's Admin gRPC API.
//!
//! Status is read from the leader, not from whichever node the endpoint reaches: only the
//! leader tracks how far each node's log has been replicated (a follower reports 0 for its
//! peers), and a learner's progress is what promotion depends on. Any node forwards
//! `AddNode`/`RemoveNode` to the leader, but the controller calls the leader directly since it
//! found it anyway.
//!
//! What the calls do on the store (services/tern-store `Node::add_node`/`remove_node`):
//! `AddNode{learner_only: true}` adds a learner and blocks until it has caught up (openraft's
//! blocking `add_learner`, with no deadline of its own); `AddNode{learner_only: false}`
//! re-adds it (a no-op for an existing node) and promotes it to voter; `RemoveNode` takes a
//! voter out of the voters without keeping it as a learner, then out of the nodes. Hence every
//! call here has a client-side deadline: a learner that never catches up must not wedge the
//! controller; the membership change it made stays and the next observation picks it up.
//!
//! Every call is mutual TLS ([`tern_proto::tls`]): the controller presents its `controller`
//! certificate (the preStop hook the store pod's own), and accepts only a server whose
//! certificate names the `store` role. The store's table allows the `controller` role
//! Status, AddNode and RemoveNode, and every role Status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::admin_client::AdminClient;
use tern_proto::tls::ClusterTls;
use tern_trust::Role;
use tonic::transport::Channel;

use crate::decide::{Action, ClusterState, MemberState, NodeId};

/// `http://host:port` for a store address as the membership keeps it (`host:port`);
/// addresses that already carry a scheme are kept. (The scheme only names the address: the
/// connector speaks TLS whatever it says.)
pub fn url_of(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The membership part of a leader's Status, as [`crate::decide`] wants it.
pub fn cluster_state(status: &pb::ClusterStatusResponse) -> ClusterState {
    ClusterState {
        leader: (status.leader_id != 0).then_some(status.leader_id),
        last_log_index: status.last_log_index,
        members: status
            .members
            .iter()
            .map(|m| MemberState {
                id: m.id,
                voter: m.voter,
                last_applied: m.last_applied,
            })
            .collect(),
    }
}

/// gRPC access to the store's Admin API, with one cached channel per address.
///
/// Channels are lazy (connected on first use, reconnected by tonic after failures), so a
/// store node that is down costs a failed call, not a stuck controller. Each new connection
/// takes the certificates as they are on disk then ([`ClusterTls`] reloads them).
pub struct StoreAdmin {
    tls: Arc<ClusterTls>,
    channels: Mutex<HashMap<String, Channel>>,
    call_timeout: Duration,
    change_timeout: Duration,
}

impl StoreAdmin {
    /// `tls` is the certificate to present; `call_timeout` bounds Status calls and connects
    /// (the TLS handshake included); `change_timeout` bounds membership changes, which block
    /// on the store until a learner has caught up.
    pub fn new(tls: Arc<ClusterTls>, call_timeout: Duration, change_timeout: Duration) -> Self {
        Self {
            tls,
            channels: Mutex::new(HashMap::new()),
            call_timeout,
            change_timeout,
        }
    }

    fn client(&self, url: &str) -> anyhow::Result<AdminClient<Channel>> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| anyhow::anyhow!("channel cache poisoned"))?;
        if let Some(ch) = channels.get(url) {
            return Ok(AdminClient::new(ch.clone()));
        }
        let ch = tern_proto::tls::endpoint(url)
            .with_context(|| format!("bad store URL {url:?}"))?
            .connect_timeout(self.call_timeout)
            .connect_with_connector_lazy(self.tls.connector(Role::Store));
        channels.insert(url.to_owned(), ch.clone());
        Ok(AdminClient::new(ch))
    }

    /// Status of the node at `url`.
    pub async fn status(&self, url: &str) -> anyhow::Result<pb::ClusterStatusResponse> {
        let mut client = self.client(url)?;
        let resp = tokio::time::timeout(
            self.call_timeout,
            client.status(pb::ClusterStatusRequest {}),
        )
        .await
        .with_context(|| format!("Status from {url} timed out"))?
        .with_context(|| format!("Status from {url}"))?;
        Ok(resp.into_inner())
    }

    /// The leader's URL and Status, reached through the node at `endpoint`; `Ok(None)` when
    /// no leader is known (or the one named does not think it leads).
    pub async fn leader_status(
        &self,
        endpoint: &str,
    ) -> anyhow::Result<Option<(String, pb::ClusterStatusResponse)>> {
        let first = self.status(endpoint).await?;
        if first.leader_id == 0 {
            return Ok(None);
        }
        if first.node_id == first.leader_id {
            return Ok(Some((endpoint.to_owned(), first)));
        }
        if first.leader_addr.is_empty() {
            return Ok(None);
        }
        let url = url_of(&first.leader_addr);
        let leader = self.status(&url).await?;
        Ok((leader.leader_id != 0 && leader.node_id == leader.leader_id).then_some((url, leader)))
    }

    /// Whether `id` is in the membership (voter or learner) as the leader sees it, asked
    /// through `endpoint`; `Ok(None)` when no leader is known.
    pub async fn is_member(&self, endpoint: &str, id: NodeId) -> anyhow::Result<Option<bool>> {
        Ok(self
            .leader_status(endpoint)
            .await?
            .map(|(_, s)| s.members.iter().any(|m| m.id == id)))
    }

    /// Carries out one membership change on the leader at `leader_url`.
    pub async fn execute(&self, leader_url: &str, action: &Action) -> anyhow::Result<()> {
        let mut client = self.client(leader_url)?;
        let call = async {
            match action {
                Action::AddLearner { id, addr } => client
                    .add_node(pb::AddNodeRequest {
                        id: *id,
                        addr: addr.clone(),
                        learner_only: true,
                    })
                    .await
                    .map(|_| ()),
                Action::Promote { id, addr } => client
                    .add_node(pb::AddNodeRequest {
                        id: *id,
                        addr: addr.clone(),
                        learner_only: false,
                    })
                    .await
                    .map(|_| ()),
                Action::Remove { id } => {
                    match client.remove_node(pb::RemoveNodeRequest { id: *id }).await {
                        // Already gone (a previous call timed out after succeeding).
                        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
                        r => r.map(|_| ()),
                    }
                }
            }
        };
        tokio::time::timeout(self.change_timeout, call)
            .await
            .with_context(|| format!("{action:?} did not finish within {:?}", self.change_timeout))?
            .with_context(|| format!("{action:?} on {leader_url}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(url_of("a.b:7100"), "http://a.b:7100");
        assert_eq!(url_of("http://a.b:7100"), "http://a.b:7100");
        assert_eq!(url_of("https://a.b:7100"), "https://a.b:7100");
    }

    #[test]
    fn cluster_state_from_status() {
        let s = pb::ClusterStatusResponse {
            node_id: 1,
            leader_id: 1,
            last_log_index: 42,
            members: vec![
                pb::Member {
                    id: 1,
                    addr: "a:1".into(),
                    role: "leader".into(),
                    last_applied: 42,
                    voter: true,
                },
                pb::Member {
                    id: 4,
                    addr: "d:1".into(),
                    role: "learner".into(),
                    last_applied: 7,
                    voter: false,
                },
            ],
            ..Default::default()
        };
        let c = cluster_state(&s);
        assert_eq!(c.leader, Some(1));
        assert_eq!(c.last_log_index, 42);
        assert_eq!(c.members.len(), 2);
        assert!(!c.members[1].voter);
        assert_eq!(c.members[1].last_applied, 7);
        let none = cluster_state(&pb::ClusterStatusResponse::default());
        assert_eq!(none.leader, None);
    }
}
