//! Named lease locks (RFC 1939's maildrop lock across access nodes, and the like).
//!
//! Time comes from the command (`now_ms`, set by the proposing node), so every replica
//! decides expiry the same way.

use serde::{Deserialize, Serialize};

use crate::command::{LockOp, Outcome, Reply};
use crate::error::AppError;
use crate::keys::cf;
use crate::txn::Txn;

/// Longest lock name and owner.
const MAX_NAME: usize = 512;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LockRec {
    owner: String,
    expires_at: i64,
}

fn key(name: &str) -> Vec<u8> {
    let mut k = b"lock/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn check(name: &str, owner: &str) -> Result<(), AppError> {
    if name.is_empty() || owner.is_empty() || name.len() > MAX_NAME || owner.len() > MAX_NAME {
        return Err(AppError::invalid(format!(
            "a lock needs a name and an owner of 1 to {MAX_NAME} octets"
        )));
    }
    Ok(())
}

fn expiry(now_ms: i64, ttl_ms: u64) -> i64 {
    now_ms.saturating_add(ttl_ms.clamp(1, 24 * 3600 * 1000) as i64)
}

/// Applies one lock operation.
pub fn apply(
    txn: &mut Txn<'_>,
    op: LockOp,
    name: &str,
    owner: &str,
    ttl_ms: u64,
    now_ms: i64,
) -> Outcome {
    match op {
        LockOp::Acquire => acquire(txn, name, owner, ttl_ms, now_ms),
        LockOp::Renew => renew(txn, name, owner, ttl_ms, now_ms),
        LockOp::Release => release(txn, name, owner),
    }
}

fn acquire(txn: &mut Txn<'_>, name: &str, owner: &str, ttl_ms: u64, now_ms: i64) -> Outcome {
    check(name, owner)?;
    if let Some(l) = txn.get::<LockRec>(cf::META, &key(name))? {
        if l.owner != owner && l.expires_at > now_ms {
            return Ok(Reply::Lock {
                held: false,
                holder: l.owner,
                expires_at: l.expires_at,
            });
        }
    }
    let rec = LockRec {
        owner: owner.to_string(),
        expires_at: expiry(now_ms, ttl_ms),
    };
    txn.put(cf::META, key(name), &rec)?;
    Ok(Reply::Lock {
        held: true,
        holder: rec.owner,
        expires_at: rec.expires_at,
    })
}

fn renew(txn: &mut Txn<'_>, name: &str, owner: &str, ttl_ms: u64, now_ms: i64) -> Outcome {
    check(name, owner)?;
    match txn.get::<LockRec>(cf::META, &key(name))? {
        // Still ours (even if it just expired: nobody else took it).
        Some(l) if l.owner == owner => acquire(txn, name, owner, ttl_ms, now_ms),
        Some(l) if l.expires_at > now_ms => Ok(Reply::Lock {
            held: false,
            holder: l.owner,
            expires_at: l.expires_at,
        }),
        _ => Ok(Reply::Lock {
            held: false,
            holder: String::new(),
            expires_at: 0,
        }),
    }
}

fn release(txn: &mut Txn<'_>, name: &str, owner: &str) -> Outcome {
    check(name, owner)?;
    match txn.get::<LockRec>(cf::META, &key(name))? {
        Some(l) if l.owner == owner => {
            txn.delete(cf::META, key(name));
            Ok(Reply::Lock {
                held: false,
                holder: String::new(),
                expires_at: 0,
            })
        }
        Some(l) => Ok(Reply::Lock {
            held: false,
            holder: l.owner,
            expires_at: l.expires_at,
        }),
        None => Ok(Reply::Lock {
            held: false,
            holder: String::new(),
            expires_at: 0,
        }),
    }
}
