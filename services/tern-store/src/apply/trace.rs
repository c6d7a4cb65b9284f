//! The per-message delivery timeline behind `ternctl trace`.
//!
//! Every step the store sees of a message's journey is appended to one [`TraceRec`], keyed
//! by the W3C trace id the message was accepted with, in the same write batch as the step
//! itself: the enqueue (tern-smtp's acceptance and tern-queue's entry), each delivery
//! attempt's outcome (reported by tern-queue), each store commit into a mailbox, and the
//! first retrieval of each copy over IMAP or POP3 (reported by tern-access). Because the
//! record is written with the change it describes, the timeline is exactly what happened
//! as far as the replicated state knows, and it needs no tracing backend to read.
//!
//! Indexes find a trace by queue id (`TQ/`), by Message-ID (`TM/`) and by the content hash
//! of the stored message (`TB/`, how a mailbox copy leads back to its trace). A retention
//! index (`TX/`, by creation time) lets [`prune`] drop old timelines with their indexes.

use crate::command::{Outcome, Reply};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{QueueEntryRec, QueueEventRec, TraceEventRec, TraceRec};
use crate::txn::Txn;

/// Most events kept per trace; beyond it the oldest are dropped, except the first.
pub const MAX_EVENTS: usize = 256;
/// Longest event detail kept (longer ones are cut at a character boundary).
pub const MAX_DETAIL: usize = 1024;
/// Request ids of the DSNs tern-queue sends start with this (its bounce convention), so
/// their "received" step is the queue's, not tern-smtp's.
pub const DSN_REQUEST_PREFIX: &str = "dsn/";

/// Whether `id` is a W3C trace id as the services write it: 32 lowercase hex digits, not
/// all zero.
pub fn is_trace_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

fn load(txn: &Txn<'_>, trace_id: &str) -> AppResult<Option<TraceRec>> {
    txn.get(cf::QUEUE, &keys::trace_key(trace_id))
}

fn save(txn: &mut Txn<'_>, t: &TraceRec) -> AppResult<()> {
    txn.put(cf::QUEUE, keys::trace_key(&t.trace_id), t)
}

fn cut(detail: &str) -> String {
    if detail.len() <= MAX_DETAIL {
        return detail.to_string();
    }
    let mut end = MAX_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &detail[..end])
}

fn push(t: &mut TraceRec, at: i64, service: &str, kind: &str, detail: &str) {
    t.events.push(TraceEventRec {
        at,
        service: service.to_string(),
        kind: kind.to_string(),
        detail: cut(detail),
    });
    if t.events.len() > MAX_EVENTS {
        let excess = t.events.len() - MAX_EVENTS;
        t.events.drain(1..=excess);
    }
}

/// Records an entry that was just enqueued: creates the trace (or adds a DSN's entry to
/// the trace of the message it reports on) and its indexes.
pub fn on_enqueue(txn: &mut Txn<'_>, e: &QueueEntryRec, request_id: &str) -> AppResult<()> {
    if !is_trace_id(&e.trace_id) {
        return Ok(());
    }
    let mut t = match load(txn, &e.trace_id)? {
        Some(t) => t,
        None => {
            txn.put_raw(
                cf::QUEUE,
                keys::trace_by_time_key(e.created_at, &e.trace_id),
                Vec::new(),
            );
            TraceRec {
                trace_id: e.trace_id.clone(),
                created_at: e.created_at,
                ..TraceRec::default()
            }
        }
    };
    if !e.message_id.is_empty() && !t.message_ids.contains(&e.message_id) {
        t.message_ids.push(e.message_id.clone());
        txn.put_raw(
            cf::QUEUE,
            keys::trace_by_message_id_key(&e.message_id, &e.trace_id),
            Vec::new(),
        );
    }
    if !t.queue_ids.contains(&e.id) {
        t.queue_ids.push(e.id.clone());
    }
    txn.put_raw(
        cf::QUEUE,
        keys::trace_by_queue_key(&e.id),
        e.trace_id.as_bytes().to_vec(),
    );
    if !t.blobs.contains(&e.blob) {
        t.blobs.push(e.blob);
    }
    txn.put_raw(
        cf::QUEUE,
        keys::trace_by_blob_key(&e.blob),
        e.trace_id.as_bytes().to_vec(),
    );
    let receiver = if request_id.starts_with(DSN_REQUEST_PREFIX) {
        "queue"
    } else {
        "smtp"
    };
    for ev in &e.events {
        push(&mut t, ev.at, receiver, &ev.kind, &ev.detail);
    }
    let rcpts: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
    push(
        &mut t,
        e.created_at,
        "queue",
        "queued",
        &format!(
            "queue id {}, {} octets, from <{}> to {}",
            e.id,
            e.size,
            e.sender,
            rcpts.join(", ")
        ),
    );
    save(txn, &t)
}

/// Records the outcome of a delivery attempt that tern-queue reported for entry `e`.
pub fn on_update(
    txn: &mut Txn<'_>,
    e: &QueueEntryRec,
    events: &[QueueEventRec],
    complete: bool,
) -> AppResult<()> {
    if !is_trace_id(&e.trace_id) {
        return Ok(());
    }
    let Some(mut t) = load(txn, &e.trace_id)? else {
        return Ok(());
    };
    for ev in events {
        push(&mut t, ev.at, "queue", &ev.kind, &ev.detail);
    }
    if complete {
        let at = events.iter().map(|ev| ev.at).max().unwrap_or(e.created_at);
        push(
            &mut t,
            at,
            "queue",
            "completed",
            &format!(
                "queue entry {} done after {} attempt(s)",
                e.id,
                e.attempts + 1
            ),
        );
    }
    save(txn, &t)
}

/// Records a commit of content `blob` into a mailbox, when that content belongs to a trace.
pub fn on_stored(
    txn: &mut Txn<'_>,
    blob: &[u8; 32],
    at_ms: i64,
    detail: impl FnOnce() -> String,
) -> AppResult<()> {
    let Some(trace_id) = trace_of_blob(txn, blob)? else {
        return Ok(());
    };
    let Some(mut t) = load(txn, &trace_id)? else {
        return Ok(());
    };
    push(&mut t, at_ms, "store", "stored", &detail());
    save(txn, &t)
}

/// The trace a stored content belongs to, if any.
pub fn trace_of_blob(txn: &Txn<'_>, blob: &[u8; 32]) -> AppResult<Option<String>> {
    Ok(txn
        .get_raw(cf::QUEUE, &keys::trace_by_blob_key(blob))?
        .and_then(|v| String::from_utf8(v).ok()))
}

/// Whether the trace already has this exact step (service, kind and detail), so a reported
/// step that repeats (a message read twice by the same client) is recorded once.
pub fn has_event(t: &TraceRec, event: &TraceEventRec) -> bool {
    t.events.iter().any(|e| {
        e.service == event.service && e.kind == event.kind && e.detail == cut(&event.detail)
    })
}

/// Applies `RecordTrace`: a step reported by another service (a retrieval by tern-access).
/// The reporter names the content it handled, and the step is recorded only when that
/// content belongs to the trace, so no client can write into a stranger's timeline.
pub fn record(
    txn: &mut Txn<'_>,
    trace_id: &str,
    blob: &[u8; 32],
    event: &TraceEventRec,
) -> Outcome {
    if trace_of_blob(txn, blob)?.as_deref() != Some(trace_id) {
        return Err(AppError::not_found(format!(
            "no trace {trace_id} for that content"
        )));
    }
    let mut t =
        load(txn, trace_id)?.ok_or_else(|| AppError::not_found(format!("no trace {trace_id}")))?;
    if !has_event(&t, event) {
        push(&mut t, event.at, &event.service, &event.kind, &event.detail);
        save(txn, &t)?;
    }
    Ok(Reply::Done)
}

/// Applies `PruneTraces`: removes up to `max` timelines created before `before_ms`, with
/// their indexes (an index that another trace has taken over since is left alone).
pub fn prune(txn: &mut Txn<'_>, before_ms: i64, max: u32) -> Outcome {
    let mut removed = 0u32;
    let keys_due = txn.scan_prefix_limit(cf::QUEUE, keys::TRACE_BY_TIME_PREFIX, max as usize)?;
    for (k, _) in keys_due {
        let Some((at, trace_id)) = keys::of_trace_by_time_key(&k) else {
            continue;
        };
        if at >= before_ms {
            break;
        }
        let trace_id = trace_id.to_string();
        if let Some(t) = load(txn, &trace_id)? {
            for m in &t.message_ids {
                txn.delete(cf::QUEUE, keys::trace_by_message_id_key(m, &trace_id));
            }
            for q in &t.queue_ids {
                let key = keys::trace_by_queue_key(q);
                if txn.get_raw(cf::QUEUE, &key)?.as_deref() == Some(trace_id.as_bytes()) {
                    txn.delete(cf::QUEUE, key);
                }
            }
            for b in &t.blobs {
                let key = keys::trace_by_blob_key(b);
                if txn.get_raw(cf::QUEUE, &key)?.as_deref() == Some(trace_id.as_bytes()) {
                    txn.delete(cf::QUEUE, key);
                }
            }
            txn.delete(cf::QUEUE, keys::trace_key(&trace_id));
        }
        txn.delete(cf::QUEUE, k);
        removed += 1;
    }
    Ok(Reply::Count(removed as u64))
}
