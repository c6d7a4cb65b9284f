//! Key layout of every column family.
//!
//! Mail data is keyed by account id first (`<account u64 BE> ...`), so that the keyspace can
//! later be split into many Raft groups by account range without changing the data model;
//! queue entries are keyed by their id, whose first bytes are a partition-friendly time
//! prefix. All integers are big-endian so that RocksDB's byte order is numeric order.

/// Column family names. `log` and `raft` belong to the Raft log store; the rest is the
/// state machine and is what a snapshot carries.
pub mod cf {
    /// Raft log entries: `index u64` → bincode(Entry).
    pub const LOG: &str = "log";
    /// Raft vote, committed and purged log ids.
    pub const RAFT: &str = "raft";
    /// State-machine metadata: last applied log id, membership, id counters.
    pub const META: &str = "meta";
    /// Directory: domains, users, aliases, lists.
    pub const DIR: &str = "dir";
    /// Per-account state and mailboxes.
    pub const MBOX: &str = "mbox";
    /// Message records.
    pub const MSG: &str = "msg";
    /// Message content by SHA-256 (RocksDB blob files keep large values out of the LSM).
    pub const BLOB: &str = "blob";
    /// Blob reference counts.
    pub const BLOBREF: &str = "blobref";
    /// Idempotency records of deliveries and enqueues.
    pub const DEDUP: &str = "dedup";
    /// Queue entries and their due-time index.
    pub const QUEUE: &str = "queue";
    /// The per-account change feed.
    pub const CHANGES: &str = "changes";

    /// Every column family of the state machine, in snapshot order.
    pub const STATE_MACHINE: [&str; 9] =
        [META, DIR, MBOX, MSG, BLOB, BLOBREF, DEDUP, QUEUE, CHANGES];
    /// Every column family.
    pub const ALL: [&str; 11] = [
        LOG, RAFT, META, DIR, MBOX, MSG, BLOB, BLOBREF, DEDUP, QUEUE, CHANGES,
    ];
}

/// Keys of the `meta` column family.
pub mod meta {
    /// Last applied log id.
    pub const APPLIED: &[u8] = b"applied";
    /// Last applied membership.
    pub const MEMBERSHIP: &[u8] = b"membership";
    /// Next user (account) id.
    pub const NEXT_ACCOUNT: &[u8] = b"next_account";
    /// Set while a snapshot is being installed; its presence on start means "reinstall".
    pub const INSTALL_PENDING: &[u8] = b"install_pending";
    /// The session-token signing keys ([`crate::session::SessionKey`]s).
    pub const SESSION_KEYS: &[u8] = b"session_keys";
    /// The sequence number the next audit record gets.
    pub const AUDIT_NEXT: &[u8] = b"audit_next";
    /// The retention epoch (u64 BE): records written now are indexed under it, and those of
    /// epochs two or more behind are pruned ([`crate::apply::retention`]).
    pub const RETENTION_EPOCH: &[u8] = b"retention_epoch";
    /// When the leader began the current retention epoch (Unix millis, i64 BE).
    pub const RETENTION_EPOCH_MS: &[u8] = b"retention_epoch_ms";
}

/// Keys of the `raft` column family.
pub mod raft {
    /// The persisted vote.
    pub const VOTE: &[u8] = b"vote";
    /// The last committed log id (an optimisation for restart).
    pub const COMMITTED: &[u8] = b"committed";
    /// The last purged log id.
    pub const PURGED: &[u8] = b"purged";
    /// The on-disk format version the data was written in.
    pub const FORMAT: &[u8] = b"format";
}

/// A log index as a key.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Directory keys: a kind byte and the lower-cased name.
pub fn domain_key(name: &str) -> Vec<u8> {
    prefixed(b'd', name)
}
/// Directory key of a user.
pub fn user_key(address: &str) -> Vec<u8> {
    prefixed(b'u', address)
}
/// Directory key of an alias.
pub fn alias_key(address: &str) -> Vec<u8> {
    prefixed(b'a', address)
}
/// Directory key of a mailing list.
pub fn list_key(address: &str) -> Vec<u8> {
    prefixed(b'l', address)
}
/// Directory key mapping an account id back to its address.
pub fn account_key(account: u64) -> Vec<u8> {
    let mut k = vec![b'i'];
    k.extend_from_slice(&account.to_be_bytes());
    k
}

fn prefixed(kind: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(kind);
    k.extend_from_slice(name.as_bytes());
    k
}

/// `mbox` key of an account's state record.
pub fn account_state_key(account: u64) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.push(0);
    k
}
/// `mbox` key of a mailbox record.
pub fn mailbox_key(account: u64, mailbox: u64) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.push(1);
    k.extend_from_slice(&mailbox.to_be_bytes());
    k
}
/// Prefix of every mailbox record of an account.
pub fn mailbox_prefix(account: u64) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.push(1);
    k
}
/// `mbox` key of the name → mailbox id index.
pub fn mailbox_name_key(account: u64, name: &str) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.push(2);
    k.extend_from_slice(name.as_bytes());
    k
}
/// `mbox` key of a mailbox's recent marker: the highest UID an IMAP session has claimed as
/// first seen (u32 BE). Kept beside the mailbox record, not in it, so that record's encoding
/// and every stored copy of it stay as they are.
pub fn recent_key(account: u64, mailbox: u64) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.push(3);
    k.extend_from_slice(&mailbox.to_be_bytes());
    k
}
/// `mbox` key of an account's change-feed floor (u64 BE): changes below this modseq may
/// have been pruned, so a feed cannot be followed from before it.
pub fn feed_floor_key(account: u64) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.push(4);
    k
}
/// Prefix of every `mbox` key of an account (state, mailboxes, names, recent markers).
pub fn account_prefix(account: u64) -> Vec<u8> {
    account.to_be_bytes().to_vec()
}

/// `msg` key of a message record.
pub fn message_key(account: u64, mailbox: u64, uid: u32) -> Vec<u8> {
    let mut k = message_prefix(account, mailbox);
    k.extend_from_slice(&uid.to_be_bytes());
    k
}
/// Prefix of every message of a mailbox.
pub fn message_prefix(account: u64, mailbox: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&account.to_be_bytes());
    k.extend_from_slice(&mailbox.to_be_bytes());
    k
}
/// `changes` key of one change.
pub fn change_key(account: u64, modseq: u64) -> Vec<u8> {
    let mut k = account.to_be_bytes().to_vec();
    k.extend_from_slice(&modseq.to_be_bytes());
    k
}

/// `changes` prefix of the change feed's retention index. Account id `u64::MAX` is never
/// given to an account (ids count up from 1), so the index sorts after every account's feed
/// and no account's prefix scan meets it.
pub const CHANGE_RETENTION_PREFIX: [u8; 8] = [0xff; 8];

/// `changes` key of the retention index: `[ff × 8] <epoch u64 BE> <change key>` → empty.
pub fn change_retention_key(epoch: u64, change_key: &[u8]) -> Vec<u8> {
    let mut k = CHANGE_RETENTION_PREFIX.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k.extend_from_slice(change_key);
    k
}

/// `dedup` prefix of the idempotency records' retention index.
pub const DEDUP_RETENTION_PREFIX: &[u8] = b"X/";

/// `dedup` key of the retention index: `X/<epoch u64 BE><record key>` → empty.
pub fn dedup_retention_key(epoch: u64, record_key: &[u8]) -> Vec<u8> {
    let mut k = DEDUP_RETENTION_PREFIX.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k.extend_from_slice(record_key);
    k
}

/// The epoch and the indexed key of a retention-index key whose prefix is `prefix`.
pub fn of_retention_key<'k>(prefix: &[u8], key: &'k [u8]) -> Option<(u64, &'k [u8])> {
    let rest = key.strip_prefix(prefix)?;
    let epoch = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((epoch, rest.get(8..)?))
}

/// `queue` key of an entry.
pub fn queue_entry_key(id: &str) -> Vec<u8> {
    prefixed(b'e', id)
}
/// `queue` key of the due-time index.
pub fn queue_due_key(due_ms: i64, id: &str) -> Vec<u8> {
    let mut k = vec![b't'];
    // Shift so that negative times (never expected) still sort before positive ones.
    k.extend_from_slice(&((due_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}
/// Prefix of the due-time index.
pub const QUEUE_DUE_PREFIX: &[u8] = b"t";
/// Prefix of the entries.
pub const QUEUE_ENTRY_PREFIX: &[u8] = b"e";

/// The due time encoded in a due-index key.
pub fn due_of_queue_due_key(key: &[u8]) -> Option<(i64, &str)> {
    let raw: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    let due = (u64::from_be_bytes(raw) ^ (1 << 63)) as i64;
    let id = std::str::from_utf8(key.get(9..)?).ok()?;
    Some((due, id))
}

/// `queue` key of a trace's timeline (`T/<trace id>`).
pub fn trace_key(trace_id: &str) -> Vec<u8> {
    let mut k = b"T/".to_vec();
    k.extend_from_slice(trace_id.as_bytes());
    k
}
/// `queue` key of the Message-ID index (`TM/<message-id>\0<trace id>` → empty): one
/// Message-ID may name several traces (a message sent twice).
pub fn trace_by_message_id_key(message_id: &str, trace_id: &str) -> Vec<u8> {
    let mut k = trace_by_message_id_prefix(message_id);
    k.extend_from_slice(trace_id.as_bytes());
    k
}
/// Prefix of the Message-ID index entries of `message_id`.
pub fn trace_by_message_id_prefix(message_id: &str) -> Vec<u8> {
    let mut k = b"TM/".to_vec();
    k.extend_from_slice(message_id.as_bytes());
    k.push(0);
    k
}
/// `queue` key of the queue id index (`TQ/<queue id>` → trace id).
pub fn trace_by_queue_key(queue_id: &str) -> Vec<u8> {
    let mut k = b"TQ/".to_vec();
    k.extend_from_slice(queue_id.as_bytes());
    k
}
/// `blob` key of a body's header record (`<sha-256>/h` → the header section), kept beside
/// the body for as long as it is (see `apply::head`).
pub fn blob_head_key(blob: &[u8; 32]) -> Vec<u8> {
    let mut k = blob.to_vec();
    k.extend_from_slice(b"/h");
    k
}
/// `queue` key of the content index (`TB/<sha-256>` → trace id): a delivered or fetched
/// message finds its trace through the blob it is stored as.
pub fn trace_by_blob_key(blob: &[u8; 32]) -> Vec<u8> {
    let mut k = b"TB/".to_vec();
    k.extend_from_slice(blob);
    k
}
/// `queue` key of the retention index (`TX/<created ms>` + trace id → empty), oldest first.
pub fn trace_by_time_key(created_ms: i64, trace_id: &str) -> Vec<u8> {
    let mut k = TRACE_BY_TIME_PREFIX.to_vec();
    k.extend_from_slice(&((created_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(trace_id.as_bytes());
    k
}
/// Prefix of the retention index.
pub const TRACE_BY_TIME_PREFIX: &[u8] = b"TX/";

/// The creation time and trace id encoded in a retention-index key.
pub fn of_trace_by_time_key(key: &[u8]) -> Option<(i64, &str)> {
    let n = TRACE_BY_TIME_PREFIX.len();
    let raw: [u8; 8] = key.get(n..n + 8)?.try_into().ok()?;
    let at = (u64::from_be_bytes(raw) ^ (1 << 63)) as i64;
    let id = std::str::from_utf8(key.get(n + 8..)?).ok()?;
    Some((at, id))
}

/// Audit records, in the `dir` column family: `L<seq u64 BE>`. Upper case: the directory's
/// record kinds (`d`, `u`, `a`, `l`, `i`) are scanned by their lower-case kind byte, and an
/// audit record must never be read as one of them.
pub const AUDIT_PREFIX: &[u8] = b"L";

/// The key of audit record `seq`.
pub fn audit_key(seq: u64) -> Vec<u8> {
    let mut k = AUDIT_PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_sort_by_time_and_round_trip() {
        let a = queue_due_key(1_000, "b");
        let b = queue_due_key(2_000, "a");
        assert!(a < b);
        assert_eq!(due_of_queue_due_key(&a), Some((1_000, "b")));
    }

    #[test]
    fn trace_time_keys_sort_by_time_and_round_trip() {
        let a = trace_by_time_key(5, "ff");
        let b = trace_by_time_key(6, "00");
        assert!(a < b);
        assert_eq!(of_trace_by_time_key(&a), Some((5, "ff")));
        // The prefixes of the trace keys never overlap one another or the entries'.
        assert!(!trace_by_queue_key("x").starts_with(b"T/"));
        assert!(!trace_key("x").starts_with(QUEUE_ENTRY_PREFIX));
    }

    #[test]
    fn message_keys_sort_by_uid() {
        assert!(message_key(1, 2, 9) < message_key(1, 2, 10));
    }
}
