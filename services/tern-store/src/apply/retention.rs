//! Retention of the records that would otherwise grow forever: the idempotency records of
//! deliveries (`d/<delivery id>`) and enqueues (`q/<request id>`), and each account's change
//! feed.
//!
//! Time does not reach the apply step for every command (a delivery carries the message's
//! date, which an IMAP client may set years back), so records are not stamped with a clock.
//! Instead the state machine has a *retention epoch*: every such record is indexed under the
//! epoch current when it is written, the leader begins a new epoch once per retention
//! period ([`Command::AdvanceRetention`](crate::command::Command::AdvanceRetention), with
//! the leader's time), and [`prune`] removes, in bounded batches, what was written two or
//! more epochs ago. A record therefore lives between one and two retention periods, and
//! every replica removes exactly the same records.
//!
//! A change feed with pruned entries has a floor ([`keys::feed_floor_key`]): a reader asking
//! for changes from below it is told so ([`feed_floor`]) instead of being given a feed with
//! a silent gap.

use crate::command::{Outcome, Reply};
use crate::error::AppResult;
use crate::keys::{self, cf};
use crate::txn::Txn;

fn read_u64(txn: &Txn<'_>, cf_name: &'static str, key: &[u8]) -> AppResult<u64> {
    Ok(txn
        .get_raw(cf_name, key)?
        .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// The current retention epoch (0 before the first [`advance`]).
pub fn epoch(txn: &Txn<'_>) -> AppResult<u64> {
    read_u64(txn, cf::META, keys::meta::RETENTION_EPOCH)
}

/// When the current epoch began (Unix millis; 0 before the first [`advance`]).
pub fn epoch_started_ms(txn: &Txn<'_>) -> AppResult<i64> {
    Ok(read_u64(txn, cf::META, keys::meta::RETENTION_EPOCH_MS)? as i64)
}

/// Indexes an idempotency record (its `dedup` key) under the current epoch.
pub fn index_dedup(txn: &mut Txn<'_>, record_key: &[u8]) -> AppResult<()> {
    let epoch = epoch(txn)?;
    txn.put_raw(
        cf::DEDUP,
        keys::dedup_retention_key(epoch, record_key),
        Vec::new(),
    );
    Ok(())
}

/// Indexes a change-feed entry (its `changes` key) under the current epoch.
pub fn index_change(txn: &mut Txn<'_>, change_key: &[u8]) -> AppResult<()> {
    let epoch = epoch(txn)?;
    txn.put_raw(
        cf::CHANGES,
        keys::change_retention_key(epoch, change_key),
        Vec::new(),
    );
    Ok(())
}

/// Applies `AdvanceRetention`: a new epoch begins at `now_ms`.
pub fn advance(txn: &mut Txn<'_>, now_ms: i64) -> Outcome {
    let next = epoch(txn)? + 1;
    txn.put_raw(
        cf::META,
        keys::meta::RETENTION_EPOCH.to_vec(),
        next.to_be_bytes().to_vec(),
    );
    txn.put_raw(
        cf::META,
        keys::meta::RETENTION_EPOCH_MS.to_vec(),
        (now_ms.max(0) as u64).to_be_bytes().to_vec(),
    );
    Ok(Reply::Count(next))
}

/// Applies `PruneRetained`: removes up to `max` records written two or more epochs ago
/// (idempotency records first, then change-feed entries) with their index entries. The
/// reply is how many were removed; fewer than `max` means nothing due is left.
pub fn prune(txn: &mut Txn<'_>, max: u32) -> Outcome {
    let Some(last_due) = epoch(txn)?.checked_sub(2) else {
        return Ok(Reply::Count(0));
    };
    let mut removed = 0u32;
    for (k, _) in txn.scan_prefix_limit(cf::DEDUP, keys::DEDUP_RETENTION_PREFIX, max as usize)? {
        let Some((epoch, record)) = keys::of_retention_key(keys::DEDUP_RETENTION_PREFIX, &k) else {
            continue;
        };
        if epoch > last_due {
            break;
        }
        txn.delete(cf::DEDUP, record.to_vec());
        txn.delete(cf::DEDUP, k);
        removed += 1;
    }
    let left = (max - removed) as usize;
    if left == 0 {
        return Ok(Reply::Count(u64::from(removed)));
    }
    let prefix = keys::CHANGE_RETENTION_PREFIX;
    for (k, _) in txn.scan_prefix_limit(cf::CHANGES, &prefix, left)? {
        let Some((epoch, change)) = keys::of_retention_key(&prefix, &k) else {
            continue;
        };
        if epoch > last_due {
            break;
        }
        if let Some((account, modseq)) = split_change_key(change) {
            raise_floor(txn, account, modseq.saturating_add(1))?;
        }
        txn.delete(cf::CHANGES, change.to_vec());
        txn.delete(cf::CHANGES, k);
        removed += 1;
    }
    Ok(Reply::Count(u64::from(removed)))
}

fn split_change_key(key: &[u8]) -> Option<(u64, u64)> {
    let account = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let modseq = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((account, modseq))
}

fn raise_floor(txn: &mut Txn<'_>, account: u64, floor: u64) -> AppResult<()> {
    let key = keys::feed_floor_key(account);
    if floor > read_u64(txn, cf::MBOX, &key)? {
        txn.put_raw(cf::MBOX, key, floor.to_be_bytes().to_vec());
    }
    Ok(())
}

/// The lowest modseq from which `account`'s change feed is still whole: a reader that has
/// seen every change up to `after` can go on only if `after + 1 >= feed_floor`.
pub fn feed_floor(txn: &Txn<'_>, account: u64) -> AppResult<u64> {
    read_u64(txn, cf::MBOX, &keys::feed_floor_key(account))
}
