//! Session scoping of the API: which account an `access` caller may touch in one call.
//!
//! The method-by-role table (tern-trust) lets the `access` role call the mailbox and
//! message methods at all; this module narrows each such call to the account of the session
//! token it carries ([`crate::session`]). Other roles the table admits to these methods
//! (none today but the queue's write-only delivery) are not narrowed.
//!
//! Not narrowed, on purpose: `Queue.RecordTrace` (it adds a "retrieved" step to a delivery
//! timeline the caller names by trace id, and reads nothing). A Watch stream is admitted
//! when it opens; an access node reopens it with its current token when it reconnects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use tern_proto::store::v1 as pb;
use tern_trust::Role;
use tonic::{Request, Status};

use super::{now_ms, Api};
use crate::apply::session_keys;
use crate::command::Command;
use crate::keys::{self, cf};
use crate::model::normalize_address;
use crate::session::{self, Session, SessionKey, TokenError};

/// How long a node reuses the signing keys it read before reading them again. A key added
/// since is found anyway: an unknown key id makes the node read the keys linearizably.
const KEYS_FRESH_FOR: Duration = Duration::from_secs(5);

/// The signing keys as this node last read them.
#[derive(Default)]
pub struct KeyCache(Mutex<Option<(Instant, Arc<Vec<SessionKey>>)>>);

/// Which accounts one call may touch.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Any (the caller's role is not narrowed to sessions).
    Any,
    /// Only the session's account.
    Session(Session),
}

impl Scope {
    /// Admits touching `account` (as the request names it), or PERMISSION_DENIED.
    pub fn admit(&self, account: &str) -> Result<(), Status> {
        match self {
            Scope::Any => Ok(()),
            Scope::Session(s) => {
                let account = normalize_address(account)?;
                s.admit(&account).map_err(denied)
            }
        }
    }
}

fn denied(e: TokenError) -> Status {
    Status::permission_denied(e.to_string())
}

impl Api {
    /// The signing keys: cached for [`KEYS_FRESH_FOR`], or (`fresh`) read after a read
    /// barrier, so a key committed anywhere before this call is seen.
    async fn session_keys(&self, fresh: bool) -> Result<Arc<Vec<SessionKey>>, Status> {
        if !fresh {
            if let Ok(cached) = self.sessions.0.lock() {
                if let Some((at, keys)) = cached.as_ref() {
                    if at.elapsed() < KEYS_FRESH_FOR {
                        return Ok(keys.clone());
                    }
                }
            }
        }
        let keys = if fresh {
            self.read(session_keys).await?
        } else {
            self.read_local(session_keys).await?
        };
        let keys = Arc::new(keys);
        if let Ok(mut cached) = self.sessions.0.lock() {
            *cached = Some((Instant::now(), keys.clone()));
        }
        Ok(keys)
    }

    /// Checks a token: its signature, key and expiry (not yet the account).
    async fn verify_session(&self, token: &str) -> Result<Session, Status> {
        let keys = self.session_keys(false).await?;
        match session::verify(&keys, token, now_ms()) {
            Err(TokenError::UnknownKey(_)) => {
                let keys = self.session_keys(true).await?;
                session::verify(&keys, token, now_ms()).map_err(denied)
            }
            other => other.map_err(denied),
        }
    }

    /// The scope of a call: for an `access` caller, the session of the token it carries
    /// (PERMISSION_DENIED without a valid one); for the other roles, any account.
    pub async fn scope<T>(&self, req: &Request<T>) -> Result<Scope, Status> {
        let role = tern_proto::authz::caller(req).map(|id| id.role);
        match role {
            Some(Role::Access) => {}
            Some(_) => return Ok(Scope::Any),
            None => {
                return Err(Status::permission_denied(
                    "the caller's certificate names no Tern identity",
                ))
            }
        }
        let token = req
            .metadata()
            .get(session::METADATA)
            .ok_or_else(|| {
                Status::permission_denied(
                    "the access role must present a session token for mailbox calls",
                )
            })?
            .to_str()
            .map_err(|_| denied(TokenError::Malformed))?;
        Ok(Scope::Session(self.verify_session(token).await?))
    }

    /// [`Api::scope`] and [`Scope::admit`] in one, for requests that name their account
    /// before the handler consumes them.
    pub async fn scoped<T>(&self, req: &Request<T>, account: &str) -> Result<(), Status> {
        self.scope(req).await?.admit(account)
    }

    /// A new token for `account` (normalized), adding a signing key first when none is
    /// current (the first login, and once per rotation period).
    pub async fn issue_session(&self, account: &str) -> Result<pb::SessionToken, Status> {
        let now = now_ms();
        let mut keys = self.session_keys(false).await?;
        if session::current_key(&keys, now).is_none() {
            keys = self.session_keys(true).await?;
        }
        if session::current_key(&keys, now).is_none() {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            self.write(Command::AddSessionKey {
                secret,
                now_ms: now,
            })
            .await?;
            keys = self.session_keys(true).await?;
        }
        let key = session::current_key(&keys, now)
            .ok_or_else(|| Status::unavailable("no session key could be added; try again"))?;
        let expires_ms = now + (self.node.config.session_ttl_secs as i64) * 1000;
        Ok(pb::SessionToken {
            token: session::issue(key, account, expires_ms),
            expires_ms,
            account: account.to_string(),
        })
    }

    /// A fresh token for a valid one's account, while that account still exists.
    pub async fn renew_session(&self, token: &str) -> Result<pb::SessionToken, Status> {
        let s = self.verify_session(token).await?;
        let account = s.account.clone();
        let exists = self
            .read_local(move |txn| txn.exists(cf::DIR, &keys::user_key(&account)))
            .await?;
        if !exists {
            return Err(Status::permission_denied(
                "the session's account no longer exists",
            ));
        }
        self.issue_session(&s.account).await
    }
}

/// Whether `req` comes from the `access` role (which gets a session token with a password
/// check).
pub fn from_access<T>(req: &Request<T>) -> bool {
    tern_proto::authz::caller(req).is_some_and(|id| id.role == Role::Access)
}
