//! RFC 3501 \Recent across stateless access nodes: each mailbox keeps one marker, the highest
//! UID some IMAP session has claimed as "seen first". A session that learns of messages above
//! it claims them with [`Command::ClaimRecent`](crate::command::Command::ClaimRecent); the
//! log orders concurrent claims, so exactly one session gets each message as \Recent (the
//! one whose claim moved the marker past it). This is Dovecot's per-mailbox first-recent-UID,
//! made a replicated command.
//!
//! A session claims only when it sees a UID above the marker it read, so SELECT of a mailbox
//! where nothing new arrived costs no write.

use crate::command::{Outcome, Reply};
use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{normalize_mailbox, MailboxRec};
use crate::txn::Txn;

use super::account::require_mailbox;
use super::mailbox::account_id;

/// How many message records one step of [`count_above`] reads.
const COUNT_CHUNK: usize = 1024;

/// The mailbox's recent marker (0: nothing claimed yet).
pub fn marker(txn: &Txn<'_>, account: u64, mailbox: u64) -> AppResult<u32> {
    match txn.get_raw(cf::MBOX, &keys::recent_key(account, mailbox))? {
        None => Ok(0),
        Some(raw) => {
            Ok(u32::from_be_bytes(raw.as_slice().try_into().map_err(
                |_| AppError::internal("corrupt recent marker"),
            )?))
        }
    }
}

/// How many messages of `mb` have a UID above `marker` (STATUS RECENT). Reads the records in
/// chunks, so memory stays bounded however many there are.
pub fn count_above(txn: &Txn<'_>, account: u64, mb: &MailboxRec, marker: u32) -> AppResult<u32> {
    if marker.saturating_add(1) >= mb.uid_next {
        return Ok(0);
    }
    let prefix = keys::message_prefix(account, mb.id);
    let mut start = keys::message_key(account, mb.id, marker.saturating_add(1));
    let mut count = 0u32;
    loop {
        let chunk = txn.scan_from(cf::MSG, &prefix, &start, COUNT_CHUNK)?;
        count = count.saturating_add(chunk.len() as u32);
        match chunk.last() {
            Some((last, _)) if chunk.len() == COUNT_CHUNK => {
                start = last.clone();
                start.push(0); // the next key after `last`
            }
            _ => return Ok(count),
        }
    }
}

/// Applies a claim: the marker becomes max(marker, up_to), `up_to` capped at the highest UID
/// given out; the reply is the marker before, as [`Reply::Count`].
pub fn claim(
    txn: &mut Txn<'_>,
    account: &str,
    mailbox: &str,
    uid_validity: u32,
    up_to: u32,
) -> Outcome {
    let acct = account_id(txn, account)?;
    let name = normalize_mailbox(mailbox)?;
    let mb = require_mailbox(txn, acct, &name)?;
    if uid_validity != 0 && uid_validity != mb.uid_validity {
        return Err(AppError::precondition(format!(
            "{name:?} has UIDVALIDITY {}, not {uid_validity}",
            mb.uid_validity
        )));
    }
    let previous = marker(txn, acct, mb.id)?;
    let up_to = up_to.min(mb.uid_next.saturating_sub(1));
    if up_to > previous {
        txn.put_raw(
            cf::MBOX,
            keys::recent_key(acct, mb.id),
            up_to.to_be_bytes().to_vec(),
        );
    }
    Ok(Reply::Count(u64::from(previous)))
}

/// Drops a deleted mailbox's marker.
pub fn forget(txn: &mut Txn<'_>, account: u64, mailbox: u64) {
    txn.delete(cf::MBOX, keys::recent_key(account, mailbox));
}
