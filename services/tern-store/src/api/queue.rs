//! The Queue service: durable queue entries with leases for stateless delivery workers.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_server::Queue;
use tonic::{Request, Response, Status, Streaming};

use super::{collect_body, convert, now_ms, unexpected, Api};
use crate::command::{Command, Reply};
use crate::error::AppError;
use crate::keys::{self, cf};
use crate::model::{normalize_address, QueueEntryRec, QueueEventRec};

/// Queue service implementation.
pub struct QueueApi(pub Api);

/// Most entries one lease call hands out.
const MAX_LEASE: u32 = 1000;
/// Most recipients per entry (RFC 5321 asks servers to take at least 100 per message).
const MAX_RECIPIENTS: usize = 1000;

fn entry_reply(reply: Reply) -> Result<Response<pb::QueueEntry>, Status> {
    match reply {
        Reply::Entry(e) => Ok(Response::new(convert::entry(&e))),
        other => Err(unexpected(&other)),
    }
}

/// A new queue id: time-ordered hex, unique enough to never collide in practice and checked
/// for collisions on apply anyway.
fn new_queue_id(now: i64) -> String {
    format!("{:011X}{:05X}", now, rand::random::<u32>() & 0xFFFFF)
}

#[tonic::async_trait]
impl Queue for QueueApi {
    async fn enqueue(
        &self,
        req: Request<Streaming<pb::EnqueueRequest>>,
    ) -> Result<Response<pb::QueueEntry>, Status> {
        let (h, body) = collect_body(
            req.into_inner(),
            self.0.max_message_size(),
            |m| (m.header, m.chunk),
            |h| h.size,
        )
        .await?;
        if h.recipients.is_empty() || h.recipients.len() > MAX_RECIPIENTS {
            return Err(Status::invalid_argument(format!(
                "an entry needs 1 to {MAX_RECIPIENTS} recipients"
            )));
        }
        let sender = if h.sender.is_empty() {
            String::new()
        } else {
            normalize_address(&h.sender)?
        };
        let mut recipients = Vec::with_capacity(h.recipients.len());
        for r in &h.recipients {
            let mut rc = convert::rcpt_from_pb(r);
            rc.address = normalize_address(&r.address)?;
            recipients.push(rc);
        }
        let now = now_ms();
        let entry = QueueEntryRec {
            id: new_queue_id(now),
            sender,
            recipients,
            blob: [0; 32],
            size: 0,
            created_at: now,
            next_attempt_at: now,
            attempts: 0,
            lease_owner: String::new(),
            lease_expires_at: 0,
            trace_id: h.trace_id,
            mail_params: h.mail_params,
            received_from: h.received_from.clone(),
            events: vec![QueueEventRec {
                at: now,
                kind: "received".into(),
                detail: format!("from {}", h.received_from),
            }],
            message_id: h.message_id,
        };
        entry_reply(
            self.0
                .write(Command::Enqueue {
                    entry: Box::new(entry),
                    body,
                    request_id: h.request_id,
                })
                .await?,
        )
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let r = req.into_inner();
        let cmd = Command::Lease {
            owner: r.owner,
            max_entries: r.max_entries.min(MAX_LEASE),
            lease_ms: r.lease_ms,
            now_ms: now_ms(),
        };
        match self.0.write(cmd).await? {
            Reply::Entries(es) => Ok(Response::new(pb::LeaseResponse {
                entries: es.iter().map(convert::entry).collect(),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn renew(
        &self,
        req: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::QueueEntry>, Status> {
        let r = req.into_inner();
        entry_reply(
            self.0
                .write(Command::Renew {
                    id: r.id,
                    owner: r.owner,
                    lease_ms: r.lease_ms,
                    now_ms: now_ms(),
                })
                .await?,
        )
    }

    async fn update(
        &self,
        req: Request<pb::UpdateEntryRequest>,
    ) -> Result<Response<pb::QueueEntry>, Status> {
        let r = req.into_inner();
        let cmd = Command::UpdateEntry {
            id: r.id,
            owner: r.owner,
            recipients: r.recipients.iter().map(convert::rcpt_from_pb).collect(),
            events: r.events.iter().map(convert::event_from_pb).collect(),
            next_attempt_at: r.next_attempt_at,
            release: r.release,
            complete: r.complete,
        };
        entry_reply(self.0.write(cmd).await?)
    }

    async fn get(
        &self,
        req: Request<pb::QueueIdRequest>,
    ) -> Result<Response<pb::QueueEntry>, Status> {
        let id = req.into_inner().id;
        let e = self
            .0
            .read(move |txn| {
                txn.get::<QueueEntryRec>(cf::QUEUE, &keys::queue_entry_key(&id))?
                    .ok_or_else(|| AppError::not_found(format!("no queue entry {id}")))
            })
            .await?;
        Ok(Response::new(convert::entry(&e)))
    }

    async fn list(
        &self,
        req: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        let limit = match req.into_inner().limit {
            0 => 1000,
            n => n as usize,
        };
        let entries = self
            .0
            .read(move |txn| {
                Ok(txn
                    .scan::<QueueEntryRec>(cf::QUEUE, keys::QUEUE_ENTRY_PREFIX)?
                    .into_iter()
                    .take(limit)
                    .map(|(_, e)| convert::entry(&e))
                    .collect())
            })
            .await?;
        Ok(Response::new(pb::ListQueueResponse { entries }))
    }

    async fn retry(
        &self,
        req: Request<pb::QueueIdRequest>,
    ) -> Result<Response<pb::QueueEntry>, Status> {
        entry_reply(
            self.0
                .write(Command::RetryEntry {
                    id: req.into_inner().id,
                    now_ms: now_ms(),
                })
                .await?,
        )
    }

    async fn delete(
        &self,
        req: Request<pb::QueueIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.0
            .write(Command::DeleteEntry {
                id: req.into_inner().id,
            })
            .await?;
        Ok(Response::new(pb::Empty {}))
    }
}
