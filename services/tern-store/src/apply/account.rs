//! Shared building blocks: accounts, mailboxes, modseqs, blobs and the change feed.

use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::keys::{self, cf};
use crate::model::{AccountState, ChangeKind, ChangeRec, MailboxRec, UserRec};
use crate::txn::Txn;

/// The user record of an address (which must be normalized).
pub fn user_by_address(txn: &Txn<'_>, address: &str) -> AppResult<UserRec> {
    txn.get::<UserRec>(cf::DIR, &keys::user_key(address))?
        .ok_or_else(|| AppError::not_found(format!("unknown user {address}")))
}

/// Per-account counters.
pub fn load_state(txn: &Txn<'_>, account: u64) -> AppResult<AccountState> {
    Ok(txn
        .get(cf::MBOX, &keys::account_state_key(account))?
        .unwrap_or_default())
}

/// Saves per-account counters.
pub fn save_state(txn: &mut Txn<'_>, account: u64, state: &AccountState) -> AppResult<()> {
    txn.put(cf::MBOX, keys::account_state_key(account), state)
}

/// Takes the account's next modseq.
pub fn next_modseq(txn: &mut Txn<'_>, account: u64) -> AppResult<u64> {
    let mut st = load_state(txn, account)?;
    st.modseq += 1;
    save_state(txn, account, &st)?;
    Ok(st.modseq)
}

/// Adds `delta` (may be negative) to the account's used octets.
pub fn add_usage(txn: &mut Txn<'_>, account: u64, delta: i128) -> AppResult<()> {
    let mut st = load_state(txn, account)?;
    st.used_bytes = (st.used_bytes as i128 + delta).max(0) as u64;
    save_state(txn, account, &st)
}

/// A mailbox by id.
pub fn load_mailbox(txn: &Txn<'_>, account: u64, id: u64) -> AppResult<Option<MailboxRec>> {
    txn.get(cf::MBOX, &keys::mailbox_key(account, id))
}

/// A mailbox by normalized name.
pub fn mailbox_by_name(txn: &Txn<'_>, account: u64, name: &str) -> AppResult<Option<MailboxRec>> {
    let Some(raw) = txn.get_raw(cf::MBOX, &keys::mailbox_name_key(account, name))? else {
        return Ok(None);
    };
    let id = u64::from_be_bytes(
        raw.as_slice()
            .try_into()
            .map_err(|_| AppError::internal("corrupt mailbox name index"))?,
    );
    load_mailbox(txn, account, id)
}

/// A mailbox by name, or NOT_FOUND.
pub fn require_mailbox(txn: &Txn<'_>, account: u64, name: &str) -> AppResult<MailboxRec> {
    mailbox_by_name(txn, account, name)?
        .ok_or_else(|| AppError::not_found(format!("no mailbox {name:?}")))
}

/// Writes a mailbox record and its name index.
pub fn put_mailbox(txn: &mut Txn<'_>, account: u64, mb: &MailboxRec) -> AppResult<()> {
    txn.put(cf::MBOX, keys::mailbox_key(account, mb.id), mb)?;
    txn.put_raw(
        cf::MBOX,
        keys::mailbox_name_key(account, &mb.name),
        mb.id.to_be_bytes().to_vec(),
    );
    Ok(())
}

/// Every mailbox of an account.
pub fn all_mailboxes(txn: &Txn<'_>, account: u64) -> AppResult<Vec<MailboxRec>> {
    Ok(txn
        .scan::<MailboxRec>(cf::MBOX, &keys::mailbox_prefix(account))?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

/// Creates a mailbox record with a fresh id and UIDVALIDITY.
pub fn new_mailbox(
    txn: &mut Txn<'_>,
    account: u64,
    name: &str,
    special_use: &str,
    now_ms: i64,
) -> AppResult<MailboxRec> {
    let mut st = load_state(txn, account)?;
    st.next_mailbox += 1;
    let now_s = (now_ms / 1000).clamp(1, u32::MAX as i64) as u32;
    st.last_uid_validity = now_s.max(st.last_uid_validity.saturating_add(1));
    st.modseq += 1;
    let mb = MailboxRec {
        id: st.next_mailbox,
        name: name.to_string(),
        uid_validity: st.last_uid_validity,
        uid_next: 1,
        highest_modseq: st.modseq,
        messages: 0,
        unseen: 0,
        deleted: 0,
        size: 0,
        subscribed: false,
        special_use: special_use.to_string(),
    };
    save_state(txn, account, &st)?;
    put_mailbox(txn, account, &mb)?;
    record_change(
        txn,
        account,
        change(st.modseq, &mb, ChangeKind::MailboxCreated),
    )?;
    Ok(mb)
}

/// A change record for `mb` with no uids.
pub fn change(modseq: u64, mb: &MailboxRec, kind: ChangeKind) -> ChangeRec {
    ChangeRec {
        modseq,
        mailbox: mb.id,
        mailbox_name: mb.name.clone(),
        kind,
        uids: Vec::new(),
        flags: Vec::new(),
        old_name: String::new(),
    }
}

/// Appends to the account's change feed.
pub fn record_change(txn: &mut Txn<'_>, account: u64, change: ChangeRec) -> AppResult<()> {
    let key = keys::change_key(account, change.modseq);
    super::retention::index_change(txn, &key)?;
    txn.put(cf::CHANGES, key, &change)
}

/// SHA-256 of a body.
pub fn blob_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Adds `n` references to a blob, storing `body` if it is new.
pub fn blob_incref(
    txn: &mut Txn<'_>,
    hash: &[u8; 32],
    body: Option<&[u8]>,
    n: u64,
) -> AppResult<()> {
    let count = blob_refcount(txn, hash)?;
    if count == 0 {
        let body = body.ok_or_else(|| AppError::internal("blob missing for a new reference"))?;
        super::head::remember(txn, hash, body);
        txn.put_raw(cf::BLOB, hash.to_vec(), body.to_vec());
    }
    txn.put_raw(
        cf::BLOBREF,
        hash.to_vec(),
        (count + n).to_be_bytes().to_vec(),
    );
    Ok(())
}

/// Drops one reference; the content goes with the last one.
pub fn blob_decref(txn: &mut Txn<'_>, hash: &[u8; 32]) -> AppResult<()> {
    let count = blob_refcount(txn, hash)?;
    if count <= 1 {
        txn.delete(cf::BLOBREF, hash.to_vec());
        txn.delete(cf::BLOB, hash.to_vec());
        super::head::forget(txn, hash);
    } else {
        txn.put_raw(
            cf::BLOBREF,
            hash.to_vec(),
            (count - 1).to_be_bytes().to_vec(),
        );
    }
    Ok(())
}

/// Current reference count of a blob.
pub fn blob_refcount(txn: &Txn<'_>, hash: &[u8; 32]) -> AppResult<u64> {
    match txn.get_raw(cf::BLOBREF, hash)? {
        Some(v) => {
            Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(
                |_| AppError::internal("corrupt blob refcount"),
            )?))
        }
        None => Ok(0),
    }
}

/// Octets used by an account.
pub fn account_used_bytes(txn: &Txn<'_>, account: u64) -> AppResult<u64> {
    Ok(load_state(txn, account)?.used_bytes)
}
