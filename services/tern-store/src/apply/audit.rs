//! The audit log of operators' changes behind `ternctl audit`: who (the caller's
//! certificate identity and address), did what, to which domain, user or node, and when.
//!
//! A change to the directory or the queue made through an operator's call travels as
//! [`Command::Audited`], so its record is written in the same batch as the change itself:
//! the log can neither miss a change that landed nor show one that was rolled back.
//! Actions outside the state machine (membership changes, backups) are recorded after they
//! succeed with [`Command::AuditNote`]. The log keeps the newest [`MAX_RECORDS`] entries;
//! pruning the oldest happens in the same apply, so every replica holds the same window.

use crate::command::{Command, LockOp};
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
    let (action, target): (&str, String) = match cmd {
        AddDomain { name } => ("add-domain", name.clone()),
        RemoveDomain { name } => ("remove-domain", name.clone()),
        AddUser {
            address,
            quota_bytes,
            ..
        } => ("add-user", format!("{address} quota={quota_bytes}")),
        RemoveUser { address } => ("remove-user", address.clone()),
        SetPassword { address, .. } => ("set-password", address.clone()),
        SetQuota {
            address,
            quota_bytes,
        } => ("set-quota", format!("{address} quota={quota_bytes}")),
        AddAlias { address, targets } => {
            ("add-alias", format!("{address} -> {}", targets.join(", ")))
        }
        RemoveAlias { address } => ("remove-alias", address.clone()),
        AddListMembers { address, members } => (
            "add-list-members",
            format!("{address} + {}", members.join(", ")),
        ),
        RemoveListMembers { address, members } => (
            "remove-list-members",
            format!("{address} - {}", members.join(", ")),
        ),
        RemoveList { address } => ("remove-list", address.clone()),
        CreateMailbox { account, name, .. } => ("create-mailbox", format!("{account} {name}")),
        DeleteMailbox { account, name } => ("delete-mailbox", format!("{account} {name}")),
        RenameMailbox {
            account, from, to, ..
        } => ("rename-mailbox", format!("{account} {from} -> {to}")),
        Subscribe { account, name, .. } => ("subscribe", format!("{account} {name}")),
        Deliver { targets, .. } => ("deliver", accounts(targets)),
        StoreFlags {
            account, mailbox, ..
        } => ("store-flags", format!("{account} {mailbox}")),
        Expunge {
            account, mailbox, ..
        } => ("expunge", format!("{account} {mailbox}")),
        Copy {
            account,
            mailbox,
            target,
            remove_source,
            ..
        } => (
            if *remove_source { "move" } else { "copy" },
            format!("{account} {mailbox} -> {target}"),
        ),
        Enqueue { entry, .. } => ("enqueue", entry.id.clone()),
        Accept { entry, .. } => ("accept", entry.id.clone()),
        DeliverStored { targets, .. } => ("deliver-stored", accounts(targets)),
        Lease { owner, .. } => ("lease", owner.clone()),
        Renew { id, .. } => ("renew", id.clone()),
        UpdateEntry { id, .. } => ("update-entry", id.clone()),
        RetryEntry { id, .. } => ("retry-entry", id.clone()),
        DeleteEntry { id } => ("delete-entry", id.clone()),
        Lock { name, op, .. } => (
            match op {
                LockOp::Acquire => "lock",
                LockOp::Renew => "renew-lock",
                LockOp::Release => "release-lock",
            },
            name.clone(),
        ),
        RecordTrace { trace_id, .. } => ("record-trace", trace_id.clone()),
        PruneTraces { .. } => ("prune-traces", String::new()),
        AdvanceRetention { .. } => ("advance-retention", String::new()),
        PruneRetained { .. } => ("prune-retained", String::new()),
        AddSessionKey { .. } => ("add-session-key", String::new()),
        Audited { action, .. } => return describe(action),
        AuditNote { action, target, .. } => return (action.clone(), target.clone()),
        ClaimRecent {
            account, mailbox, ..
        } => ("claim-recent", format!("{account} {mailbox}")),
    };
    (action.to_string(), target)
}
