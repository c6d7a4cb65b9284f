//! The Locks service: named lease locks shared by every access node (`PURPOSE/ACCOUNT`,
//! admitted for the account of the caller's session).

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
        // An access node locks an account's things: a lock is named `PURPOSE/ACCOUNT`
        // (`pop3/alice@example.com`), and its session must be that account's.
        let scope = self.0.scope(&req).await?;
        if let super::session::Scope::Session(_) = scope {
            let account = req
                .get_ref()
                .name
                .split_once('/')
                .map(|(_, account)| account)
                .ok_or_else(|| Status::invalid_argument("a lock's name must be PURPOSE/ACCOUNT"))?;
            scope.admit(account)?;
        }
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
