//! An access node's session with the store: the token a password check returned for the
//! user who logged in, carried on every store call the session makes (gRPC metadata
//! [`METADATA`]) and renewed before it expires.
//!
//! The store admits an `access` caller's mailbox and message calls only for the account of
//! the token they carry, so each IMAP or POP3 session holds its own [`SessionSlot`] (through
//! [`crate::client::StoreClient::for_session`]) and a token never serves another user.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::Code;

use crate::client::StoreClient;
use crate::store::v1::{directory_client::DirectoryClient, RenewSessionRequest, SessionToken};

/// The gRPC metadata key a session token travels under (the store reads the same key).
pub const METADATA: &str = "tern-session";

/// The shortest wait between two renewals, and between retries of a failed one.
const RENEW_RETRY: Duration = Duration::from_secs(1);

/// One session's token, shared by every clone of its [`StoreClient`]; renewal stops when the
/// last clone is dropped.
#[derive(Default)]
pub struct SessionSlot {
    token: RwLock<Option<MetadataValue<Ascii>>>,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("SessionSlot").finish_non_exhaustive()
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Ok(mut renewer) = self.renewer.lock() {
            if let Some(task) = renewer.take() {
                task.abort();
            }
        }
    }
}

/// The wall clock a token's expiry is compared with (the store's is the same one).
use tern_clock::now_ms;

impl SessionSlot {
    /// The token to send, once the session has one.
    pub fn current(&self) -> Option<MetadataValue<Ascii>> {
        self.token.read().ok().and_then(|t| t.clone())
    }

    pub(crate) fn set(&self, token: &str) {
        // A token is ASCII by construction; one that is not is dropped (calls then fail
        // PERMISSION_DENIED, which is the truth).
        let value = MetadataValue::try_from(token).ok();
        if let Ok(mut slot) = self.token.write() {
            *slot = value;
        }
    }

    fn token_text(&self) -> Option<String> {
        self.current()
            .and_then(|v| v.to_str().ok().map(str::to_string))
    }
}

/// Puts `token` into `slot` and keeps it renewed through `store` (at half of its remaining
/// life) for as long as the slot lives.
pub(crate) fn start(slot: &Arc<SessionSlot>, store: StoreClient, token: SessionToken) {
    slot.set(&token.token);
    let task = tokio::spawn(renew(Arc::downgrade(slot), store, token.expires_ms));
    if let Ok(mut renewer) = slot.renewer.lock() {
        if let Some(old) = renewer.replace(task) {
            old.abort();
        }
    }
}

async fn renew(slot: Weak<SessionSlot>, store: StoreClient, mut expires_ms: i64) {
    loop {
        let half = Duration::from_millis(((expires_ms - now_ms()) / 2).max(0) as u64);
        tokio::time::sleep(half.max(RENEW_RETRY)).await;
        let Some(token) = slot.upgrade().and_then(|s| s.token_text()) else {
            return;
        };
        let renewed = store
            .call(|ch| {
                let token = token.clone();
                async move {
                    DirectoryClient::new(ch)
                        .renew_session(RenewSessionRequest { token })
                        .await
                }
            })
            .await;
        match renewed {
            Ok(r) => {
                let r = r.into_inner();
                let Some(slot) = slot.upgrade() else { return };
                slot.set(&r.token);
                expires_ms = r.expires_ms;
            }
            // The token is gone for good (expired, or the account removed): the session's
            // calls will say so.
            Err(status) if status.code() == Code::PermissionDenied => {
                tracing::warn!(error = %status.message(), "session token renewal refused");
                return;
            }
            Err(status) => {
                tracing::debug!(error = %status.message(), "session token renewal failed; retrying");
                if expires_ms <= now_ms() {
                    return;
                }
            }
        }
    }
}
