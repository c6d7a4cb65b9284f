//! The POP3 [`Backend`] over the Tern store: passwords checked by the directory, the maildrop
//! lock as a store lease lock (so it holds across every access node), the INBOX listed once
//! at login, RETR streamed from the store, DELE committed as one expunge at QUIT.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use tern_proto::client::{StoreClient, TracedChannel};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_client::DirectoryClient;
use tern_proto::store::v1::locks_client::LocksClient;
use tern_proto::store::v1::messages_client::MessagesClient;
use tokio::task::JoinHandle;

use super::session::{Backend, BackendError, Content, Maildrop, MessageInfo, Open};

/// Largest store response accepted (a listing of a very large INBOX).
const MAX_RESPONSE: usize = 256 << 20;

/// A message's content as the store streams it.
pub struct StoreContent {
    stream: tonic::Streaming<pb::FetchChunk>,
    /// The first piece, read while the store call could still fail over.
    first: Option<pb::FetchChunk>,
    /// Reported into the message's delivery trace once the whole message has been read.
    trace: Option<(crate::retrieval::RetrievalTracer, String, u32)>,
    trace_id: String,
}

impl Content for StoreContent {
    async fn next_piece(&mut self) -> Result<Option<Vec<u8>>, BackendError> {
        let chunk = match self.first.take() {
            Some(c) => Some(c),
            None => self
                .stream
                .next()
                .await
                .transpose()
                .map_err(|s| unavailable("reading the message", s))?,
        };
        match chunk {
            Some(c) => {
                if self.trace_id.is_empty() {
                    self.trace_id = c.trace_id;
                }
                Ok(Some(c.data))
            }
            None => {
                if let Some((tracer, account, uid)) = self.trace.take() {
                    tracer.retrieved(&self.trace_id, "POP3 RETR/TOP", &account, "INBOX", uid);
                }
                Ok(None)
            }
        }
    }
}

/// One session's view of the store.
pub struct StoreBackend {
    store: StoreClient,
    /// This session's lock owner name: node id + random session id.
    owner: String,
    lock_ttl: Duration,
    renewal: Mutex<Option<JoinHandle<()>>>,
    /// INBOX's UIDVALIDITY at login: fetches name it, so the store may serve them from any
    /// node's applied state (and refuses them if the INBOX was recreated meanwhile).
    uid_validity: AtomicU32,
    /// Reports retrievals into the messages' delivery traces.
    tracer: crate::retrieval::RetrievalTracer,
    /// The client's address, for the store's failed-login counts.
    client: Option<std::net::IpAddr>,
}

fn lock_name(account: &str) -> String {
    format!("pop3/{account}")
}

fn unavailable(what: &str, status: tonic::Status) -> BackendError {
    BackendError(format!("{what}: {}", status.message()))
}

fn messages(ch: TracedChannel) -> MessagesClient<TracedChannel> {
    MessagesClient::new(ch).max_decoding_message_size(MAX_RESPONSE)
}

/// The UIDs as a set of single-UID ranges.
fn uid_set(uids: &[u32]) -> pb::UidSet {
    pb::UidSet {
        ranges: uids
            .iter()
            .map(|&u| pb::UidRange { first: u, last: u })
            .collect(),
    }
}

impl StoreBackend {
    /// A backend for one session; `node` names this access node in lock owners; `tracer`
    /// reports retrievals into the messages' delivery traces.
    pub fn new(
        store: StoreClient,
        node: &str,
        lock_ttl: Duration,
        tracer: crate::retrieval::RetrievalTracer,
    ) -> Self {
        Self {
            tracer,
            store,
            owner: format!("{node}/{:016x}", rand::random::<u64>()),
            lock_ttl,
            renewal: Mutex::new(None),
            uid_validity: AtomicU32::new(0),
            client: None,
        }
    }

    /// The same, for a client at `ip` (failed logins are counted per client network).
    pub fn for_client(mut self, ip: std::net::IpAddr) -> Self {
        self.client = Some(ip);
        self
    }

    fn lock_request(&self, account: &str) -> pb::LockRequest {
        pb::LockRequest {
            name: lock_name(account),
            owner: self.owner.clone(),
            ttl_ms: self.lock_ttl.as_millis() as u64,
        }
    }

    async fn renew(&self, account: &str) -> Result<bool, tonic::Status> {
        let req = self.lock_request(account);
        self.store
            .call(|ch| {
                let req = req.clone();
                async move { LocksClient::new(ch).renew(req).await }
            })
            .await
            .map(|r| r.into_inner().held)
    }

    fn stop_renewal(&self) {
        if let Some(task) = self
            .renewal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for StoreBackend {
    /// A session that ends without `close` (its task was cancelled) stops renewing; the lock
    /// then expires after its TTL.
    fn drop(&mut self) {
        self.stop_renewal();
    }
}

impl Backend for StoreBackend {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<String>, BackendError> {
        let req = pb::CheckPasswordRequest {
            address: user.to_string(),
            password: password.to_string(),
            client_ip: self.client.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        let resp = self
            .store
            .call(|ch| {
                let req = req.clone();
                async move { DirectoryClient::new(ch).check_password(req).await }
            })
            .await
            .map_err(|s| unavailable("directory", s))?
            .into_inner();
        if resp.retry_later {
            return Err(BackendError(
                "too many failed logins or checks in flight; try again later".into(),
            ));
        }
        Ok(match (resp.ok, resp.user) {
            (true, Some(u)) => {
                if let Some(session) = resp.session {
                    self.store.start_session(session);
                }
                Some(u.address)
            }
            _ => None,
        })
    }

    async fn open(&self, account: &str) -> Result<Open, BackendError> {
        let req = self.lock_request(account);
        let lock = self
            .store
            .call(|ch| {
                let req = req.clone();
                async move { LocksClient::new(ch).acquire(req).await }
            })
            .await
            .map_err(|s| unavailable("maildrop lock", s))?
            .into_inner();
        if !lock.held {
            return Ok(Open::InUse);
        }
        let list_req = pb::ListMessagesRequest {
            account: account.to_string(),
            mailbox: "INBOX".into(),
            uids: None,
            changed_since: 0,
        };
        let listed = self
            .store
            .call(|ch| {
                let req = list_req.clone();
                async move { messages(ch).list(req).await }
            })
            .await;
        let listed = match listed {
            Ok(l) => l.into_inner(),
            Err(s) => {
                self.close(account).await;
                return Err(unavailable("listing INBOX", s));
            }
        };
        let uid_validity = listed.mailbox.as_ref().map(|m| m.uid_validity).unwrap_or(0);
        self.uid_validity.store(uid_validity, Ordering::Relaxed);
        let mut records = listed.messages;
        records.sort_by_key(|m| m.uid);
        let maildrop = Maildrop {
            uid_validity,
            messages: records
                .iter()
                .map(|m| MessageInfo {
                    uid: m.uid,
                    size: m.wire_size,
                })
                .collect(),
        };
        // Keep the lock alive while the session lasts (renew at a third of its lifetime).
        let (store, renew_req) = (self.store.clone(), self.lock_request(account));
        let period = self.lock_ttl / 3;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let req = renew_req.clone();
                let held = store
                    .call(|ch| {
                        let req = req.clone();
                        async move { LocksClient::new(ch).renew(req).await }
                    })
                    .await;
                match held {
                    Ok(r) if r.get_ref().held => {}
                    Ok(_) => {
                        tracing::warn!(lock = %renew_req.name, "maildrop lock lost");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lock = %renew_req.name, error = %e.message(), "renewing the maildrop lock failed")
                    }
                }
            }
        });
        if let Some(old) = self
            .renewal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
        Ok(Open::Opened(maildrop))
    }

    type Content = StoreContent;

    async fn retrieve(&self, account: &str, uid: u32) -> Result<StoreContent, BackendError> {
        let req = pb::FetchRequest {
            account: account.to_string(),
            mailbox: "INBOX".into(),
            uid,
            offset: 0,
            length: 0,
            uid_validity: self.uid_validity.load(Ordering::Relaxed),
        };
        // Failing over between store nodes is possible until the first piece: the stream is
        // opened (and its first piece read) under the client's retry.
        let (stream, first) = self
            .store
            .call(|ch| {
                let req = req.clone();
                async move {
                    let mut stream = messages(ch).fetch(req).await?.into_inner();
                    let first = stream.next().await.transpose()?;
                    Ok((stream, first))
                }
            })
            .await
            .map_err(|s| unavailable("reading the message", s))?;
        Ok(StoreContent {
            stream,
            first,
            trace: Some((self.tracer.clone(), account.to_string(), uid)),
            trace_id: String::new(),
        })
    }

    async fn mark_seen(&self, account: &str, uids: &[u32]) -> Result<(), BackendError> {
        let req = pb::StoreFlagsRequest {
            account: account.to_string(),
            mailbox: "INBOX".into(),
            uids: Some(uid_set(uids)),
            mode: pb::store_flags_request::Mode::Add as i32,
            flags: vec!["\\Seen".into()],
            unchanged_since: 0,
        };
        self.store
            .call(|ch| {
                let req = req.clone();
                async move { messages(ch).store_flags(req).await }
            })
            .await
            .map(|_| ())
            .map_err(|s| unavailable("marking the message seen", s))
    }

    async fn delete(&self, account: &str, uids: &[u32]) -> Result<(), BackendError> {
        // Only the lock holder may delete: a session whose lock expired (the node was cut off
        // from the store for longer than the TTL) could race a newer session.
        match self.renew(account).await {
            Ok(true) => {}
            Ok(false) => return Err(BackendError("the maildrop lock was lost".into())),
            Err(s) => return Err(unavailable("maildrop lock", s)),
        }
        let req = pb::ExpungeRequest {
            account: account.to_string(),
            mailbox: "INBOX".into(),
            uids: Some(uid_set(uids)),
            force: true,
        };
        self.store
            .call(|ch| {
                let req = req.clone();
                async move { messages(ch).expunge(req).await }
            })
            .await
            .map(|_| ())
            .map_err(|s| unavailable("deleting", s))
    }

    async fn close(&self, account: &str) {
        self.stop_renewal();
        let req = self.lock_request(account);
        if let Err(e) = self
            .store
            .call(|ch| {
                let req = req.clone();
                async move { LocksClient::new(ch).release(req).await }
            })
            .await
        {
            tracing::warn!(error = %e.message(), "releasing the maildrop lock failed; it expires on its own");
        }
    }
}
