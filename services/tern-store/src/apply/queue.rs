//! Queue entries with leases: enqueue (idempotent), lease due entries, renew, update,
//! operator retry and delete.
//!
//! The `t<due><id>` index holds each entry once, at the time it next needs a worker: its
//! next attempt, or, while leased, its lease expiry (so a dead worker's entry becomes due
//! again by itself).

use crate::command::{Outcome, Reply};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{QueueEntryRec, QueueEventRec, QueueRcpt, RcptState};
use crate::txn::Txn;

use super::account;

/// Most history events kept per entry (the first, "received", is always kept).
const MAX_EVENTS: usize = 200;

fn enqueue_key(request_id: &str) -> Vec<u8> {
    let mut k = b"q/".to_vec();
    k.extend_from_slice(request_id.as_bytes());
    k
}

fn due_at(e: &QueueEntryRec) -> i64 {
    if e.lease_owner.is_empty() {
        e.next_attempt_at
    } else {
        e.next_attempt_at.max(e.lease_expires_at)
    }
}

fn load(txn: &Txn<'_>, id: &str) -> AppResult<QueueEntryRec> {
    txn.get(cf::QUEUE, &keys::queue_entry_key(id))?
        .ok_or_else(|| AppError::not_found(format!("no queue entry {id}")))
}

/// Writes `new`, moving its due-index key from where `old` had it.
fn save(txn: &mut Txn<'_>, old: Option<&QueueEntryRec>, new: &QueueEntryRec) -> AppResult<()> {
    if let Some(old) = old {
        txn.delete(cf::QUEUE, keys::queue_due_key(due_at(old), &old.id));
    }
    txn.put_raw(
        cf::QUEUE,
        keys::queue_due_key(due_at(new), &new.id),
        Vec::new(),
    );
    txn.put(cf::QUEUE, keys::queue_entry_key(&new.id), new)
}

fn push_events(e: &mut QueueEntryRec, events: &[QueueEventRec]) {
    e.events.extend_from_slice(events);
    if e.events.len() > MAX_EVENTS {
        let excess = e.events.len() - MAX_EVENTS;
        e.events.drain(1..=excess);
    }
}

/// Records a new entry (`deliver_local`: delivering its local recipients first, see
/// [`super::accept`]); an entry with nothing left to deliver is completed at once and kept
/// only in its trace. A `request_id` seen before returns the first outcome.
pub fn enqueue(
    txn: &mut Txn<'_>,
    entry: &QueueEntryRec,
    body: &[u8],
    request_id: &str,
    deliver_local: bool,
) -> Outcome {
    if !request_id.is_empty() {
        if let Some(id) = txn.get_raw(cf::DEDUP, &enqueue_key(request_id))? {
            let id =
                String::from_utf8(id).map_err(|_| AppError::internal("corrupt enqueue record"))?;
            // The first enqueue may have been delivered and completed since: the caller must
            // still hear that the message was accepted once, under which queue id.
            return match txn.get::<QueueEntryRec>(cf::QUEUE, &keys::queue_entry_key(&id))? {
                Some(e) => Ok(Reply::Entry(Box::new(e))),
                None => Ok(Reply::EnqueuedEarlier(id)),
            };
        }
    }
    if entry.recipients.is_empty() {
        return Err(AppError::invalid(
            "a queue entry needs at least one recipient",
        ));
    }
    if txn.exists(cf::QUEUE, &keys::queue_entry_key(&entry.id))? {
        return Err(AppError::exists(format!("queue entry {} exists", entry.id)));
    }
    let mut e = entry.clone();
    e.blob = account::blob_hash(body);
    e.size = body.len() as u64;
    super::trace::on_enqueue(txn, &e, request_id)?;
    let delivered = if deliver_local {
        super::accept::deliver_local(txn, &mut e, body)?
    } else {
        Vec::new()
    };
    push_events(&mut e, &delivered);
    let left = e
        .recipients
        .iter()
        .any(|r| matches!(r.state, RcptState::Pending | RcptState::Deferred));
    // Enqueue keeps every entry, as it always did (replaying an old log must give the same
    // state); only Accept completes one at once.
    if left || !deliver_local {
        account::blob_incref(txn, &e.blob, Some(body), 1)?;
        save(txn, None, &e)?;
        if !delivered.is_empty() {
            super::trace::on_update(txn, &e, &delivered, false)?;
        }
    } else {
        super::trace::on_update(txn, &e, &delivered, true)?;
    }
    if !request_id.is_empty() {
        let key = enqueue_key(request_id);
        super::retention::index_dedup(txn, &key)?;
        txn.put_raw(cf::DEDUP, key, e.id.as_bytes().to_vec());
    }
    Ok(Reply::Entry(Box::new(e)))
}

pub fn lease(
    txn: &mut Txn<'_>,
    owner: &str,
    max_entries: u32,
    lease_ms: u64,
    now_ms: i64,
) -> Outcome {
    if owner.is_empty() {
        return Err(AppError::invalid("a lease needs an owner"));
    }
    let mut out = Vec::new();
    // Entries are due in key order, so the first `max` keys are the candidates; the scan
    // never reads more than that, however long the queue is.
    let max = max_entries.max(1) as usize;
    for (k, _) in txn.scan_prefix_limit(cf::QUEUE, keys::QUEUE_DUE_PREFIX, max)? {
        if out.len() >= max_entries.max(1) as usize {
            break;
        }
        let Some((due, id)) = keys::due_of_queue_due_key(&k) else {
            continue;
        };
        if due > now_ms {
            break;
        }
        let old = load(txn, id)?;
        let mut e = old.clone();
        e.lease_owner = owner.to_string();
        e.lease_expires_at = now_ms.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
        save(txn, Some(&old), &e)?;
        out.push(e);
    }
    Ok(Reply::Entries(out))
}

fn require_owner(e: &QueueEntryRec, owner: &str) -> AppResult<()> {
    if e.lease_owner != owner {
        return Err(AppError::precondition(format!(
            "lease on {} lost: held by {:?}",
            e.id,
            if e.lease_owner.is_empty() {
                "nobody"
            } else {
                &e.lease_owner
            }
        )));
    }
    Ok(())
}

pub fn renew(txn: &mut Txn<'_>, id: &str, owner: &str, lease_ms: u64, now_ms: i64) -> Outcome {
    let old = load(txn, id)?;
    require_owner(&old, owner)?;
    let mut e = old.clone();
    e.lease_expires_at = now_ms.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
    save(txn, Some(&old), &e)?;
    Ok(Reply::Entry(Box::new(e)))
}

#[allow(clippy::too_many_arguments)]
pub fn update(
    txn: &mut Txn<'_>,
    id: &str,
    owner: &str,
    recipients: &[QueueRcpt],
    events: &[QueueEventRec],
    next_attempt_at: i64,
    release: bool,
    complete: bool,
) -> Outcome {
    let old = load(txn, id)?;
    require_owner(&old, owner)?;
    super::trace::on_update(txn, &old, events, complete)?;
    if complete {
        delete(txn, id)?;
        let mut e = old;
        push_events(&mut e, events);
        return Ok(Reply::Entry(Box::new(e)));
    }
    let mut e = old.clone();
    if !recipients.is_empty() {
        e.recipients = recipients.to_vec();
    }
    push_events(&mut e, events);
    e.attempts += 1;
    e.next_attempt_at = next_attempt_at;
    if release {
        e.lease_owner.clear();
        e.lease_expires_at = 0;
    }
    save(txn, Some(&old), &e)?;
    Ok(Reply::Entry(Box::new(e)))
}

pub fn retry(txn: &mut Txn<'_>, id: &str, now_ms: i64) -> Outcome {
    let old = load(txn, id)?;
    let mut e = old.clone();
    e.next_attempt_at = now_ms;
    e.lease_owner.clear();
    e.lease_expires_at = 0;
    push_events(
        &mut e,
        &[QueueEventRec {
            at: now_ms,
            kind: "retry".into(),
            detail: "requested by an operator".into(),
        }],
    );
    save(txn, Some(&old), &e)?;
    Ok(Reply::Entry(Box::new(e)))
}

pub fn delete(txn: &mut Txn<'_>, id: &str) -> Outcome {
    let e = load(txn, id)?;
    txn.delete(cf::QUEUE, keys::queue_due_key(due_at(&e), &e.id));
    txn.delete(cf::QUEUE, keys::queue_entry_key(&e.id));
    account::blob_decref(txn, &e.blob)?;
    Ok(Reply::Done)
}
