//! The Locks service: named lease locks shared by every access node.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::locks_server::Locks;
use tonic::{Request, Response, Status};

use super::{now_ms, unexpected, Api};
use crate::command::{Command, LockOp, Reply};

/// Locks service implementation.
pub struct LocksApi(pub Api);

impl LocksApi {
    async fn run(
        &self,
        op: LockOp,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let r = req.into_inner();
        let cmd = Command::Lock {
            op,
            name: r.name,
            owner: r.owner,
            ttl_ms: r.ttl_ms,
            now_ms: now_ms(),
        };
        match self.0.write(cmd).await? {
            Reply::Lock {
                held,
                holder,
                expires_at,
            } => Ok(Response::new(pb::LockResponse {
                held,
                holder,
                expires_at,
            })),
            other => Err(unexpected(&other)),
        }
    }
}

#[tonic::async_trait]
impl Locks for LocksApi {
    async fn acquire(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        self.run(LockOp::Acquire, req).await
    }

    async fn renew(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        self.run(LockOp::Renew, req).await
    }

    async fn release(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        self.run(LockOp::Release, req).await
    }
}
