//! The Mailboxes service: hierarchy and status.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::mailboxes_server::Mailboxes;
use tonic::{Request, Response, Status};

use super::{convert, now_ms, unexpected, Api};
use crate::apply::{account_id, all_mailboxes, mailbox_by_name, recent};
use crate::command::{Command, Reply};
use crate::error::AppError;
use crate::model::normalize_mailbox;

/// Mailboxes service implementation.
pub struct MailboxesApi(pub Api);

#[tonic::async_trait]
impl Mailboxes for MailboxesApi {
    async fn list(
        &self,
        req: Request<pb::ListMailboxesRequest>,
    ) -> Result<Response<pb::ListMailboxesResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let account = req.into_inner().account;
        let mut mailboxes = self
            .0
            .read(move |txn| {
                let acct = account_id(txn, &account)?;
                all_mailboxes(txn, acct)?
                    .iter()
                    .map(|mb| {
                        let mut shown = convert::mailbox(mb);
                        shown.recent_uid = recent::marker(txn, acct, mb.id)?;
                        Ok(shown)
                    })
                    .collect::<Result<Vec<_>, AppError>>()
            })
            .await?;
        mailboxes.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        Ok(Response::new(pb::ListMailboxesResponse { mailboxes }))
    }

    async fn get(
        &self,
        req: Request<pb::GetMailboxRequest>,
    ) -> Result<Response<pb::Mailbox>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let name = normalize_mailbox(&r.name)?;
        let shown = self
            .0
            .read(move |txn| {
                let acct = account_id(txn, &r.account)?;
                let mb = mailbox_by_name(txn, acct, &name)?
                    .ok_or_else(|| AppError::not_found(format!("no mailbox {name:?}")))?;
                let marker = recent::marker(txn, acct, mb.id)?;
                let mut shown = convert::mailbox(&mb);
                shown.recent_uid = marker;
                shown.recent = recent::count_above(txn, acct, &mb, marker)?;
                Ok(shown)
            })
            .await?;
        Ok(Response::new(shown))
    }

    async fn create(
        &self,
        req: Request<pb::CreateMailboxRequest>,
    ) -> Result<Response<pb::Mailbox>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let name = normalize_mailbox(&r.name)?;
        match self
            .0
            .write(Command::CreateMailbox {
                account: r.account,
                name,
                special_use: r.special_use,
                now_ms: now_ms(),
            })
            .await?
        {
            Reply::Mailbox(m) => Ok(Response::new(convert::mailbox(&m))),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteMailboxRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let name = normalize_mailbox(&r.name)?;
        self.0
            .write(Command::DeleteMailbox {
                account: r.account,
                name,
            })
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameMailboxRequest>,
    ) -> Result<Response<pb::Mailbox>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let (from, to) = (normalize_mailbox(&r.from)?, normalize_mailbox(&r.to)?);
        match self
            .0
            .write(Command::RenameMailbox {
                account: r.account,
                from,
                to,
                now_ms: now_ms(),
            })
            .await?
        {
            Reply::Mailbox(m) => Ok(Response::new(convert::mailbox(&m))),
            other => Err(unexpected(&other)),
        }
    }

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let name = normalize_mailbox(&r.name)?;
        self.0
            .write(Command::Subscribe {
                account: r.account,
                name,
                subscribed: r.subscribed,
            })
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn claim_recent(
        &self,
        req: Request<pb::ClaimRecentRequest>,
    ) -> Result<Response<pb::ClaimRecentResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let mailbox = normalize_mailbox(&r.name)?;
        match self
            .0
            .write(Command::ClaimRecent {
                account: r.account,
                mailbox,
                uid_validity: r.uid_validity,
                up_to: r.up_to,
            })
            .await?
        {
            // The marker is a u32 the apply step read and widened.
            Reply::Count(previous) => Ok(Response::new(pb::ClaimRecentResponse {
                previous: u32::try_from(previous).unwrap_or(u32::MAX),
            })),
            other => Err(unexpected(&other)),
        }
    }
}
