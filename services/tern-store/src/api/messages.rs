//! The Messages service: append and deliver (streamed in), list, fetch (streamed out, with
//! byte ranges), flags, expunge, copy, move and search.

use std::pin::Pin;

use futures::Stream;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::messages_server::Messages;
use tonic::{Code, Request, Response, Status, Streaming};

use super::{convert, now_ms, unexpected, Api, CHUNK};
use crate::apply::{account_id, mailbox_by_name};
use crate::command::{Command, FlagMode, Reply, Target};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{normalize_address, normalize_flags, normalize_mailbox, MailboxRec, MessageRec};
use crate::search;
use crate::txn::Txn;

/// Messages service implementation.
pub struct MessagesApi(pub Api);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::FetchChunk, Status>> + Send>>;

fn target(t: pb::DeliveryTarget) -> Result<Target, Status> {
    let mailbox = if t.mailbox.is_empty() {
        "INBOX".to_string()
    } else {
        normalize_mailbox(&t.mailbox)?
    };
    Ok(Target {
        account: normalize_address(&t.account)?,
        mailbox,
        delivery_id: t.delivery_id,
        flags: normalize_flags(&t.flags)?,
    })
}

fn internal_date(secs: i64) -> i64 {
    if secs == 0 {
        now_ms() / 1000
    } else {
        secs
    }
}

pub(super) fn open_mailbox(
    txn: &Txn<'_>,
    account: &str,
    mailbox: &str,
) -> AppResult<(u64, MailboxRec)> {
    let acct = account_id(txn, account)?;
    let name = normalize_mailbox(mailbox)?;
    let mb = mailbox_by_name(txn, acct, &name)?
        .ok_or_else(|| AppError::not_found(format!("no mailbox {name:?}")))?;
    Ok((acct, mb))
}

fn blob_slice(txn: &Txn<'_>, hash: &[u8], offset: u64, length: u64) -> AppResult<(Vec<u8>, u64)> {
    let body = txn
        .get_raw(cf::BLOB, hash)?
        .ok_or_else(|| AppError::not_found("message content is gone"))?;
    crate::metrics::message_read("body");
    let total = body.len() as u64;
    let start = offset.min(total) as usize;
    let end = if length == 0 {
        total
    } else {
        offset.saturating_add(length).min(total)
    } as usize;
    Ok((body[start..end].to_vec(), total))
}

fn chunked(data: Vec<u8>, total: u64) -> ChunkStream {
    chunked_traced(data, total, String::new())
}

/// [`chunked`], naming the message's trace on the first chunk.
fn chunked_traced(data: Vec<u8>, total: u64, trace_id: String) -> ChunkStream {
    let mut chunks: Vec<pb::FetchChunk> = data
        .chunks(CHUNK)
        .map(|c| pb::FetchChunk {
            data: c.to_vec(),
            total_size: 0,
            trace_id: String::new(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::FetchChunk {
            data: vec![],
            total_size: total,
            trace_id: String::new(),
        });
    }
    chunks[0].total_size = total;
    chunks[0].trace_id = trace_id;
    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))
}

fn flag_mode(m: pb::store_flags_request::Mode) -> FlagMode {
    match m {
        pb::store_flags_request::Mode::Replace => FlagMode::Replace,
        pb::store_flags_request::Mode::Add => FlagMode::Add,
        pb::store_flags_request::Mode::Remove => FlagMode::Remove,
    }
}

impl MessagesApi {
    async fn copy_or_move(
        &self,
        r: pb::CopyRequest,
        remove_source: bool,
    ) -> Result<Response<pb::CopyResponse>, Status> {
        let uids = search::uid_set(&r.uids.unwrap_or_default());
        let cmd = Command::Copy {
            account: r.account,
            mailbox: r.mailbox,
            uids,
            target: r.target,
            remove_source,
        };
        match self.0.write(cmd).await? {
            Reply::Copied {
                uid_validity,
                source,
                target,
            } => Ok(Response::new(pb::CopyResponse {
                uid_validity,
                source_uids: source,
                target_uids: target,
            })),
            other => Err(unexpected(&other)),
        }
    }
}

#[tonic::async_trait]
impl Messages for MessagesApi {
    async fn append(
        &self,
        req: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let scope = self.0.scope(&req).await?;
        let (h, body) = self.0.receive_body(req).await?;
        scope.admit(&h.account)?;
        let t = target(pb::DeliveryTarget {
            account: h.account,
            mailbox: h.mailbox,
            delivery_id: h.delivery_id,
            flags: h.flags,
        })?;
        let reply = self
            .0
            .write(Command::Deliver {
                targets: vec![t],
                body,
                internal_date: internal_date(h.internal_date),
            })
            .await?;
        let Reply::Delivered { mut results, .. } = reply else {
            return Err(unexpected(&reply));
        };
        let one = results
            .pop()
            .ok_or_else(|| Status::internal("no delivery result"))?;
        let d = one.result?;
        Ok(Response::new(pb::AppendResponse {
            mailbox_id: d.mailbox,
            uid_validity: d.uid_validity,
            uid: d.uid,
            duplicate: d.duplicate,
        }))
    }

    async fn deliver(
        &self,
        req: Request<Streaming<pb::DeliverRequest>>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        let (h, body) = self.0.receive_body(req).await?;
        if h.targets.is_empty() {
            return Err(Status::invalid_argument(
                "a delivery needs at least one target",
            ));
        }
        let targets = h
            .targets
            .into_iter()
            .map(target)
            .collect::<Result<Vec<_>, _>>()?;
        let internal_date = internal_date(h.internal_date);
        let cmd = if h.blob.is_empty() {
            Command::Deliver {
                targets,
                body,
                internal_date,
            }
        } else {
            if !body.is_empty() {
                return Err(Status::invalid_argument(
                    "a delivery carries a body or names a stored one, not both",
                ));
            }
            let blob = convert::blob_hash(&h.blob)?;
            if self.0.node.config.deliver_on_accept {
                Command::DeliverStored {
                    targets,
                    blob,
                    internal_date,
                }
            } else {
                // A node that must not propose the newer commands (a rolling upgrade) reads
                // the content itself and proposes the delivery as before.
                let body = self
                    .0
                    .read(move |txn| {
                        txn.get_raw(cf::BLOB, &blob)?
                            .ok_or_else(|| AppError::not_found("the stored content is gone"))
                    })
                    .await?;
                Command::Deliver {
                    targets,
                    body,
                    internal_date,
                }
            }
        };
        let reply = self.0.write(cmd).await?;
        let Reply::Delivered { results, blob } = reply else {
            return Err(unexpected(&reply));
        };
        let results = results
            .into_iter()
            .map(|o| match o.result {
                Ok(d) => pb::DeliverResult {
                    account: o.account,
                    mailbox_id: d.mailbox,
                    uid: d.uid,
                    duplicate: d.duplicate,
                    error: String::new(),
                    code: 0,
                },
                Err(e) => {
                    let status = Status::from(e);
                    pb::DeliverResult {
                        account: o.account,
                        mailbox_id: 0,
                        uid: 0,
                        duplicate: false,
                        error: status.message().to_string(),
                        code: status.code() as i32,
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::DeliverResponse {
            results,
            blob: hex::encode(blob),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let resp = self
            .0
            .read(move |txn| {
                let (acct, mb) = open_mailbox(txn, &r.account, &r.mailbox)?;
                let max_uid = mb.uid_next.saturating_sub(1);
                let set = r.uids.as_ref().map(search::uid_set);
                let messages = txn
                    .scan::<MessageRec>(cf::MSG, &keys::message_prefix(acct, mb.id))?
                    .into_iter()
                    .map(|(_, m)| m)
                    .filter(|m| {
                        set.as_ref().is_none_or(|s| s.contains(m.uid, max_uid))
                            && m.modseq > r.changed_since
                    })
                    .map(|m| convert::message(&m))
                    .collect();
                let mut shown = convert::mailbox(&mb);
                shown.recent_uid = crate::apply::recent::marker(txn, acct, mb.id)?;
                Ok(pb::ListMessagesResponse {
                    mailbox: Some(shown),
                    messages,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    type FetchStream = ChunkStream;

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let lookup = |r: pb::FetchRequest| {
            move |txn: &Txn<'_>| {
                let (acct, mb) = open_mailbox(txn, &r.account, &r.mailbox)?;
                if r.uid_validity != 0 && r.uid_validity != mb.uid_validity {
                    return Err(AppError::precondition(format!(
                        "{:?} has UIDVALIDITY {}, not {}",
                        mb.name, mb.uid_validity, r.uid_validity
                    )));
                }
                let rec = txn
                    .get::<MessageRec>(cf::MSG, &keys::message_key(acct, mb.id, r.uid))?
                    .ok_or_else(|| {
                        AppError::not_found(format!(
                            "no message with UID {} in {:?}",
                            r.uid, mb.name
                        ))
                    })?;
                let (data, total) = blob_slice(txn, &rec.blob, r.offset, r.length)?;
                let trace_id = crate::apply::trace::trace_of_blob(txn, &rec.blob)?;
                Ok((data, total, trace_id.unwrap_or_default()))
            }
        };
        // Content under one (UIDVALIDITY, UID) never changes: what this node has applied is
        // as good as the leader's. Anything it does not have (yet) is asked linearizably.
        if r.uid_validity != 0 {
            match self.0.read_local(lookup(r.clone())).await {
                Ok((data, total, trace)) => {
                    return Ok(Response::new(chunked_traced(data, total, trace)))
                }
                Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => {}
                Err(s) => return Err(s),
            }
        }
        let (data, total, trace) = self.0.read(lookup(r)).await?;
        Ok(Response::new(chunked_traced(data, total, trace)))
    }

    type FetchHeadersStream =
        Pin<Box<dyn Stream<Item = Result<pb::FetchHeadersResponse, Status>> + Send>>;

    async fn fetch_headers(
        &self,
        req: Request<pb::FetchHeadersRequest>,
    ) -> Result<Response<Self::FetchHeadersStream>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let responses = super::headers::fetch_headers(&self.0, req.into_inner()).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            responses.into_iter().map(Ok),
        ))))
    }

    type FetchBlobStream = ChunkStream;

    async fn fetch_blob(
        &self,
        req: Request<pb::FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        let r = req.into_inner();
        let hash = convert::blob_hash(&r.blob)?;
        let (data, total) = self
            .0
            .read(move |txn| blob_slice(txn, &hash, r.offset, r.length))
            .await?;
        Ok(Response::new(chunked(data, total)))
    }

    async fn store_flags(
        &self,
        req: Request<pb::StoreFlagsRequest>,
    ) -> Result<Response<pb::StoreFlagsResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let mode = flag_mode(r.mode());
        let cmd = Command::StoreFlags {
            account: r.account,
            mailbox: r.mailbox,
            uids: search::uid_set(&r.uids.unwrap_or_default()),
            mode,
            flags: normalize_flags(&r.flags)?,
            unchanged_since: r.unchanged_since,
        };
        match self.0.write(cmd).await? {
            Reply::Flags {
                updated,
                modified,
                highest_modseq,
            } => Ok(Response::new(pb::StoreFlagsResponse {
                updated: updated.iter().map(convert::message).collect(),
                modified,
                highest_modseq,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn expunge(
        &self,
        req: Request<pb::ExpungeRequest>,
    ) -> Result<Response<pb::ExpungeResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let cmd = Command::Expunge {
            account: r.account,
            mailbox: r.mailbox,
            uids: r.uids.as_ref().map(search::uid_set),
            force: r.force,
        };
        match self.0.write(cmd).await? {
            Reply::Expunged {
                uids,
                highest_modseq,
            } => Ok(Response::new(pb::ExpungeResponse {
                expunged: uids,
                highest_modseq,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn copy(
        &self,
        req: Request<pb::CopyRequest>,
    ) -> Result<Response<pb::CopyResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        self.copy_or_move(req.into_inner(), false).await
    }

    async fn r#move(
        &self,
        req: Request<pb::CopyRequest>,
    ) -> Result<Response<pb::CopyResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        self.copy_or_move(req.into_inner(), true).await
    }

    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.0.scoped(&req, &req.get_ref().account).await?;
        let r = req.into_inner();
        let key = search::from_proto(r.key.as_ref(), 0)?;
        let resp = self
            .0
            .read(move |txn| {
                let (acct, mb) = open_mailbox(txn, &r.account, &r.mailbox)?;
                let max_uid = mb.uid_next.saturating_sub(1);
                let needs_content = key.needs_content();
                let mut uids = Vec::new();
                let mut highest = 0;
                for (_, rec) in
                    txn.scan::<MessageRec>(cf::MSG, &keys::message_prefix(acct, mb.id))?
                {
                    let content = if needs_content {
                        txn.get_raw(cf::BLOB, &rec.blob)?
                    } else {
                        None
                    };
                    if search::matches(&key, &rec, max_uid, content.as_deref()) {
                        uids.push(rec.uid);
                        highest = highest.max(rec.modseq);
                    }
                }
                Ok(pb::SearchResponse {
                    uids,
                    highest_modseq: highest,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }
}
