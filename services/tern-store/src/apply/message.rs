//! Messages: delivery (idempotent, one blob for every target), flags, expunge, copy, move.

use crate::command::{DeliverOutcome, Delivered, FlagMode, Outcome, Reply, Target, UidSet};
use crate::error::{AppError, AppResult, ErrorKind};
use crate::keys::{self, cf};
use crate::model::{
    normalize_address, normalize_flags, normalize_mailbox, ChangeKind, DeliveryDone, MailboxRec,
    MessageRec,
};
use crate::txn::Txn;

use super::account::{self, change, next_modseq, record_change, require_mailbox, user_by_address};
use super::mailbox::account_id;

/// Idempotency key of a delivery id.
fn dedup_key(delivery_id: &str) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    k.extend_from_slice(delivery_id.as_bytes());
    k
}

/// Adds (`sign` = 1) or removes (`sign` = -1) a message from a mailbox's counters.
pub fn count_in(mb: &mut MailboxRec, rec: &MessageRec, sign: i64) {
    let add = |v: u32| (v as i64 + sign).max(0) as u32;
    mb.messages = add(mb.messages);
    if !rec.has_flag("\\Seen") {
        mb.unseen = add(mb.unseen);
    }
    if rec.has_flag("\\Deleted") {
        mb.deleted = add(mb.deleted);
    }
    mb.size = (mb.size as i128 + sign as i128 * rec.size as i128).max(0) as u64;
}

fn check_quota(txn: &Txn<'_>, address: &str, adding: u64) -> AppResult<()> {
    let user = user_by_address(txn, address)?;
    if user.quota_bytes > 0 {
        let used = account::load_state(txn, user.id)?.used_bytes;
        if used.saturating_add(adding) > user.quota_bytes {
            return Err(AppError::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "over quota: {address} uses {used} of {} octets",
                    user.quota_bytes
                ),
            ));
        }
    }
    Ok(())
}

pub fn deliver(txn: &mut Txn<'_>, targets: &[Target], body: &[u8], internal_date: i64) -> Outcome {
    let hash = account::blob_hash(body);
    let mut results = Vec::with_capacity(targets.len());
    for t in targets {
        let savepoint = txn.savepoint();
        let result = deliver_one(txn, t, &hash, body, internal_date, None);
        if result.is_err() {
            txn.rollback_to(savepoint);
        }
        results.push(DeliverOutcome {
            account: t.account.clone(),
            result,
        });
    }
    Ok(Reply::Delivered {
        results,
        blob: hash,
    })
}

/// [`deliver`] of content already stored under `blob` (a queue entry's).
pub fn deliver_stored(
    txn: &mut Txn<'_>,
    targets: &[Target],
    blob: &[u8; 32],
    internal_date: i64,
) -> Outcome {
    let body = txn
        .get_raw(cf::BLOB, blob)?
        .ok_or_else(|| AppError::not_found("the stored content is gone"))?;
    deliver(txn, targets, &body, internal_date)
}

/// Delivers one copy; `traced_at_ms` is when the trace records it (default: the internal
/// date, in whole seconds).
pub(super) fn deliver_one(
    txn: &mut Txn<'_>,
    t: &Target,
    hash: &[u8; 32],
    body: &[u8],
    internal_date: i64,
    traced_at_ms: Option<i64>,
) -> AppResult<Delivered> {
    if !t.delivery_id.is_empty() {
        if let Some(done) = txn.get::<DeliveryDone>(cf::DEDUP, &dedup_key(&t.delivery_id))? {
            return Ok(Delivered {
                mailbox: done.mailbox,
                uid_validity: done.uid_validity,
                uid: done.uid,
                duplicate: true,
            });
        }
    }
    let address = normalize_address(&t.account)?;
    let acct = user_by_address(txn, &address)?.id;
    let name = if t.mailbox.is_empty() {
        "INBOX".to_string()
    } else {
        normalize_mailbox(&t.mailbox)?
    };
    let mut mb = require_mailbox(txn, acct, &name)?;
    check_quota(txn, &address, body.len() as u64)?;
    let modseq = next_modseq(txn, acct)?;
    let rec = MessageRec {
        uid: mb.uid_next,
        flags: normalize_flags(&t.flags)?,
        internal_date,
        size: body.len() as u64,
        wire_size: tern_mail::lines::size(body),
        modseq,
        blob: *hash,
    };
    mb.uid_next += 1;
    mb.highest_modseq = modseq;
    count_in(&mut mb, &rec, 1);
    txn.put(cf::MSG, keys::message_key(acct, mb.id, rec.uid), &rec)?;
    account::put_mailbox(txn, acct, &mb)?;
    account::blob_incref(txn, hash, Some(body), 1)?;
    account::add_usage(txn, acct, rec.size as i128)?;
    let mut c = change(modseq, &mb, ChangeKind::MessageAdded);
    c.uids.push(rec.uid);
    record_change(txn, acct, c)?;
    let done = DeliveryDone {
        account: acct,
        mailbox: mb.id,
        uid_validity: mb.uid_validity,
        uid: rec.uid,
    };
    if !t.delivery_id.is_empty() {
        let key = dedup_key(&t.delivery_id);
        super::retention::index_dedup(txn, &key)?;
        txn.put(cf::DEDUP, key, &done)?;
    }
    let at = traced_at_ms.unwrap_or_else(|| internal_date.saturating_mul(1000));
    super::trace::on_stored(txn, hash, at, || {
        format!(
            "{address} {name} uid {} (UIDVALIDITY {}, modseq {modseq})",
            rec.uid, mb.uid_validity
        )
    })?;
    Ok(Delivered {
        mailbox: mb.id,
        uid_validity: mb.uid_validity,
        uid: rec.uid,
        duplicate: false,
    })
}

/// Messages of a mailbox whose UID is in `uids` (all when `None`), in UID order.
fn select(
    txn: &Txn<'_>,
    acct: u64,
    mb: &MailboxRec,
    uids: Option<&UidSet>,
) -> AppResult<Vec<(Vec<u8>, MessageRec)>> {
    let max_uid = mb.uid_next.saturating_sub(1);
    // A small explicit set (the common STORE/COPY of a few messages) is looked up key by key
    // instead of reading the whole mailbox.
    if let Some(set) = uids {
        if let Some(wanted) = explicit_uids(set, max_uid, MAX_POINT_LOOKUPS) {
            let mut out = Vec::with_capacity(wanted.len());
            for uid in wanted {
                let key = keys::message_key(acct, mb.id, uid);
                if let Some(rec) = txn.get::<MessageRec>(cf::MSG, &key)? {
                    out.push((key, rec));
                }
            }
            return Ok(out);
        }
    }
    let all = txn.scan::<MessageRec>(cf::MSG, &keys::message_prefix(acct, mb.id))?;
    Ok(match uids {
        None => all,
        Some(set) => all
            .into_iter()
            .filter(|(_, r)| set.contains(r.uid, max_uid))
            .collect(),
    })
}

/// Largest UID set resolved by point lookups rather than a mailbox scan.
const MAX_POINT_LOOKUPS: u64 = 1024;

/// The UIDs of `set` in ascending order, if there are at most `limit` of them.
fn explicit_uids(set: &UidSet, max_uid: u32, limit: u64) -> Option<Vec<u32>> {
    let mut total = 0u64;
    let mut ranges = Vec::with_capacity(set.0.len());
    for r in &set.0 {
        let first = if r.first == 0 { max_uid } else { r.first };
        let last = if r.last == 0 { max_uid } else { r.last };
        let (lo, hi) = (first.min(last), first.max(last).min(max_uid));
        if lo > hi {
            continue;
        }
        total += (hi - lo) as u64 + 1;
        if total > limit {
            return None;
        }
        ranges.push((lo, hi));
    }
    let mut uids: Vec<u32> = ranges.into_iter().flat_map(|(lo, hi)| lo..=hi).collect();
    uids.sort_unstable();
    uids.dedup();
    Some(uids)
}

pub fn store_flags(
    txn: &mut Txn<'_>,
    account: &str,
    mailbox: &str,
    uids: &UidSet,
    mode: FlagMode,
    flags: &[String],
    unchanged_since: u64,
) -> Outcome {
    let acct = account_id(txn, account)?;
    let mut mb = require_mailbox(txn, acct, &normalize_mailbox(mailbox)?)?;
    let flags = normalize_flags(flags)?;
    let selected = select(txn, acct, &mb, Some(uids))?;
    let mut updated = Vec::with_capacity(selected.len());
    let mut modified = Vec::new();
    let mut changed: Vec<(Vec<u8>, MessageRec)> = Vec::new();
    for (k, rec) in selected {
        if unchanged_since > 0 && rec.modseq > unchanged_since {
            modified.push(rec.uid);
            continue;
        }
        let mut new_flags: Vec<String> = match mode {
            FlagMode::Replace => flags.clone(),
            FlagMode::Add => rec.flags.iter().chain(flags.iter()).cloned().collect(),
            FlagMode::Remove => rec
                .flags
                .iter()
                .filter(|f| !flags.iter().any(|x| x.eq_ignore_ascii_case(f)))
                .cloned()
                .collect(),
        };
        new_flags = normalize_flags(&new_flags)?;
        if new_flags == rec.flags {
            updated.push(rec);
        } else {
            changed.push((
                k,
                MessageRec {
                    flags: new_flags,
                    ..rec
                },
            ));
        }
    }
    if !changed.is_empty() {
        let modseq = next_modseq(txn, acct)?;
        let mut c = change(modseq, &mb, ChangeKind::FlagsChanged);
        for (k, mut rec) in changed {
            let old = txn
                .get::<MessageRec>(cf::MSG, &k)?
                .ok_or_else(|| AppError::internal("message vanished"))?;
            count_in(&mut mb, &old, -1);
            rec.modseq = modseq;
            count_in(&mut mb, &rec, 1);
            txn.put(cf::MSG, k, &rec)?;
            c.uids.push(rec.uid);
            c.flags.push(rec.flags.clone());
            updated.push(rec);
        }
        mb.highest_modseq = modseq;
        account::put_mailbox(txn, acct, &mb)?;
        record_change(txn, acct, c)?;
        updated.sort_by_key(|r| r.uid);
    }
    Ok(Reply::Flags {
        updated,
        modified,
        highest_modseq: mb.highest_modseq,
    })
}

pub fn expunge(
    txn: &mut Txn<'_>,
    account: &str,
    mailbox: &str,
    uids: Option<&UidSet>,
    force: bool,
) -> Outcome {
    let acct = account_id(txn, account)?;
    let mut mb = require_mailbox(txn, acct, &normalize_mailbox(mailbox)?)?;
    let victims: Vec<_> = select(txn, acct, &mb, uids)?
        .into_iter()
        .filter(|(_, r)| force || r.has_flag("\\Deleted"))
        .collect();
    if victims.is_empty() {
        return Ok(Reply::Expunged {
            uids: vec![],
            highest_modseq: mb.highest_modseq,
        });
    }
    let modseq = next_modseq(txn, acct)?;
    let mut c = change(modseq, &mb, ChangeKind::Expunged);
    let mut freed = 0i128;
    for (k, rec) in victims {
        count_in(&mut mb, &rec, -1);
        account::blob_decref(txn, &rec.blob)?;
        freed += rec.size as i128;
        txn.delete(cf::MSG, k);
        c.uids.push(rec.uid);
    }
    account::add_usage(txn, acct, -freed)?;
    mb.highest_modseq = modseq;
    account::put_mailbox(txn, acct, &mb)?;
    let uids = c.uids.clone();
    record_change(txn, acct, c)?;
    Ok(Reply::Expunged {
        uids,
        highest_modseq: modseq,
    })
}

pub fn copy(
    txn: &mut Txn<'_>,
    account: &str,
    mailbox: &str,
    uids: &UidSet,
    target: &str,
    remove_source: bool,
) -> Outcome {
    let address = normalize_address(account)?;
    let acct = account_id(txn, &address)?;
    let mut source = require_mailbox(txn, acct, &normalize_mailbox(mailbox)?)?;
    let target_name = normalize_mailbox(target)?;
    let mut dest = require_mailbox(txn, acct, &target_name)?;
    let selected = select(txn, acct, &source, Some(uids))?;
    if selected.is_empty() {
        return Ok(Reply::Copied {
            uid_validity: dest.uid_validity,
            source: vec![],
            target: vec![],
        });
    }
    let total: u64 = selected.iter().map(|(_, r)| r.size).sum();
    if !remove_source {
        check_quota(txn, &address, total)?;
    }
    let same = source.id == dest.id;
    let added_modseq = next_modseq(txn, acct)?;
    let mut added = change(added_modseq, &dest, ChangeKind::MessageAdded);
    let (mut src_uids, mut dst_uids) = (Vec::new(), Vec::new());
    for (_, rec) in &selected {
        let new = MessageRec {
            uid: dest.uid_next,
            modseq: added_modseq,
            ..rec.clone()
        };
        dest.uid_next += 1;
        count_in(&mut dest, &new, 1);
        account::blob_incref(txn, &new.blob, None, 1)?;
        txn.put(cf::MSG, keys::message_key(acct, dest.id, new.uid), &new)?;
        src_uids.push(rec.uid);
        dst_uids.push(new.uid);
        added.uids.push(new.uid);
    }
    dest.highest_modseq = added_modseq;
    if same {
        source = dest.clone();
    }
    account::put_mailbox(txn, acct, &dest)?;
    record_change(txn, acct, added)?;
    if remove_source {
        let modseq = next_modseq(txn, acct)?;
        let mut c = change(modseq, &source, ChangeKind::Expunged);
        for (k, rec) in &selected {
            count_in(&mut source, rec, -1);
            account::blob_decref(txn, &rec.blob)?;
            txn.delete(cf::MSG, k.clone());
            c.uids.push(rec.uid);
        }
        source.highest_modseq = modseq;
        account::put_mailbox(txn, acct, &source)?;
        record_change(txn, acct, c)?;
    } else {
        account::add_usage(txn, acct, total as i128)?;
    }
    Ok(Reply::Copied {
        uid_validity: dest.uid_validity,
        source: src_uids,
        target: dst_uids,
    })
}
