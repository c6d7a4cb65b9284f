//! The [`ImapBackend`] over the Tern store's gRPC API: the only IMAP code that builds store
//! requests. Every unary call goes through [`StoreClient::call`], which retries on another
//! store node when one fails; the change feed is a Watch stream that reconnects by itself.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tern_proto::client::{StoreClient, TracedChannel};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_client::DirectoryClient;
use tern_proto::store::v1::mailboxes_client::MailboxesClient;
use tern_proto::store::v1::messages_client::MessagesClient;
use tern_proto::store::v1::watch_client::WatchClient;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::backend::*;
use super::search::uid_ranges;
use super::view::MessageMeta;
use crate::retrieval::RetrievalTracer;

/// Largest store response accepted (a listing of a very large mailbox).
const MAX_RESPONSE: usize = 256 << 20;
/// Changes from the store buffered per selected session.
const CHANGE_BUFFER: usize = 1024;

/// One unary store call, retried across store nodes by `StoreClient::call`:
/// `store_call!(store, client, method, request)` is `Result<tonic::Response<_>, Status>`.
macro_rules! store_call {
    ($store:expr, $client:ident, $method:ident, $req:expr) => {
        $store
            .call(|ch| {
                let r = $req.clone();
                async move { $client(ch).$method(r).await }
            })
            .await
    };
}

fn messages(ch: TracedChannel) -> MessagesClient<TracedChannel> {
    MessagesClient::new(ch).max_decoding_message_size(MAX_RESPONSE)
}

fn mailboxes(ch: TracedChannel) -> MailboxesClient<TracedChannel> {
    MailboxesClient::new(ch).max_decoding_message_size(MAX_RESPONSE)
}

fn directory(ch: TracedChannel) -> DirectoryClient<TracedChannel> {
    DirectoryClient::new(ch)
}

/// The store's status as the session's error kind.
fn error(s: Status) -> StoreError {
    let kind = match s.code() {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::ResourceExhausted => ErrorKind::OverQuota,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => ErrorKind::Rejected,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Unavailable,
    };
    StoreError::new(kind, s.message())
}

fn meta(r: &pb::MessageRecord) -> MessageMeta {
    MessageMeta {
        uid: r.uid,
        flags: r.flags.clone(),
        internal_date: r.internal_date,
        size: if r.wire_size > 0 { r.wire_size } else { r.size },
        modseq: r.modseq,
        recent: false,
    }
}

fn mailbox_info(m: pb::Mailbox) -> MailboxInfo {
    MailboxInfo {
        id: m.id,
        name: m.name,
        uid_validity: m.uid_validity,
        uid_next: m.uid_next,
        highest_modseq: m.highest_modseq,
        messages: m.messages,
        unseen: m.unseen,
        deleted: m.deleted,
        recent_uid: m.recent_uid,
        recent: m.recent,
        subscribed: m.subscribed,
        special_use: m.special_use,
    }
}

/// A feed event as the session's [`Change`].
fn change(c: &pb::Change) -> Change {
    use pb::change::Kind;
    let kind = match c.kind() {
        Kind::MessageAdded => ChangeKind::Added(c.uids.clone()),
        Kind::Expunged => ChangeKind::Expunged(c.uids.clone()),
        Kind::FlagsChanged => ChangeKind::Flags(
            c.uids
                .iter()
                .enumerate()
                .map(|(i, uid)| {
                    let flags = c
                        .flag_sets
                        .get(i)
                        .map(|set| set.flags.clone())
                        .unwrap_or_default();
                    (*uid, flags)
                })
                .collect(),
        ),
        Kind::MailboxRenamed if !c.mailbox.is_empty() => ChangeKind::Renamed(c.mailbox.clone()),
        Kind::MailboxDeleted => ChangeKind::Deleted,
        _ => ChangeKind::Other,
    };
    Change {
        modseq: c.modseq,
        mailbox_id: c.mailbox_id,
        kind,
    }
}

/// One IMAP session's access to the store.
#[derive(Clone)]
pub struct StoreBackend {
    store: StoreClient,
    /// Reports whole-message fetches into the messages' delivery traces.
    retrievals: RetrievalTracer,
    /// The client's address, for the store's failed-login counts.
    client: Option<std::net::IpAddr>,
}

impl StoreBackend {
    /// Header sections read message by message with Fetch (the first 64 KiB of each), for
    /// a store that does not know FetchHeaders.
    async fn read_headers_one_by_one(
        &self,
        account: &str,
        mailbox: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> StoreResult<Headers> {
        const PROBE: u64 = 64 << 10;
        let mut out = Headers::default();
        for &uid in uids {
            let message = MessageRef {
                mailbox,
                uid,
                uid_validity,
            };
            let range = ByteRange {
                offset: 0,
                length: PROBE,
            };
            match self.read(account, message, range).await {
                Ok(c) => match tern_mail::header::section_end(&c.data) {
                    Some(end) => out.found.push((uid, c.data[..end].to_vec())),
                    None if (c.data.len() as u64) < PROBE => out.found.push((uid, c.data)),
                    None => out.too_large.push(uid),
                },
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Access through `store`; whole-message fetches are reported to `retrievals`.
    pub fn new(store: StoreClient, retrievals: RetrievalTracer) -> Self {
        Self {
            store,
            retrievals,
            client: None,
        }
    }

    /// The same, for a client at `ip` (failed logins are counted per client network).
    pub fn for_client(self, ip: std::net::IpAddr) -> Self {
        Self {
            client: Some(ip),
            ..self
        }
    }
}

impl ImapBackend for StoreBackend {
    async fn check_password(&self, user: &str, password: &str) -> StoreResult<Option<String>> {
        let req = pb::CheckPasswordRequest {
            address: user.to_string(),
            password: password.to_string(),
            client_ip: self.client.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        let r = store_call!(self.store, directory, check_password, req)
            .map_err(error)?
            .into_inner();
        if r.retry_later {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                "too many failed logins or checks in flight; try again later",
            ));
        }
        Ok(match (r.ok, r.user) {
            (true, Some(u)) => {
                if let Some(session) = r.session {
                    self.store.start_session(session);
                }
                Some(u.address)
            }
            _ => None,
        })
    }

    async fn quota(&self, account: &str) -> StoreResult<Quota> {
        let req = pb::GetUserRequest {
            address: account.to_string(),
        };
        let u = store_call!(self.store, directory, get_user, req)
            .map_err(error)?
            .into_inner();
        Ok(Quota {
            used_bytes: u.used_bytes,
            limit_bytes: u.quota_bytes,
        })
    }

    async fn list_mailboxes(&self, account: &str) -> StoreResult<Vec<MailboxInfo>> {
        let req = pb::ListMailboxesRequest {
            account: account.to_string(),
        };
        let r = store_call!(self.store, mailboxes, list, req).map_err(error)?;
        Ok(r.into_inner()
            .mailboxes
            .into_iter()
            .map(mailbox_info)
            .collect())
    }

    async fn get_mailbox(&self, account: &str, name: &str) -> StoreResult<MailboxInfo> {
        let req = pb::GetMailboxRequest {
            account: account.to_string(),
            name: name.to_string(),
        };
        let r = store_call!(self.store, mailboxes, get, req).map_err(error)?;
        Ok(mailbox_info(r.into_inner()))
    }

    async fn create_mailbox(&self, account: &str, name: &str) -> StoreResult<()> {
        let req = pb::CreateMailboxRequest {
            account: account.to_string(),
            name: name.to_string(),
            special_use: String::new(),
        };
        store_call!(self.store, mailboxes, create, req)
            .map(|_| ())
            .map_err(error)
    }

    async fn delete_mailbox(&self, account: &str, name: &str) -> StoreResult<()> {
        let req = pb::DeleteMailboxRequest {
            account: account.to_string(),
            name: name.to_string(),
        };
        store_call!(self.store, mailboxes, delete, req)
            .map(|_| ())
            .map_err(error)
    }

    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> StoreResult<()> {
        let req = pb::RenameMailboxRequest {
            account: account.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        };
        store_call!(self.store, mailboxes, rename, req)
            .map(|_| ())
            .map_err(error)
    }

    async fn claim_recent(
        &self,
        account: &str,
        mailbox: &str,
        uid_validity: u32,
        up_to: u32,
    ) -> StoreResult<u32> {
        let req = pb::ClaimRecentRequest {
            account: account.to_string(),
            name: mailbox.to_string(),
            uid_validity,
            up_to,
        };
        let r = store_call!(self.store, mailboxes, claim_recent, req).map_err(error)?;
        Ok(r.into_inner().previous)
    }

    async fn subscribe(&self, account: &str, name: &str, subscribed: bool) -> StoreResult<()> {
        let req = pb::SubscribeRequest {
            account: account.to_string(),
            name: name.to_string(),
            subscribed,
        };
        store_call!(self.store, mailboxes, subscribe, req)
            .map(|_| ())
            .map_err(error)
    }

    async fn list_messages(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<(u32, u32)>,
    ) -> StoreResult<Listing> {
        let req = pb::ListMessagesRequest {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: uids.map(|(first, last)| pb::UidSet {
                ranges: vec![pb::UidRange { first, last }],
            }),
            changed_since: 0,
        };
        let l = store_call!(self.store, messages, list, req)
            .map_err(error)?
            .into_inner();
        Ok(Listing {
            messages: l.messages.iter().map(meta).collect(),
            mailbox: l.mailbox.map(mailbox_info),
        })
    }

    async fn read(
        &self,
        account: &str,
        message: MessageRef<'_>,
        range: ByteRange,
    ) -> StoreResult<Content> {
        let req = pb::FetchRequest {
            account: account.to_string(),
            mailbox: message.mailbox.to_string(),
            uid: message.uid,
            offset: range.offset,
            length: range.length,
            uid_validity: message.uid_validity,
        };
        let (data, trace_id) = self
            .store
            .call(|ch| {
                let r = req.clone();
                async move {
                    let stream = messages(ch).fetch(r).await?.into_inner();
                    let chunks: Vec<pb::FetchChunk> = stream.try_collect().await?;
                    let trace_id = chunks.first().map(|c| c.trace_id.clone());
                    let data = chunks.into_iter().flat_map(|c| c.data).collect::<Vec<u8>>();
                    Ok((data, trace_id.unwrap_or_default()))
                }
            })
            .await
            .map_err(error)?;
        Ok(Content { data, trace_id })
    }

    async fn read_headers(
        &self,
        account: &str,
        mailbox: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> StoreResult<Headers> {
        let mut out = Headers::default();
        let mut rest: Vec<u32> = uids.to_vec();
        rest.sort_unstable();
        rest.dedup();
        while let Some(&first) = rest.first() {
            let req = pb::FetchHeadersRequest {
                account: account.to_string(),
                mailbox: mailbox.to_string(),
                uid_validity,
                uids: rest.to_vec(),
            };
            let answer = self
                .store
                .call(|ch| {
                    let r = req.clone();
                    async move {
                        let stream = messages(ch).fetch_headers(r).await?.into_inner();
                        stream.try_collect::<Vec<pb::FetchHeadersResponse>>().await
                    }
                })
                .await;
            let responses = match answer {
                Ok(r) => r,
                // A store node older than FetchHeaders (a rolling upgrade): message by
                // message, as before it.
                Err(s) if s.code() == Code::Unimplemented => {
                    return self
                        .read_headers_one_by_one(account, mailbox, uid_validity, uids)
                        .await
                }
                Err(s) => return Err(error(s)),
            };
            let mut resume_at = 0;
            for r in responses {
                out.found
                    .extend(r.headers.into_iter().map(|h| (h.uid, h.header)));
                out.too_large.extend(r.too_large);
                resume_at = resume_at.max(r.resume_at);
            }
            // The store stopped at its byte bound: ask again from there (it always answers
            // at least the first UID, so this ends).
            match resume_at {
                0 => rest.clear(),
                at if at > first => rest.retain(|u| *u >= at),
                _ => {
                    return Err(StoreError::new(
                        ErrorKind::Unavailable,
                        "the store's header answer made no progress",
                    ))
                }
            }
        }
        Ok(out)
    }

    fn retrieved(&self, trace_id: &str, account: &str, mailbox: &str, uid: u32) {
        self.retrievals
            .retrieved(trace_id, "IMAP FETCH", account, mailbox, uid);
    }

    async fn append(
        &self,
        account: &str,
        mailbox: &str,
        message: NewMessage,
    ) -> StoreResult<Appended> {
        let header = pb::AppendHeader {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            flags: message.flags,
            internal_date: message.internal_date,
            // A retry after a lost answer (store failover) returns the first result instead
            // of storing the message twice.
            delivery_id: format!(
                "imap-append/{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            ),
            size: message.data.len() as u64,
        };
        let data = Arc::new(message.data);
        let r = self
            .store
            .call(|ch| {
                let (header, data) = (header.clone(), data.clone());
                async move {
                    // Chunks are cut as the stream is sent, not all at once.
                    const CHUNK: usize = 64 << 10;
                    let count = data.len().div_ceil(CHUNK);
                    let chunks = futures::stream::iter((0..count).map(move |i| {
                        let end = ((i + 1) * CHUNK).min(data.len());
                        pb::AppendRequest {
                            header: (i == 0).then(|| header.clone()),
                            chunk: data[i * CHUNK..end].to_vec(),
                        }
                    }));
                    messages(ch).append(chunks).await
                }
            })
            .await
            .map_err(error)?
            .into_inner();
        Ok(Appended {
            uid_validity: r.uid_validity,
            uid: r.uid,
        })
    }

    async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        change: FlagChange,
    ) -> StoreResult<Stored> {
        let FlagChange {
            mode,
            flags,
            unchanged_since,
        } = change;
        let mode = match mode {
            FlagMode::Replace => pb::store_flags_request::Mode::Replace,
            FlagMode::Add => pb::store_flags_request::Mode::Add,
            FlagMode::Remove => pb::store_flags_request::Mode::Remove,
        };
        let req = pb::StoreFlagsRequest {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: Some(uid_ranges(uids)),
            mode: mode as i32,
            flags,
            unchanged_since,
        };
        let r = store_call!(self.store, messages, store_flags, req)
            .map_err(error)?
            .into_inner();
        Ok(Stored {
            updated: r
                .updated
                .into_iter()
                .map(|rec| FlagUpdate {
                    uid: rec.uid,
                    flags: rec.flags,
                    modseq: rec.modseq,
                })
                .collect(),
            modified: r.modified,
        })
    }

    async fn copy(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        target: &str,
        moving: bool,
    ) -> StoreResult<Copied> {
        let req = pb::CopyRequest {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: Some(uid_ranges(uids)),
            target: target.to_string(),
        };
        let r = self
            .store
            .call(|ch| {
                let r = req.clone();
                async move {
                    if moving {
                        messages(ch).r#move(r).await
                    } else {
                        messages(ch).copy(r).await
                    }
                }
            })
            .await
            .map_err(error)?
            .into_inner();
        Ok(Copied {
            uid_validity: r.uid_validity,
            source_uids: r.source_uids,
            target_uids: r.target_uids,
        })
    }

    async fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&[u32]>,
    ) -> StoreResult<Expunged> {
        let req = pb::ExpungeRequest {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: uids.map(uid_ranges),
            force: false,
        };
        let r = store_call!(self.store, messages, expunge, req)
            .map_err(error)?
            .into_inner();
        Ok(Expunged {
            uids: r.expunged,
            highest_modseq: r.highest_modseq,
        })
    }

    async fn search(&self, account: &str, mailbox: &str, key: pb::SearchKey) -> StoreResult<Found> {
        let req = pb::SearchRequest {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            key: Some(key),
        };
        let r = store_call!(self.store, messages, search, req)
            .map_err(error)?
            .into_inner();
        Ok(Found {
            uids: r.uids,
            highest_modseq: r.highest_modseq,
        })
    }

    fn watch(&self, account: &str, mailbox: &str, from: u64) -> ChangeFeed {
        let (tx, rx) = mpsc::channel(CHANGE_BUFFER);
        let task = tokio::spawn(watch(
            self.store.clone(),
            account.to_string(),
            mailbox.to_string(),
            from,
            tx,
        ));
        ChangeFeed {
            changes: rx,
            task: Some(task),
        }
    }
}

/// The start of the store's message for a watch whose start was pruned (tern-store's
/// `api::watch::FEED_PRUNED`).
const FEED_PRUNED: &str = "change feed pruned";

/// Follows the store's change feed for one mailbox, reconnecting (from the last modseq
/// seen) when a store node goes away, until the session drops the receiver.
async fn watch(
    store: StoreClient,
    account: String,
    mut mailbox: String,
    mut from: u64,
    tx: mpsc::Sender<Change>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let req = pb::WatchRequest {
            account: account.clone(),
            mailbox: mailbox.clone(),
            from_modseq: from,
        };
        let stream = store
            .call(|ch| {
                let r = req.clone();
                async move { WatchClient::new(ch).watch(r).await }
            })
            .await;
        match stream {
            Ok(s) => {
                let mut s = s.into_inner();
                loop {
                    let c = match s.message().await {
                        Ok(Some(c)) => c,
                        // The store pruned the feed past where this session is: it cannot
                        // catch up, and must end rather than go on with a gap.
                        Err(st)
                            if st.code() == Code::FailedPrecondition
                                && st.message().starts_with(FEED_PRUNED) =>
                        {
                            let lost = Change {
                                modseq: from,
                                mailbox_id: 0,
                                kind: ChangeKind::Lost,
                            };
                            let _ = tx.send(lost).await;
                            return;
                        }
                        Ok(None) | Err(_) => break,
                    };
                    backoff = Duration::from_millis(200);
                    from = from.max(c.modseq);
                    if c.kind() == pb::change::Kind::MailboxRenamed && !c.mailbox.is_empty() {
                        // A reconnect asks for the mailbox under the name it has now.
                        mailbox = c.mailbox.clone();
                    }
                    if tx.send(change(&c)).await.is_err() {
                        return;
                    }
                }
            }
            // The account or mailbox is gone: nothing more will come (a deletion was already
            // reported through the feed).
            Err(s) if s.code() == Code::NotFound => return,
            Err(_) => {}
        }
        if tx.is_closed() {
            return;
        }
        // Store calls already fail over between nodes; this only paces reconnects.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_codes_become_error_kinds() {
        let kind = |code| error(Status::new(code, "why")).kind;
        assert_eq!(kind(Code::NotFound), ErrorKind::NotFound);
        assert_eq!(kind(Code::AlreadyExists), ErrorKind::AlreadyExists);
        assert_eq!(kind(Code::ResourceExhausted), ErrorKind::OverQuota);
        assert_eq!(kind(Code::FailedPrecondition), ErrorKind::Rejected);
        assert_eq!(kind(Code::OutOfRange), ErrorKind::Rejected);
        assert_eq!(kind(Code::PermissionDenied), ErrorKind::PermissionDenied);
        assert_eq!(kind(Code::Unavailable), ErrorKind::Unavailable);
        assert_eq!(
            error(Status::invalid_argument("bad name")).message,
            "bad name"
        );
    }

    #[test]
    fn feed_events_become_changes() {
        let flags = pb::Change {
            modseq: 7,
            mailbox_id: 3,
            kind: pb::change::Kind::FlagsChanged as i32,
            uids: vec![1, 2],
            flag_sets: vec![pb::FlagSet {
                flags: vec!["\\Seen".into(), "work".into()],
            }],
            ..Default::default()
        };
        assert_eq!(
            change(&flags),
            Change {
                modseq: 7,
                mailbox_id: 3,
                kind: ChangeKind::Flags(vec![
                    (1, vec!["\\Seen".into(), "work".into()]),
                    (2, vec![]),
                ]),
            }
        );
        let renamed = pb::Change {
            kind: pb::change::Kind::MailboxRenamed as i32,
            mailbox: "New".into(),
            ..Default::default()
        };
        assert_eq!(change(&renamed).kind, ChangeKind::Renamed("New".into()));
        let unnamed = pb::Change {
            kind: pb::change::Kind::MailboxRenamed as i32,
            ..Default::default()
        };
        assert_eq!(change(&unnamed).kind, ChangeKind::Other);
    }
}
