//! Mailbox hierarchy: create, delete, rename, subscribe.

use crate::command::{Outcome, Reply};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{
    normalize_address, normalize_mailbox, ChangeKind, MailboxRec, MessageRec, DELIMITER,
};
use crate::txn::Txn;

use super::account::{self, change, next_modseq, record_change, require_mailbox, user_by_address};

const SPECIAL_USES: [&str; 7] = [
    "\\Sent",
    "\\Drafts",
    "\\Trash",
    "\\Junk",
    "\\Archive",
    "\\All",
    "\\Flagged",
];

/// Resolves an account address to its id.
pub fn account_id(txn: &Txn<'_>, account: &str) -> AppResult<u64> {
    Ok(user_by_address(txn, &normalize_address(account)?)?.id)
}

/// The names of every superior level of `name` ("a/b/c" → ["a", "a/b"]).
fn parents(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut idx = 0;
    while let Some(pos) = name[idx..].find(DELIMITER) {
        out.push(name[..idx + pos].to_string());
        idx += pos + 1;
    }
    out
}

/// Creates the superior levels of `name` that do not exist yet (RFC 3501 §6.3.3).
fn create_parents(txn: &mut Txn<'_>, account: u64, name: &str, now_ms: i64) -> AppResult<()> {
    for p in parents(name) {
        if account::mailbox_by_name(txn, account, &p)?.is_none() {
            account::new_mailbox(txn, account, &p, "", now_ms)?;
        }
    }
    Ok(())
}

pub fn create(
    txn: &mut Txn<'_>,
    account: &str,
    name: &str,
    special_use: &str,
    now_ms: i64,
) -> Outcome {
    let acct = account_id(txn, account)?;
    let name = normalize_mailbox(name)?;
    if !special_use.is_empty()
        && !SPECIAL_USES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(special_use))
    {
        return Err(AppError::invalid(format!(
            "unknown special use {special_use:?}"
        )));
    }
    if account::mailbox_by_name(txn, acct, &name)?.is_some() {
        return Err(AppError::exists(format!("mailbox {name:?} already exists")));
    }
    create_parents(txn, acct, &name, now_ms)?;
    let special = SPECIAL_USES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(special_use))
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mb = account::new_mailbox(txn, acct, &name, &special, now_ms)?;
    Ok(Reply::Mailbox(mb))
}

fn has_children(txn: &Txn<'_>, account: u64, name: &str) -> AppResult<bool> {
    let prefix = keys::mailbox_name_key(account, &format!("{name}{DELIMITER}"));
    Ok(!txn.scan_prefix(cf::MBOX, &prefix)?.is_empty())
}

/// Removes every message of a mailbox (dropping blob references and usage).
pub fn purge_messages(txn: &mut Txn<'_>, account: u64, mb: &MailboxRec) -> AppResult<Vec<u32>> {
    let mut uids = Vec::new();
    let mut freed: i128 = 0;
    for (k, rec) in txn.scan::<MessageRec>(cf::MSG, &keys::message_prefix(account, mb.id))? {
        account::blob_decref(txn, &rec.blob)?;
        freed += rec.size as i128;
        uids.push(rec.uid);
        txn.delete(cf::MSG, k);
    }
    account::add_usage(txn, account, -freed)?;
    Ok(uids)
}

pub fn delete(txn: &mut Txn<'_>, account: &str, name: &str) -> Outcome {
    let acct = account_id(txn, account)?;
    let name = normalize_mailbox(name)?;
    if name == "INBOX" {
        return Err(AppError::invalid("INBOX cannot be deleted"));
    }
    let mb = require_mailbox(txn, acct, &name)?;
    if has_children(txn, acct, &name)? {
        return Err(AppError::precondition(format!(
            "mailbox {name:?} has children; delete them first"
        )));
    }
    purge_messages(txn, acct, &mb)?;
    super::recent::forget(txn, acct, mb.id);
    txn.delete(cf::MBOX, keys::mailbox_key(acct, mb.id));
    txn.delete(cf::MBOX, keys::mailbox_name_key(acct, &name));
    let modseq = next_modseq(txn, acct)?;
    record_change(txn, acct, change(modseq, &mb, ChangeKind::MailboxDeleted))?;
    Ok(Reply::Done)
}

pub fn rename(txn: &mut Txn<'_>, account: &str, from: &str, to: &str, now_ms: i64) -> Outcome {
    let acct = account_id(txn, account)?;
    let from = normalize_mailbox(from)?;
    let to = normalize_mailbox(to)?;
    let source = require_mailbox(txn, acct, &from)?;
    if account::mailbox_by_name(txn, acct, &to)?.is_some() {
        return Err(AppError::exists(format!("mailbox {to:?} already exists")));
    }
    if to.starts_with(&format!("{from}{DELIMITER}")) {
        return Err(AppError::invalid(
            "a mailbox cannot be renamed into its own hierarchy",
        ));
    }
    create_parents(txn, acct, &to, now_ms)?;
    if from == "INBOX" {
        return rename_inbox(txn, acct, &source, &to, now_ms);
    }
    // The mailbox and every child keep their ids, UIDVALIDITY and messages; only names change.
    let child_prefix = format!("{from}{DELIMITER}");
    let mut renamed = None;
    for mut mb in account::all_mailboxes(txn, acct)? {
        let new_name = if mb.name == from {
            to.clone()
        } else if let Some(rest) = mb.name.strip_prefix(&child_prefix) {
            // A child's new name must be as valid as any other (length, depth).
            normalize_mailbox(&format!("{to}{DELIMITER}{rest}"))?
        } else {
            continue;
        };
        txn.delete(cf::MBOX, keys::mailbox_name_key(acct, &mb.name));
        let old_name = std::mem::replace(&mut mb.name, new_name);
        let modseq = next_modseq(txn, acct)?;
        mb.highest_modseq = modseq;
        account::put_mailbox(txn, acct, &mb)?;
        let mut c = change(modseq, &mb, ChangeKind::MailboxRenamed);
        c.old_name = old_name;
        record_change(txn, acct, c)?;
        if mb.id == source.id {
            renamed = Some(mb);
        }
    }
    renamed
        .map(Reply::Mailbox)
        .ok_or_else(|| AppError::internal("renamed mailbox vanished"))
}

/// RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new mailbox with the new name,
/// leaving INBOX empty (and its children untouched).
fn rename_inbox(
    txn: &mut Txn<'_>,
    acct: u64,
    inbox: &MailboxRec,
    to: &str,
    now_ms: i64,
) -> Outcome {
    let mut target = account::new_mailbox(txn, acct, to, "", now_ms)?;
    let mut inbox = inbox.clone();
    let records = txn.scan::<MessageRec>(cf::MSG, &keys::message_prefix(acct, inbox.id))?;
    if records.is_empty() {
        return Ok(Reply::Mailbox(target));
    }
    let added_modseq = next_modseq(txn, acct)?;
    let mut added = change(added_modseq, &target, ChangeKind::MessageAdded);
    let mut removed_uids = Vec::new();
    for (k, mut rec) in records {
        txn.delete(cf::MSG, k);
        removed_uids.push(rec.uid);
        rec.uid = target.uid_next;
        rec.modseq = added_modseq;
        target.uid_next += 1;
        super::message::count_in(&mut target, &rec, 1);
        txn.put(cf::MSG, keys::message_key(acct, target.id, rec.uid), &rec)?;
        added.uids.push(rec.uid);
    }
    target.highest_modseq = added_modseq;
    account::put_mailbox(txn, acct, &target)?;
    record_change(txn, acct, added)?;
    let expunge_modseq = next_modseq(txn, acct)?;
    inbox.messages = 0;
    inbox.unseen = 0;
    inbox.deleted = 0;
    inbox.size = 0;
    inbox.highest_modseq = expunge_modseq;
    account::put_mailbox(txn, acct, &inbox)?;
    let mut expunged = change(expunge_modseq, &inbox, ChangeKind::Expunged);
    expunged.uids = removed_uids;
    record_change(txn, acct, expunged)?;
    Ok(Reply::Mailbox(target))
}

pub fn subscribe(txn: &mut Txn<'_>, account: &str, name: &str, subscribed: bool) -> Outcome {
    let acct = account_id(txn, account)?;
    let name = normalize_mailbox(name)?;
    let mut mb = require_mailbox(txn, acct, &name)?;
    if mb.subscribed != subscribed {
        mb.subscribed = subscribed;
        let modseq = next_modseq(txn, acct)?;
        account::put_mailbox(txn, acct, &mb)?;
        record_change(
            txn,
            acct,
            change(modseq, &mb, ChangeKind::SubscriptionChanged),
        )?;
    }
    Ok(Reply::Mailbox(mb))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parents_of_a_nested_name() {
        assert_eq!(
            super::parents("a/b/c"),
            vec!["a".to_string(), "a/b".to_string()]
        );
        assert!(super::parents("a").is_empty());
    }
}
