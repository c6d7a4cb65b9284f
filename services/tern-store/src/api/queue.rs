//! The Queue service: durable queue entries with leases for stateless delivery workers.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::queue_server::Queue;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, now_ms, unexpected, Api};
use crate::apply::trace::{self as trace_log, is_trace_id};
use crate::command::{Command, Reply};
use crate::error::AppError;
use crate::keys::{self, cf};
use crate::model::{
    normalize_address, MessageRec, QueueEntryRec, QueueEventRec, TraceEventRec, TraceRec,
};

/// Queue service implementation.
pub struct QueueApi(pub Api);

/// Most entries one lease call hands out.
const MAX_LEASE: u32 = 1000;
/// Most recipients per entry (RFC 5321 asks servers to take at least 100 per message).
const MAX_RECIPIENTS: usize = 1000;

fn entry_reply(reply: Reply) -> Result<Response<pb::QueueEntry>, Status> {
    match reply {
        Reply::Entry(e) => Ok(Response::new(convert::entry(&e))),
        Reply::EnqueuedEarlier(id) => Ok(Response::new(pb::QueueEntry {
            id,
            completed: true,
            ..Default::default()
        })),
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
        let (h, body) = self.0.receive_body(req).await?;
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
        let (entry, request_id) = (Box::new(entry), h.request_id);
        let accepting = self.0.node.config.deliver_on_accept;
        let cmd = if accepting {
            Command::Accept {
                entry,
                body,
                request_id,
            }
        } else {
            Command::Enqueue {
                entry,
                body,
                request_id,
            }
        };
        // An entry with nothing left to deliver was completed at acceptance: not queued.
        let reply = self.0.write(cmd).await?;
        let done = match &reply {
            Reply::Entry(e) if accepting => !e.recipients.iter().any(|r| {
                matches!(
                    r.state,
                    crate::model::RcptState::Pending | crate::model::RcptState::Deferred
                )
            }),
            _ => false,
        };
        let mut answer = entry_reply(reply)?;
        answer.get_mut().completed |= done;
        Ok(answer)
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let r = req.into_inner();
        let now = now_ms();
        // An idle worker polls: ask with a linearizable read whether anything is due before
        // proposing a lease, so an idle queue costs read-index rounds, not log entries and
        // fsyncs on every node.
        let next_due = self
            .0
            .read(|txn| {
                Ok(txn
                    .scan_prefix_limit(cf::QUEUE, keys::QUEUE_DUE_PREFIX, 1)?
                    .first()
                    // A key that does not parse is left to the lease, which skips it.
                    .map(|(k, _)| keys::due_of_queue_due_key(k).map_or(i64::MIN, |(due, _)| due)))
            })
            .await?;
        if next_due.is_none_or(|due| due > now) {
            return Ok(Response::new(pb::LeaseResponse { entries: vec![] }));
        }
        let cmd = Command::Lease {
            owner: r.owner,
            max_entries: r.max_entries.min(MAX_LEASE),
            lease_ms: r.lease_ms,
            now_ms: now,
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
        let by = super::actor(&req);
        entry_reply(
            self.0
                .write_by(
                    by,
                    Command::RetryEntry {
                        id: req.into_inner().id,
                        now_ms: now_ms(),
                    },
                )
                .await?,
        )
    }

    async fn delete(
        &self,
        req: Request<pb::QueueIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let by = super::actor(&req);
        self.0
            .write_by(
                by,
                Command::DeleteEntry {
                    id: req.into_inner().id,
                },
            )
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn trace(
        &self,
        req: Request<pb::TraceRequest>,
    ) -> Result<Response<pb::TraceResponse>, Status> {
        let id = req.into_inner().id.trim().to_string();
        if id.is_empty() || id.len() > 998 {
            return Err(Status::invalid_argument(
                "name a trace id, a queue id or a Message-ID",
            ));
        }
        let traces = self
            .0
            .read(move |txn| {
                let mut ids: Vec<String> = Vec::new();
                let lower = id.to_ascii_lowercase();
                if is_trace_id(&lower) && txn.exists(cf::QUEUE, &keys::trace_key(&lower))? {
                    ids.push(lower);
                } else if let Some(t) = txn.get_raw(cf::QUEUE, &keys::trace_by_queue_key(&id))? {
                    ids.extend(String::from_utf8(t).ok());
                } else {
                    // Message-IDs are recorded as received, normally in angle brackets.
                    let bracketed = if id.starts_with('<') {
                        id.clone()
                    } else {
                        format!("<{id}>")
                    };
                    for m in [bracketed, id.clone()] {
                        let prefix = keys::trace_by_message_id_prefix(&m);
                        for (k, _) in txn.scan_prefix_limit(cf::QUEUE, &prefix, 100)? {
                            if let Some(t) = k.get(prefix.len()..) {
                                ids.extend(String::from_utf8(t.to_vec()).ok());
                            }
                        }
                    }
                }
                ids.dedup();
                let mut out = Vec::new();
                for t in ids {
                    if let Some(rec) = txn.get::<TraceRec>(cf::QUEUE, &keys::trace_key(&t))? {
                        out.push(convert::trace(&rec));
                    }
                }
                if out.is_empty() {
                    return Err(AppError::not_found(format!(
                        "no recorded trace for {id:?} (neither a trace id, a queue id nor a Message-ID the store knows)"
                    )));
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(pb::TraceResponse { traces }))
    }

    async fn record_trace(
        &self,
        req: Request<pb::RecordTraceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let ev = r
            .event
            .ok_or_else(|| Status::invalid_argument("a trace step needs an event"))?;
        let event = TraceEventRec {
            at: if ev.at > 0 { ev.at } else { now_ms() },
            service: ev.service,
            kind: ev.kind,
            detail: ev.detail,
        };
        if !is_trace_id(&r.trace_id)
            || event.service.is_empty()
            || event.service.len() > 32
            || event.kind.is_empty()
            || event.kind.len() > 32
        {
            return Err(Status::invalid_argument(
                "a trace step needs a trace id, a service and a kind",
            ));
        }
        // Resolve the message and check what is already recorded on this node first: a
        // step already there (a message read again) costs no Raft write.
        let (trace_id, probe) = (r.trace_id.clone(), event.clone());
        let (account, mailbox, uid) = (r.account, r.mailbox, r.uid);
        let blob = self
            .0
            .read_local(move |txn| {
                let (acct, mb) = super::messages::open_mailbox(txn, &account, &mailbox)?;
                let rec = txn
                    .get::<MessageRec>(cf::MSG, &keys::message_key(acct, mb.id, uid))?
                    .ok_or_else(|| AppError::not_found(format!("no message with UID {uid}")))?;
                let known = txn
                    .get::<TraceRec>(cf::QUEUE, &keys::trace_key(&trace_id))?
                    .is_some_and(|t| trace_log::has_event(&t, &probe));
                Ok((!known).then_some(rec.blob))
            })
            .await?;
        if let Some(blob) = blob {
            self.0
                .write(Command::RecordTrace {
                    trace_id: r.trace_id,
                    blob,
                    event,
                })
                .await?;
        }
        Ok(Response::new(pb::Empty {}))
    }
}
