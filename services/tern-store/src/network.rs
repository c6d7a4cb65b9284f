//! openraft's network over tonic: AppendEntries, Vote and InstallSnapshot as unary gRPC
//! calls carrying bincode payloads (see proto/tern/raft/v1/raft.proto).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use tern_proto::raft::v1::raft_client::RaftClient;
use tern_proto::raft::v1::RaftPayload;
use tern_proto::tls::ClusterTls;
use tern_trust::Role;
use tonic::transport::Channel;

use crate::types::{NodeId, TypeConfig};

/// Largest gRPC message between nodes. An AppendEntries carries at most
/// [`crate::log_store::MAX_APPEND_BYTES`] of entries or a single entry, and an entry holds at
/// most [`crate::proposer::MAX_BATCH_BYTES`] of commands or one message (at most
/// [`crate::config::MAX_MESSAGE_LIMIT`]); the rest is headroom for the encoding and the
/// other fields. Snapshots travel in chunks far below it.
pub const MAX_RAFT_MESSAGE: usize = crate::config::MAX_MESSAGE_LIMIT as usize + (8 << 20);

/// A cache of lazily connected channels, one per peer address, shared by the Raft network
/// and by request forwarding. Every channel is mutual TLS with this node's store certificate
/// to a server that holds one too.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Arc<ClusterTls>,
}

impl Channels {
    /// No channels yet; each will use `tls`.
    pub fn new(tls: Arc<ClusterTls>) -> Self {
        Self {
            inner: Arc::default(),
            tls,
        }
    }

    /// The channel to `addr` (`host:port`), created on first use; connecting is lazy so an
    /// unreachable peer fails the call, not this lookup.
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let channel = self.tls.channel(addr, Role::Store)?;
        map.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A Raft client for `addr` with raised message limits.
    pub fn raft_client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        Ok(RaftClient::new(self.get(addr)?)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE))
    }
}

/// Creates one [`PeerClient`] per target node.
#[derive(Clone)]
pub struct Network {
    /// Shared channel cache.
    pub channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// The Raft connection to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    channels: Channels,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        method: Method,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let data = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .channels
            .raft_client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(option.hard_ttl());
        let result = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = result.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                RPCError::Unreachable(Unreachable::new(&status))
            }
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let decoded: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&reply.into_inner().data)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call(Method::Vote, &rpc, &option).await
    }
}
