//! Deterministic application of [`Command`]s to the state machine.
//!
//! Everything here is a pure function of the command and the current state read through a
//! [`Txn`]; the same log applied on any replica gives the same bytes. A command that fails is
//! rolled back to the savepoint taken before it, so its partial writes never land, and its
//! error becomes its replicated outcome.

mod accept;
mod account;
pub mod audit;
mod directory;
pub mod head;
mod lock;
mod mailbox;
mod message;
mod queue;
pub mod recent;
pub mod retention;
mod session;
pub mod trace;

use crate::command::{Command, Outcome};
use crate::txn::Txn;

pub use account::{account_used_bytes, all_mailboxes, mailbox_by_name, user_by_address};
pub use mailbox::account_id;
pub use session::session_keys;

/// Applies one command inside `txn`. On error, the command's writes are undone.
pub fn apply_command(txn: &mut Txn<'_>, cmd: &Command) -> Outcome {
    let savepoint = txn.savepoint();
    let outcome = dispatch(txn, cmd);
    if outcome.is_err() {
        txn.rollback_to(savepoint);
    }
    outcome
}

fn dispatch(txn: &mut Txn<'_>, cmd: &Command) -> Outcome {
    use Command::*;
    match cmd {
        AddDomain { name } => directory::add_domain(txn, name),
        RemoveDomain { name } => directory::remove_domain(txn, name),
        AddUser {
            address,
            password_hash,
            quota_bytes,
            now_ms,
        } => directory::add_user(txn, address, password_hash, *quota_bytes, *now_ms),
        RemoveUser { address } => directory::remove_user(txn, address),
        SetPassword {
            address,
            password_hash,
        } => directory::set_password(txn, address, password_hash),
        SetQuota {
            address,
            quota_bytes,
        } => directory::set_quota(txn, address, *quota_bytes),
        AddAlias { address, targets } => directory::add_alias(txn, address, targets),
        RemoveAlias { address } => directory::remove_alias(txn, address),
        AddListMembers { address, members } => directory::add_list_members(txn, address, members),
        RemoveListMembers { address, members } => {
            directory::remove_list_members(txn, address, members)
        }
        RemoveList { address } => directory::remove_list(txn, address),
        CreateMailbox {
            account,
            name,
            special_use,
            now_ms,
        } => mailbox::create(txn, account, name, special_use, *now_ms),
        DeleteMailbox { account, name } => mailbox::delete(txn, account, name),
        RenameMailbox {
            account,
            from,
            to,
            now_ms,
        } => mailbox::rename(txn, account, from, to, *now_ms),
        Subscribe {
            account,
            name,
            subscribed,
        } => mailbox::subscribe(txn, account, name, *subscribed),
        Deliver {
            targets,
            body,
            internal_date,
        } => message::deliver(txn, targets, body, *internal_date),
        StoreFlags {
            account,
            mailbox,
            uids,
            mode,
            flags,
            unchanged_since,
        } => message::store_flags(txn, account, mailbox, uids, *mode, flags, *unchanged_since),
        Expunge {
            account,
            mailbox,
            uids,
            force,
        } => message::expunge(txn, account, mailbox, uids.as_ref(), *force),
        Copy {
            account,
            mailbox,
            uids,
            target,
            remove_source,
        } => message::copy(txn, account, mailbox, uids, target, *remove_source),
        Enqueue {
            entry,
            body,
            request_id,
        } => queue::enqueue(txn, entry, body, request_id, false),
        Accept {
            entry,
            body,
            request_id,
        } => queue::enqueue(txn, entry, body, request_id, true),
        DeliverStored {
            targets,
            blob,
            internal_date,
        } => message::deliver_stored(txn, targets, blob, *internal_date),
        Lease {
            owner,
            max_entries,
            lease_ms,
            now_ms,
        } => queue::lease(txn, owner, *max_entries, *lease_ms, *now_ms),
        Renew {
            id,
            owner,
            lease_ms,
            now_ms,
        } => queue::renew(txn, id, owner, *lease_ms, *now_ms),
        UpdateEntry {
            id,
            owner,
            recipients,
            events,
            next_attempt_at,
            release,
            complete,
        } => queue::update(
            txn,
            id,
            owner,
            recipients,
            events,
            *next_attempt_at,
            *release,
            *complete,
        ),
        RetryEntry { id, now_ms } => queue::retry(txn, id, *now_ms),
        DeleteEntry { id } => queue::delete(txn, id),
        Lock {
            op,
            name,
            owner,
            ttl_ms,
            now_ms,
        } => lock::apply(txn, *op, name, owner, *ttl_ms, *now_ms),
        RecordTrace {
            trace_id,
            blob,
            event,
        } => trace::record(txn, trace_id, blob, event),
        PruneTraces { before_ms, max } => trace::prune(txn, *before_ms, *max),
        AddSessionKey { secret, now_ms } => session::add_key(txn, secret, *now_ms),
        Audited { by, at_ms, action } => {
            let reply = dispatch(txn, action)?;
            let (what, target) = audit::describe(action);
            audit::record(txn, by, *at_ms, &what, &target)?;
            Ok(reply)
        }
        AuditNote {
            by,
            at_ms,
            action,
            target,
        } => {
            audit::record(txn, by, *at_ms, action, target)?;
            Ok(crate::command::Reply::Done)
        }
        AdvanceRetention { now_ms } => retention::advance(txn, *now_ms),
        PruneRetained { max } => retention::prune(txn, *max),
        ClaimRecent {
            account,
            mailbox,
            uid_validity,
            up_to,
        } => recent::claim(txn, account, mailbox, *uid_validity, *up_to),
    }
}

#[cfg(test)]
mod tests;
