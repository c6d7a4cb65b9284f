//! The gRPC API of tern-store (proto/tern/store/v1): one module per service, all sharing
//! [`Api`], which knows how to write through Raft and how to read linearizably.

pub mod admin;
pub mod backups;
pub mod convert;
pub mod directory;
pub mod headers;
pub mod locks;
pub mod mailboxes;
pub mod messages;
pub mod queue;
pub mod raft;
pub mod session;
pub mod watch;

use std::sync::Arc;

use futures::StreamExt;
use tern_proto::store::v1 as pb;
use tonic::{Request, Status, Streaming};

use crate::command::{Command, Reply};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::node::Node;
use crate::txn::Txn;

/// Largest gRPC message the API accepts (bodies arrive in chunks well under this).
pub const MAX_GRPC_MESSAGE: usize = 8 << 20;
/// Size of the chunks the API streams bodies back in.
pub const CHUNK: usize = 1 << 20;

/// Shared handle every service implementation holds.
#[derive(Clone)]
pub struct Api {
    /// The node.
    pub node: Arc<Node>,
    /// The session-token signing keys as this node last read them.
    pub sessions: Arc<session::KeyCache>,
    /// The argon2id pool password checks and hashing run on.
    pub passwords: Arc<crate::password::Passwords>,
    /// Successful password checks remembered (no argon2 for a client logging in again).
    pub credentials: Arc<crate::credential_cache::CredentialCache>,
    /// Failed-login counts (this node's).
    pub logins: Arc<std::sync::Mutex<crate::login_throttle::LoginThrottle>>,
}

/// Who made a call, as the audit log names them: the caller's certificate identity and,
/// when known, address. `None` for a store node (it forwards a call it authorized and
/// recorded itself) and for a call without a verified identity.
pub fn actor<T>(req: &Request<T>) -> Option<String> {
    let id = tern_proto::authz::caller(req)?;
    if id.role == tern_trust::Role::Store {
        return None;
    }
    let addr = req
        .extensions()
        .get::<tern_proto::tls::Peer>()
        .map(|p| p.addr)
        .or_else(|| req.remote_addr());
    Some(match addr {
        Some(addr) => format!("{} from {}", id.uri(), addr.ip()),
        None => id.uri(),
    })
}

impl Api {
    /// Commits one command and returns its reply, or its error as a gRPC status.
    pub async fn write(&self, cmd: Command) -> Result<Reply, Status> {
        self.node.write(cmd).await.map_err(Status::from)
    }

    /// Commits an operator's change (`by` from [`actor`]) together with its audit record,
    /// in one write ([`crate::apply::audit`]).
    pub async fn write_by(&self, by: Option<String>, cmd: Command) -> Result<Reply, Status> {
        let cmd = match by {
            Some(by) => Command::Audited {
                by,
                at_ms: now_ms(),
                action: Box::new(cmd),
            },
            None => cmd,
        };
        self.write(cmd).await
    }

    /// Records an operator's action outside the state machine (a membership change, a
    /// backup) after it succeeded. The action stands even if the record cannot be written
    /// (no quorum right after an Init): that is logged, not returned.
    pub async fn note_by(&self, by: Option<String>, action: &str, target: String) {
        let Some(by) = by else {
            return;
        };
        let note = Command::AuditNote {
            by,
            at_ms: now_ms(),
            action: action.to_string(),
            target,
        };
        if let Err(e) = self.write(note).await {
            tracing::warn!(action, error = %e.message(), "recording an audit note failed");
        }
    }

    /// Runs `f` against this node's state after a read barrier (linearizable).
    pub async fn read<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Txn<'_>) -> AppResult<T> + Send + 'static,
    {
        self.node.read_barrier().await?;
        self.read_local(f).await
    }

    /// Runs `f` against this node's state as applied so far (may lag the leader by
    /// milliseconds; used where that is harmless: reads that follow a linearizable one, and
    /// fetches of records the caller already knows exist).
    pub async fn read_local<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Txn<'_>) -> AppResult<T> + Send + 'static,
    {
        let state = self.node.state.clone();
        tokio::task::spawn_blocking(move || state.read(f))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::from)
    }

    /// Largest accepted message body.
    pub fn max_message_size(&self) -> u64 {
        self.node.config.max_message_size
    }

    /// Reads a streamed request's header and whole body under this node's message size
    /// limit (see [`collect_body`] for what it refuses).
    pub async fn receive_body<M: BodyRequest>(
        &self,
        req: Request<Streaming<M>>,
    ) -> Result<(M::Header, Vec<u8>), Status> {
        collect_body(
            req.into_inner(),
            self.max_message_size(),
            M::split,
            M::declared_size,
        )
        .await
    }
}

/// A client-streamed request whose first message carries a header (with the exact body
/// size) and whose messages all may carry body chunks: what [`Api::receive_body`] reads.
pub trait BodyRequest: Send + 'static {
    /// The header the first message carries.
    type Header;
    /// One message's header (only the first has one) and body chunk.
    fn split(self) -> (Option<Self::Header>, Vec<u8>);
    /// The exact body size a header declares.
    fn declared_size(header: &Self::Header) -> u64;
}

/// Every streamed request of the store's API has the same shape: `header`, `chunk`, and a
/// `size` in the header.
macro_rules! body_request {
    ($($req:ident => $header:ident),* $(,)?) => {$(
        impl BodyRequest for pb::$req {
            type Header = pb::$header;
            fn split(self) -> (Option<pb::$header>, Vec<u8>) {
                (self.header, self.chunk.into())
            }
            fn declared_size(header: &pb::$header) -> u64 {
                header.size
            }
        }
    )*};
}

body_request!(
    AppendRequest => AppendHeader,
    DeliverRequest => DeliverHeader,
    EnqueueRequest => EnqueueHeader,
);

/// Reads a client stream whose first message carries a header (with the exact body size)
/// and whose messages all may carry body chunks.
///
/// A declared size over `limit` is refused before the body is read; a body that grows past
/// its declared size is refused as soon as it does; a stream that ends short of the declared
/// size (a client that went away mid-body: HTTP/2 may end such a stream cleanly) is refused,
/// so nothing half-written is ever stored.
pub async fn collect_body<M, H>(
    mut stream: Streaming<M>,
    limit: u64,
    split: impl Fn(M) -> (Option<H>, Vec<u8>),
    declared_size: impl Fn(&H) -> u64,
) -> Result<(H, Vec<u8>), Status>
where
    M: Send + 'static,
{
    let mut header: Option<H> = None;
    let mut size = 0u64;
    let mut body = Vec::new();
    while let Some(msg) = stream.next().await {
        let (h, chunk) = split(msg?);
        if let Some(h) = h {
            if header.is_some() {
                return Err(Status::invalid_argument(
                    "the header must be sent once, in the first message",
                ));
            }
            size = declared_size(&h);
            if size > limit {
                return Err(too_large(limit));
            }
            body.reserve_exact(size as usize);
            header = Some(h);
        } else if header.is_none() {
            return Err(Status::invalid_argument(
                "the first message must carry the header",
            ));
        }
        if body.len() as u64 + chunk.len() as u64 > size {
            return Err(Status::invalid_argument(format!(
                "the body is longer than its declared size of {size} octets"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let header =
        header.ok_or_else(|| Status::invalid_argument("empty request stream: no header"))?;
    if body.len() as u64 != size {
        return Err(Status::invalid_argument(format!(
            "the stream ended after {} of {size} octets; nothing was stored",
            body.len()
        )));
    }
    Ok((header, body))
}

fn too_large(limit: u64) -> Status {
    AppError::new(
        ErrorKind::ResourceExhausted,
        format!("message exceeds the size limit of {limit} octets"),
    )
    .into()
}

/// Current time in unix milliseconds (commands carry it so replicas agree), from the one
/// wall clock every service reads ([`tern_clock`], which fault tests can make jump).
pub fn now_ms() -> i64 {
    tern_clock::now_ms()
}

/// Error for a reply of an unexpected shape (a bug, never a client's fault).
pub fn unexpected(reply: &Reply) -> Status {
    Status::internal(format!("unexpected reply {reply:?}"))
}

/// Builds the shared [`Api`] of `node`, starting its password pool.
pub fn api(node: Arc<Node>) -> anyhow::Result<Api> {
    let passwords = crate::password::Passwords::start(node.config.password_pool())?;
    let logins = node.config.login_throttle();
    let credentials = crate::credential_cache::CredentialCache::new(
        node.config.credential_cache_entries as usize,
        std::time::Duration::from_secs(node.config.credential_cache_secs),
    );
    Ok(Api {
        node,
        sessions: Arc::default(),
        passwords: Arc::new(passwords),
        credentials: Arc::new(credentials),
        logins: Arc::new(std::sync::Mutex::new(logins)),
    })
}
