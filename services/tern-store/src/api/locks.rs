//! The Locks service: named lease locks shared by every access node.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::locks_server::Locks;
use tonic::{Request, Response, Status};

use super::{now_ms, unexpected, Api};
use crate::command::{Command, Reply};

/// Locks service implementation.
pub struct LocksApi(pub Api);

fn lock_reply(reply: Reply) -> Result<Response<pb::LockResponse>, Status> {
    match reply {
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

#[tonic::async_trait]
impl Locks for LocksApi {
    async fn acquire(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let r = req.into_inner();
        lock_reply(
            self.0
                .write(Command::AcquireLock {
                    name: r.name,
                    owner: r.owner,
                    ttl_ms: r.ttl_ms,
                    now_ms: now_ms(),
                })
                .await?,
        )
    }

    async fn renew(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let r = req.into_inner();
        lock_reply(
            self.0
                .write(Command::RenewLock {
                    name: r.name,
                    owner: r.owner,
                    ttl_ms: r.ttl_ms,
                    now_ms: now_ms(),
                })
                .await?,
        )
    }

    async fn release(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        let r = req.into_inner();
        lock_reply(
            self.0
                .write(Command::ReleaseLock {
                    name: r.name,
                    owner: r.owner,
                })
                .await?,
        )
    }
}
