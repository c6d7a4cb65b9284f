//! The Raft transport service (proto/tern/raft/v1): openraft's RPCs, plus write forwarding
//! and read-index requests from followers.

use std::sync::Arc;

use tern_proto::raft::v1 as pb;
use tern_proto::raft::v1::raft_server::Raft as RaftService;
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::types::{Request as Batch, TypeConfig};
use openraft::raft::AppendEntriesRequest;

/// Raft transport implementation.
pub struct RaftApi(pub Arc<Node>);

/// Decodes a peer's payload in the format of `bincode::serialize`, with a hard bound on what
/// decoding may allocate: length prefixes in a corrupt or hostile payload cannot make the node
/// reserve more than the message itself could carry.
fn decode<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(crate::network::MAX_RAFT_MESSAGE as u64)
        .deserialize(data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Response<pb::RaftPayload>, Status> {
    let data = bincode::serialize(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn append_entries(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data)?;
        // A follower low on disk takes no more log: it refuses entries (not heartbeats, so it
        // starts no election) and falls behind, and the leader sends them again until space
        // returns, instead of appending until RocksDB fails and the node stops.
        if !rpc.entries.is_empty() {
            if let Some(low) = self.0.free_space.refusal(self.0.id) {
                return Err(Status::from(low));
            }
        }
        encode(&self.0.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc = decode(&req.into_inner().data)?;
        encode(&self.0.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc = decode(&req.into_inner().data)?;
        encode(&self.0.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let batch: Batch = decode(&req.into_inner().command)?;
        let resp = self.0.accept_forwarded(batch).await?;
        let outcome = bincode::serialize(&resp).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ForwardResponse { outcome }))
    }

    async fn read_index(
        &self,
        _: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let index = self.0.read_index().await?;
        Ok(Response::new(pb::ReadIndexResponse {
            index,
            leader_id: self.0.id,
        }))
    }
}
