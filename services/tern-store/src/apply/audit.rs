//! The audit log of operators' changes behind `ternctl audit`: who (the caller's
//! certificate identity and address), did what, to which domain, user or node, and when.
//!
//! A change to the directory or the queue made through an operator's call travels as
//! [`Command::Audited`], so its record is written in the same batch as the change itself:
//! the log can neither miss a change that landed nor show one that was rolled back.
//! Actions outside the state machine (membership changes, backups) are recorded after they
//! succeed with [`Command::AuditNote`]. The log keeps the newest [`MAX_RECORDS`] entries;
//! pruning the oldest happens in the same apply, so every replica holds the same window.

use crate::command::Command;
use crate::error::AppResult;
use crate::keys::{self, cf};
use crate::model::AuditRec;
use crate::txn::Txn;

/// Records kept; each new one past this drops the oldest.
pub const MAX_RECORDS: u64 = 100_000;
/// Longest `by` or `target` kept (longer ones are cut).
const MAX_FIELD: usize = 512;

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn next_seq(txn: &Txn<'_>) -> AppResult<u64> {
    Ok(txn
        .get_raw(cf::META, keys::meta::AUDIT_NEXT)?
        .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(1))
}

/// Appends one record and drops the one that falls out of the window.
pub fn record(
    txn: &mut Txn<'_>,
    by: &str,
    at_ms: i64,
    action: &str,
    target: &str,
) -> AppResult<()> {
    let seq = next_seq(txn)?;
    txn.put_raw(
        cf::META,
        keys::meta::AUDIT_NEXT.to_vec(),
        (seq + 1).to_be_bytes().to_vec(),
    );
    let rec = AuditRec {
        seq,
        at_ms,
        by: cut(by),
        action: action.to_string(),
        target: cut(target),
    };
    txn.put(cf::DIR, keys::audit_key(seq), &rec)?;
    if seq > MAX_RECORDS {
        txn.delete(cf::DIR, keys::audit_key(seq - MAX_RECORDS));
    }
    Ok(())
}

/// The newest `limit` records whose sequence number is below `before` (0: the newest),
/// newest first.
pub fn list(txn: &Txn<'_>, limit: usize, before: u64) -> AppResult<Vec<AuditRec>> {
    let next = next_seq(txn)?;
    let end = if before == 0 { next } else { before.min(next) };
    let start = end.saturating_sub(limit as u64).max(1);
    let found = txn.scan_from(cf::DIR, keys::AUDIT_PREFIX, &keys::audit_key(start), limit)?;
    let mut out = Vec::with_capacity(found.len());
    for (_, value) in found {
        let rec: AuditRec = bincode::deserialize(&value)?;
        if rec.seq < end {
            out.push(rec);
        }
    }
    out.reverse();
    Ok(out)
}

/// The accounts a delivery goes to, for the log.
fn accounts(targets: &[crate::command::Target]) -> String {
    targets
        .iter()
        .map(|t| t.account.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a command does and to what, in the audit log's words. Password hashes, message
/// bodies and secrets never appear.
pub fn describe(cmd: &Command) -> (String, String) {
    use Command::*;
    let target = match cmd {
        AddDomain { name } | RemoveDomain { name } => name.clone(),
        AddUser {
            address,
            quota_bytes,
            ..
        }
        | SetQuota {
            address,
            quota_bytes,
        } => format!("{address} quota={quota_bytes}"),
        RemoveUser { address }
        | SetPassword { address, .. }
        | RemoveAlias { address }
        | RemoveList { address } => address.clone(),
        AddAlias { address, targets } => format!("{address} -> {}", targets.join(", ")),
        AddListMembers { address, members } => format!("{address} + {}", members.join(", ")),
        RemoveListMembers { address, members } => {
            format!("{address} - {}", members.join(", "))
        }
        CreateMailbox { account, name, .. }
        | DeleteMailbox { account, name }
        | Subscribe { account, name, .. } => format!("{account} {name}"),
        RenameMailbox {
            account, from, to, ..
        } => format!("{account} {from} -> {to}"),
        Deliver { targets, .. } | DeliverStored { targets, .. } => accounts(targets),
        StoreFlags {
            account, mailbox, ..
        }
        | Expunge {
            account, mailbox, ..
        }
        | ClaimRecent {
            account, mailbox, ..
        } => format!("{account} {mailbox}"),
        Copy {
            account,
            mailbox,
            target,
            ..
        } => format!("{account} {mailbox} -> {target}"),
        Enqueue { entry, .. } | Accept { entry, .. } => entry.id.clone(),
        Lease { owner, .. } => owner.clone(),
        Renew { id, .. } | UpdateEntry { id, .. } | RetryEntry { id, .. } | DeleteEntry { id } => {
            id.clone()
        }
        Lock { name, .. } => name.clone(),
        RecordTrace { trace_id, .. } => trace_id.clone(),
        PruneTraces { .. }
        | AdvanceRetention { .. }
        | PruneRetained { .. }
        | AddSessionKey { .. } => String::new(),
        Audited { action, .. } => return describe(action),
        AuditNote { action, target, .. } => return (action.clone(), target.clone()),
    };
    (cmd.kind().to_string(), target)
}
