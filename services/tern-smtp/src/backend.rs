//! What an SMTP session asks of the rest of the platform: the directory in the store
//! (recipients, passwords, sender ownership), the queue's Enqueue (the message streamed while
//! it arrives), and whether the store has a quorum at all (the greeting).

use std::time::Duration;

use tern_proto::client::StoreClient;
use tern_proto::directory_cache::Resolver;
use tern_proto::queue::v1 as qpb;
use tern_proto::queue::v1::queue_client::QueueClient;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_client::DirectoryClient;
use tern_telemetry::Health;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Octets collected before a chunk goes to the queue: a message is a few gRPC messages, and a
/// session in DATA holds about twice this (plus one chunk in flight), so 10,000 sessions stay
/// within a few GiB.
const CHUNK: usize = 64 << 10;
/// How long the queue may take to take a chunk or to confirm a committed message.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// A failure of the store or the queue: the client is told to try again later (4xx).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Why the queue did not take a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The queue or the store failed: try again later (451).
    #[error("{0}")]
    Temporary(String),
    /// The queue refuses a message this large, whatever the retry (552).
    #[error("{0}")]
    TooBig(String),
}

impl From<tonic::Status> for SinkError {
    fn from(s: tonic::Status) -> Self {
        let text = format!("{:?}: {}", s.code(), s.message());
        if s.code() == tonic::Code::ResourceExhausted {
            SinkError::TooBig(text)
        } else {
            SinkError::Temporary(text)
        }
    }
}

impl From<tonic::Status> for Unavailable {
    fn from(s: tonic::Status) -> Self {
        Unavailable(format!("{:?}: {}", s.code(), s.message()))
    }
}

/// An authenticated account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Store user id.
    pub id: u64,
    /// The account's own address.
    pub address: String,
}

/// The platform as the SMTP sessions of one process see it.
#[derive(Clone)]
pub struct Backend {
    store: StoreClient,
    queue: StoreClient,
    health: Health,
    /// Recipient lookups (with the directory cache, when it is on).
    directory: Resolver,
}

impl Backend {
    /// A backend over these clients. `health` is the service's readiness, which
    /// [`tern_proto::client::follow_store_quorum`] keeps equal to "the store has a quorum":
    /// the same answer decides `/readyz` and the greeting, so the two cannot disagree.
    /// `directory` resolves recipients (known ones from its cache, when it has one).
    pub fn new(
        store: StoreClient,
        queue: StoreClient,
        health: Health,
        directory: Resolver,
    ) -> Self {
        Self {
            store,
            queue,
            health,
            directory,
        }
    }

    /// Whether new mail can be taken now. New sessions are greeted 421 while the store has
    /// no quorum (RFC 5321 §3.1), instead of taking mail they could only refuse later.
    pub fn store_up(&self) -> bool {
        self.health.is_ready()
    }

    /// Looks an address up in the directory: a known recipient from the cache, anything
    /// else (and everything, without a cache) with the store's linearizable read.
    pub async fn resolve(&self, address: &str) -> Result<pb::ResolveResponse, Unavailable> {
        match self.directory.resolve(address).await {
            Ok(r) => Ok(r),
            // An address the store cannot even parse is nobody here.
            Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(pb::ResolveResponse {
                kind: pb::resolve_response::Kind::Unknown as i32,
                ..Default::default()
            }),
            Err(s) => Err(s.into()),
        }
    }

    /// Checks a password for a client at `client`; `None` when it is wrong (or the user
    /// unknown). Throttled or saturated checks are [`Unavailable`]: "try again later".
    pub async fn check_password(
        &self,
        address: &str,
        password: &str,
        client: std::net::IpAddr,
    ) -> Result<Option<Account>, Unavailable> {
        let req = pb::CheckPasswordRequest {
            address: address.to_string(),
            password: password.to_string(),
            client_ip: client.to_string(),
        };
        let r = self
            .store
            .call(|ch| {
                let req = req.clone();
                async move { DirectoryClient::new(ch).check_password(req).await }
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                if r.retry_later {
                    return Err(Unavailable(
                        "too many failed logins or checks in flight".into(),
                    ));
                }
                Ok(match (r.ok, r.user) {
                    (true, Some(u)) => Some(Account {
                        id: u.id,
                        address: u.address,
                    }),
                    _ => None,
                })
            }
            Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// Whether `account` may use `sender` as its envelope sender: its own address, or an
    /// alias that delivers to it (Postfix's `reject_sender_login_mismatch` with the aliases
    /// as the login map).
    pub async fn owns(&self, account: &Account, sender: &str) -> Result<bool, Unavailable> {
        if sender.eq_ignore_ascii_case(&account.address) {
            return Ok(true);
        }
        let r = self.resolve(sender).await?;
        use pb::resolve_response::Kind;
        Ok(match Kind::try_from(r.kind).unwrap_or(Kind::Unknown) {
            Kind::LocalUser => r.user.is_some_and(|u| u.id == account.id),
            Kind::Alias => r
                .targets
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&account.address)),
            _ => false,
        })
    }

    /// Starts an Enqueue call: the returned sink takes the message as it arrives. Runs in
    /// the caller's span, whose trace the queue entry joins.
    pub fn open(&self, envelope: qpb::Envelope) -> MessageSink {
        let (tx, rx) = mpsc::channel::<qpb::EnqueueRequest>(1);
        let channel = self.queue.channel();
        let queue = self.queue.clone();
        let call = tokio::spawn(
            async move {
                let r = QueueClient::new(channel)
                    .enqueue(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await;
                if let Err(s) = &r {
                    if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                        // This queue node may be down: the next message tries another.
                        queue.advance();
                    }
                }
                r.map(tonic::Response::into_inner)
            }
            .instrument(tracing::Span::current()),
        );
        MessageSink {
            tx: Some(tx),
            call: Some(call),
            envelope: Some(envelope),
            pending: Vec::with_capacity(CHUNK),
            failed: None,
        }
    }
}

/// A message on its way to the queue. Dropping it without [`MessageSink::commit`] abandons
/// the Enqueue, and the queue keeps nothing of it.
pub struct MessageSink {
    tx: Option<mpsc::Sender<qpb::EnqueueRequest>>,
    call: Option<tokio::task::JoinHandle<Result<qpb::EnqueueResponse, tonic::Status>>>,
    envelope: Option<qpb::Envelope>,
    pending: Vec<u8>,
    failed: Option<SinkError>,
}

impl Drop for MessageSink {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.abort();
        }
    }
}

impl MessageSink {
    /// Adds octets of the message. A failure is remembered and reported by `commit`; the
    /// caller keeps reading the client's data meanwhile.
    pub async fn write(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK {
            self.send(false).await;
        }
    }

    async fn send(&mut self, last: bool) {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        let req = qpb::EnqueueRequest {
            envelope: self.envelope.take(),
            chunk: chunk.into(),
            last,
        };
        let Some(tx) = &self.tx else { return };
        match tokio::time::timeout(QUEUE_TIMEOUT, tx.send(req)).await {
            Ok(Ok(())) => {}
            // The call ended early: its error says why.
            Ok(Err(_)) => self.failed = Some(self.call_error().await),
            Err(_) => {
                self.failed = Some(SinkError::Temporary(
                    "the queue stopped taking the message".into(),
                ))
            }
        }
    }

    async fn call_error(&mut self) -> SinkError {
        match self.call.take() {
            Some(call) => match call.await {
                Ok(Ok(_)) => {
                    SinkError::Temporary("the queue answered before the message ended".into())
                }
                Ok(Err(s)) => s.into(),
                Err(e) => SinkError::Temporary(format!("enqueue task: {e}")),
            },
            None => SinkError::Temporary("the queue call is gone".into()),
        }
    }

    /// Ends the message and waits until the queue has committed it; the queue id and trace
    /// id on success.
    ///
    /// When the queue does not confirm in time the call is cancelled and the client hears
    /// 451; if the queue had in fact committed just before, the client's retry makes a second
    /// copy. That is the at-least-once trade every MTA makes: a lost message is worse.
    pub async fn commit(mut self) -> Result<qpb::EnqueueResponse, SinkError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.send(true).await;
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.tx = None;
        let Some(call) = self.call.as_mut() else {
            return Err(SinkError::Temporary("the queue call is gone".into()));
        };
        let result = match tokio::time::timeout(QUEUE_TIMEOUT, call).await {
            // Dropping self aborts the call.
            Err(_) => {
                return Err(SinkError::Temporary(
                    "the queue did not confirm in time".into(),
                ))
            }
            Ok(Err(e)) => Err(SinkError::Temporary(format!("enqueue task: {e}"))),
            Ok(Ok(r)) => r.map_err(SinkError::from),
        };
        self.call = None;
        result
    }
}
