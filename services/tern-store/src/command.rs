//! State-machine commands (what travels in the Raft log) and their outcomes.
//!
//! A command carries every input its application needs, including the time (`now_ms`,
//! chosen by the proposing node) and password hashes (computed before proposing), so that
//! applying it is deterministic on every replica.

use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::model::{MailboxRec, QueueEntryRec, QueueEventRec, QueueRcpt, TraceEventRec};

/// An inclusive UID range; `last == 0` means "up to the largest UID" (IMAP's `*`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct UidRange {
    /// First UID.
    pub first: u32,
    /// Last UID, 0 = open-ended.
    pub last: u32,
}

/// A set of UID ranges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct UidSet(pub Vec<UidRange>);

impl UidSet {
    /// Whether `uid` is in the set, given the mailbox's largest UID for `*`.
    pub fn contains(&self, uid: u32, max_uid: u32) -> bool {
        self.0.iter().any(|r| {
            let last = if r.last == 0 { max_uid } else { r.last };
            let first = if r.first == 0 { max_uid } else { r.first };
            let (lo, hi) = if first <= last {
                (first, last)
            } else {
                (last, first)
            };
            uid >= lo && uid <= hi
        })
    }
}

/// How a flag store combines with the existing flags.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum FlagMode {
    /// FLAGS.
    Replace,
    /// +FLAGS.
    Add,
    /// -FLAGS.
    Remove,
}

/// One destination of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// Account address.
    pub account: String,
    /// Mailbox name (normalized).
    pub mailbox: String,
    /// Idempotency key, empty for none.
    pub delivery_id: String,
    /// Initial flags (normalized).
    pub flags: Vec<String>,
}

/// A state-machine command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// Host a domain.
    AddDomain { name: String },
    /// Stop hosting a domain (refused while it has users, aliases or lists).
    RemoveDomain { name: String },
    /// Create an account with INBOX and the special-use mailboxes.
    AddUser {
        address: String,
        password_hash: String,
        quota_bytes: u64,
        now_ms: i64,
    },
    /// Remove an account and everything it owns.
    RemoveUser { address: String },
    /// Replace a password hash.
    SetPassword {
        address: String,
        password_hash: String,
    },
    /// Change a quota.
    SetQuota { address: String, quota_bytes: u64 },
    /// Create or replace an alias.
    AddAlias {
        address: String,
        targets: Vec<String>,
    },
    /// Remove an alias.
    RemoveAlias { address: String },
    /// Create a list or add members.
    AddListMembers {
        address: String,
        members: Vec<String>,
    },
    /// Remove members of a list.
    RemoveListMembers {
        address: String,
        members: Vec<String>,
    },
    /// Remove a list.
    RemoveList { address: String },
    /// Create a mailbox.
    CreateMailbox {
        account: String,
        name: String,
        special_use: String,
        now_ms: i64,
    },
    /// Delete a mailbox.
    DeleteMailbox { account: String, name: String },
    /// Rename a mailbox and its children (INBOX: move its messages).
    RenameMailbox {
        account: String,
        from: String,
        to: String,
        now_ms: i64,
    },
    /// Subscribe or unsubscribe.
    Subscribe {
        account: String,
        name: String,
        subscribed: bool,
    },
    /// Store one body into one or more mailboxes (the quota is always enforced).
    Deliver {
        targets: Vec<Target>,
        #[serde(with = "serde_bytes_compat")]
        body: Vec<u8>,
        internal_date: i64,
    },
    /// Change flags.
    StoreFlags {
        account: String,
        mailbox: String,
        uids: UidSet,
        mode: FlagMode,
        flags: Vec<String>,
        unchanged_since: u64,
    },
    /// Expunge \Deleted messages (or the given UIDs).
    Expunge {
        account: String,
        mailbox: String,
        uids: Option<UidSet>,
        force: bool,
    },
    /// Copy (or move) messages to another mailbox of the same account.
    Copy {
        account: String,
        mailbox: String,
        uids: UidSet,
        target: String,
        remove_source: bool,
    },
    /// Put a message in the queue.
    Enqueue {
        entry: Box<QueueEntryRec>,
        #[serde(with = "serde_bytes_compat")]
        body: Vec<u8>,
        request_id: String,
    },
    /// Lease due entries to a worker.
    Lease {
        owner: String,
        max_entries: u32,
        lease_ms: u64,
        now_ms: i64,
    },
    /// Extend a lease.
    Renew {
        id: String,
        owner: String,
        lease_ms: u64,
        now_ms: i64,
    },
    /// Record an attempt's outcome.
    UpdateEntry {
        id: String,
        owner: String,
        recipients: Vec<QueueRcpt>,
        events: Vec<QueueEventRec>,
        next_attempt_at: i64,
        release: bool,
        complete: bool,
    },
    /// Make an entry due now.
    RetryEntry { id: String, now_ms: i64 },
    /// Remove an entry.
    DeleteEntry { id: String },
    /// Take, renew or release a named lease lock.
    Lock {
        op: LockOp,
        name: String,
        owner: String,
        ttl_ms: u64,
        now_ms: i64,
    },
    /// Add a step reported by another service (a retrieval) to a message's timeline.
    /// (New variants go last: the log's encoding numbers variants in order.)
    RecordTrace {
        trace_id: String,
        blob: [u8; 32],
        event: TraceEventRec,
    },
    /// Drop up to `max` timelines created before `before_ms` (retention).
    PruneTraces { before_ms: i64, max: u32 },
    /// Make sure a session-token key younger than its rotation period exists: adds one with
    /// `secret` when none does, and drops the keys no unexpired token can name
    /// ([`crate::session::with_new_key`]). The proposer draws the secret, so every replica
    /// stores the same one.
    AddSessionKey { secret: [u8; 32], now_ms: i64 },
    /// An operator's change, `action`, applied together with its audit record (who, by
    /// certificate identity and address, and when): if the change fails, neither lands.
    Audited {
        by: String,
        at_ms: i64,
        action: Box<Command>,
    },
    /// An operator's action that is not a state-machine command (a membership change, a
    /// backup), recorded in the audit log after it succeeded.
    AuditNote {
        by: String,
        at_ms: i64,
        action: String,
        target: String,
    },
    /// An IMAP session claims a mailbox's messages up to `up_to` as first seen by it (RFC 3501
    /// \Recent): the recent marker becomes max(marker, up_to), and the reply is the marker
    /// before ([`Reply::Count`]). `uid_validity` 0 matches any.
    ClaimRecent {
        account: String,
        mailbox: String,
        uid_validity: u32,
        up_to: u32,
    },
    /// Begin a new retention epoch at `now_ms` (the leader's clock), once per retention
    /// period: see [`crate::apply::retention`]. The reply is the new epoch ([`Reply::Count`]).
    AdvanceRetention { now_ms: i64 },
    /// Remove up to `max` idempotency records and change-feed entries written two or more
    /// retention epochs ago; the reply is how many ([`Reply::Count`]).
    PruneRetained { max: u32 },
    /// Put a message in the queue, delivering its recipients that are local users into
    /// their INBOX in the same command (see `apply::accept`); last in this enum so that the
    /// encoding of every older command stays as it was.
    Accept {
        entry: Box<QueueEntryRec>,
        #[serde(with = "serde_bytes_compat")]
        body: Vec<u8>,
        request_id: String,
    },
    /// Deliver content the store already holds (a queue entry's blob) to targets: a
    /// worker's local delivery without the body in the log. Last in the enum (see Accept).
    DeliverStored {
        targets: Vec<Target>,
        blob: [u8; 32],
        internal_date: i64,
    },
}

impl Command {
    /// Whether the command stores new data (a message, a queue entry, a user, a mailbox, a
    /// copy): what a node low on disk space refuses ([`crate::disk`]). Removals, expunges,
    /// flag changes, moves and queue progress are small or free space, and stay allowed.
    pub fn adds_data(&self) -> bool {
        use Command::*;
        match self {
            AddDomain { .. }
            | AddUser { .. }
            | AddAlias { .. }
            | AddListMembers { .. }
            | CreateMailbox { .. }
            | Deliver { .. }
            | Copy {
                remove_source: false,
                ..
            }
            | Enqueue { .. }
            | Accept { .. }
            | DeliverStored { .. } => true,
            Audited { action, .. } => action.adds_data(),
            _ => false,
        }
    }

    /// Adds the directory names (addresses, domains) the command changes to `out`, for
    /// the directory's change feed ([`crate::directory_feed`]): what a cache of Resolve's
    /// answers must drop. Password changes are left out (Resolve does not answer them).
    /// Names are in the store's canonical form ([`crate::model::normalize_address`],
    /// [`crate::model::normalize_domain`]), whatever form the command carries, since a cache
    /// compares them with the canonical names it holds.
    pub fn directory_names(&self, out: &mut Vec<String>) {
        use crate::model::{normalize_address, normalize_domain};
        use Command::*;
        match self {
            AddDomain { name } | RemoveDomain { name } => {
                out.push(normalize_domain(name).unwrap_or_else(|_| name.trim().to_lowercase()))
            }
            AddUser { address, .. }
            | RemoveUser { address }
            | SetQuota { address, .. }
            | AddAlias { address, .. }
            | RemoveAlias { address }
            | AddListMembers { address, .. }
            | RemoveListMembers { address, .. }
            | RemoveList { address } => out
                .push(normalize_address(address).unwrap_or_else(|_| address.trim().to_lowercase())),
            Audited { action, .. } => action.directory_names(out),
            _ => {}
        }
    }

    /// The command's name in the audit log and in the applied-commands metric: one name
    /// per kind, fixed, so the metric's label set stays bounded and the apply path does
    /// not format a string per command. An audited command is named by what it does.
    pub fn kind(&self) -> &'static str {
        use Command::*;
        match self {
            AddDomain { .. } => "add-domain",
            RemoveDomain { .. } => "remove-domain",
            AddUser { .. } => "add-user",
            RemoveUser { .. } => "remove-user",
            SetPassword { .. } => "set-password",
            SetQuota { .. } => "set-quota",
            AddAlias { .. } => "add-alias",
            RemoveAlias { .. } => "remove-alias",
            AddListMembers { .. } => "add-list-members",
            RemoveListMembers { .. } => "remove-list-members",
            RemoveList { .. } => "remove-list",
            CreateMailbox { .. } => "create-mailbox",
            DeleteMailbox { .. } => "delete-mailbox",
            RenameMailbox { .. } => "rename-mailbox",
            Subscribe { .. } => "subscribe",
            Deliver { .. } => "deliver",
            StoreFlags { .. } => "store-flags",
            Expunge { .. } => "expunge",
            Copy {
                remove_source: true,
                ..
            } => "move",
            Copy { .. } => "copy",
            Enqueue { .. } => "enqueue",
            Accept { .. } => "accept",
            DeliverStored { .. } => "deliver-stored",
            Lease { .. } => "lease",
            Renew { .. } => "renew",
            UpdateEntry { .. } => "update-entry",
            RetryEntry { .. } => "retry-entry",
            DeleteEntry { .. } => "delete-entry",
            Lock { op, .. } => match op {
                LockOp::Acquire => "lock",
                LockOp::Renew => "renew-lock",
                LockOp::Release => "release-lock",
            },
            RecordTrace { .. } => "record-trace",
            PruneTraces { .. } => "prune-traces",
            AdvanceRetention { .. } => "advance-retention",
            PruneRetained { .. } => "prune-retained",
            AddSessionKey { .. } => "add-session-key",
            Audited { action, .. } => action.kind(),
            AuditNote { .. } => "audit-note",
            ClaimRecent { .. } => "claim-recent",
        }
    }
}

/// What a [`Command::Lock`] does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum LockOp {
    /// Take the lock if free, expired or already the owner's.
    Acquire,
    /// Extend the owner's lock.
    Renew,
    /// Drop the owner's lock.
    Release,
}

/// A successful result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Reply {
    /// Nothing to report.
    Done,
    /// A user (id, address, quota, used).
    User {
        id: u64,
        address: String,
        quota_bytes: u64,
        used_bytes: u64,
    },
    /// Alias or list targets after the change.
    Targets(Vec<String>),
    /// A mailbox after the change.
    Mailbox(MailboxRec),
    /// Per-target results of a delivery, and the blob.
    Delivered {
        results: Vec<DeliverOutcome>,
        blob: [u8; 32],
    },
    /// A flag store.
    Flags {
        updated: Vec<crate::model::MessageRec>,
        modified: Vec<u32>,
        highest_modseq: u64,
    },
    /// An expunge.
    Expunged { uids: Vec<u32>, highest_modseq: u64 },
    /// A copy or move.
    Copied {
        uid_validity: u32,
        source: Vec<u32>,
        target: Vec<u32>,
    },
    /// One queue entry.
    Entry(Box<QueueEntryRec>),
    /// Leased entries.
    Entries(Vec<QueueEntryRec>),
    /// The state of a lock after the command: whether the caller holds it, and who does.
    Lock {
        held: bool,
        holder: String,
        expires_at: i64,
    },
    /// How many records a command touched (traces pruned).
    Count(u64),
    /// An enqueue repeated a request id whose entry, this queue id, has since left the queue
    /// (delivered or bounced): the message was accepted once and is not queued again.
    EnqueuedEarlier(String),
}

/// The result of one delivery target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliverOutcome {
    /// Account address.
    pub account: String,
    /// Result.
    pub result: Result<Delivered, AppError>,
}

/// Where a delivered message went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivered {
    /// Mailbox id.
    pub mailbox: u64,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UID.
    pub uid: u32,
    /// The delivery id had been seen: nothing new was stored.
    pub duplicate: bool,
}

/// The outcome of one command.
pub type Outcome = Result<Reply, AppError>;

/// Byte vectors as bincode byte strings (not sequences of numbers) in every serde format.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_handle_star_and_reversed_ranges() {
        let s = UidSet(vec![
            UidRange { first: 5, last: 0 },
            UidRange { first: 3, last: 1 },
        ]);
        assert!(s.contains(2, 10));
        assert!(s.contains(10, 10));
        assert!(!s.contains(4, 10));
    }

    #[test]
    fn commands_round_trip_through_bincode() {
        let c = Command::Deliver {
            targets: vec![],
            body: b"hello".to_vec(),
            internal_date: 7,
        };
        let bytes = bincode::serialize(&c).unwrap();
        assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), c);
    }
}
