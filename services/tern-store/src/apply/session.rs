//! The session-token signing keys, kept in the `meta` column family so every replica
//! verifies the tokens any node issued (see [`crate::session`]).

use crate::command::{Outcome, Reply};
use crate::error::AppResult;
use crate::keys::{cf, meta};
use crate::session::{with_new_key, SessionKey};
use crate::txn::Txn;

/// Every signing key the state holds (empty before the first token was issued).
pub fn session_keys(txn: &Txn<'_>) -> AppResult<Vec<SessionKey>> {
    Ok(txn
        .get::<Vec<SessionKey>>(cf::META, meta::SESSION_KEYS)?
        .unwrap_or_default())
}

/// Applies `AddSessionKey`.
pub fn add_key(txn: &mut Txn<'_>, secret: &[u8; 32], now_ms: i64) -> Outcome {
    let keys = with_new_key(session_keys(txn)?, *secret, now_ms);
    txn.put(cf::META, meta::SESSION_KEYS.to_vec(), &keys)?;
    Ok(Reply::Done)
}
