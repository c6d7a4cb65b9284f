//! Records stored in the state machine, and the validation of the names they carry.
//!
//! Records are bincode-encoded serde structs: compact, fast, and private to tern-store
//! (the public API is protobuf). Every name that reaches a record has gone through the
//! validators here, so the apply code can trust them.

use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// The mailbox hierarchy delimiter. One character, documented in the API.
pub const DELIMITER: char = '/';
/// Longest mailbox name in octets (Dovecot's default limit is of the same order).
pub const MAX_MAILBOX_NAME: usize = 255;
/// Deepest mailbox hierarchy accepted.
pub const MAX_MAILBOX_DEPTH: usize = 16;
/// Longest address (RFC 5321 §4.5.3.1.3 path limit minus the brackets).
pub const MAX_ADDRESS: usize = 254;

/// A hosted domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainRec {
    /// Lower-case domain name.
    pub name: String,
}

/// A mail account (a user who owns mailboxes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRec {
    /// Account id, the prefix of all of the account's keys.
    pub id: u64,
    /// Lower-case address.
    pub address: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Quota in octets; 0 = unlimited.
    pub quota_bytes: u64,
}

/// An alias: one address forwarding to several (local or remote).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AliasRec {
    /// The alias address.
    pub address: String,
    /// Where mail to it goes.
    pub targets: Vec<String>,
}

/// A mailing list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListRec {
    /// The list address.
    pub address: String,
    /// Member addresses (local, remote, or other lists).
    pub members: Vec<String>,
}

/// Per-account counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AccountState {
    /// Next mailbox id.
    pub next_mailbox: u64,
    /// The account's modification sequence (CONDSTORE); every change takes the next value.
    pub modseq: u64,
    /// Last UIDVALIDITY handed out, so a re-created mailbox never reuses one.
    pub last_uid_validity: u32,
    /// Octets used by all messages of the account (for the quota).
    pub used_bytes: u64,
}

/// A mailbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MailboxRec {
    /// Mailbox id within the account.
    pub id: u64,
    /// Full hierarchical name.
    pub name: String,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// Highest modseq of anything in this mailbox.
    pub highest_modseq: u64,
    /// Number of messages.
    pub messages: u32,
    /// Messages without \Seen.
    pub unseen: u32,
    /// Messages with \Deleted.
    pub deleted: u32,
    /// Octets of all messages.
    pub size: u64,
    /// LSUB / LIST (SUBSCRIBED).
    pub subscribed: bool,
    /// RFC 6154 special use, or empty.
    pub special_use: String,
}

/// A message in a mailbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageRec {
    /// UID.
    pub uid: u32,
    /// System flags and keywords, canonical and sorted.
    pub flags: Vec<String>,
    /// INTERNALDATE, seconds since the epoch.
    pub internal_date: i64,
    /// Octets as stored.
    pub size: u64,
    /// Octets on the wire, every line ending as CRLF ([`tern_mail::lines::size`]): what POP3
    /// LIST and IMAP RFC822.SIZE announce and RETR/FETCH send.
    pub wire_size: u64,
    /// Modseq of the last change.
    pub modseq: u64,
    /// SHA-256 of the content.
    pub blob: [u8; 32],
}

impl MessageRec {
    /// Whether the record carries `flag` (case-insensitive).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// What an idempotent delivery stored the first time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryDone {
    /// Account id.
    pub account: u64,
    /// Mailbox id.
    pub mailbox: u64,
    /// UIDVALIDITY at the time.
    pub uid_validity: u32,
    /// UID given.
    pub uid: u32,
}

/// A change-feed record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChangeRec {
    /// Modseq of the change.
    pub modseq: u64,
    /// Mailbox id.
    pub mailbox: u64,
    /// Mailbox name at the time of the change.
    pub mailbox_name: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Affected UIDs.
    pub uids: Vec<u32>,
    /// New flags (FlagsChanged only; one entry per uid).
    pub flags: Vec<Vec<String>>,
    /// Old name (MailboxRenamed only).
    pub old_name: String,
}

/// Kinds of change in the feed (mirrors the protobuf enum).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeKind {
    /// A message was appended, copied or moved in.
    MessageAdded,
    /// Flags changed.
    FlagsChanged,
    /// Messages were expunged.
    Expunged,
    /// A mailbox was created.
    MailboxCreated,
    /// A mailbox was renamed.
    MailboxRenamed,
    /// A mailbox was deleted.
    MailboxDeleted,
    /// Subscribed or unsubscribed.
    SubscriptionChanged,
}

/// Delivery state of one queue recipient.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum RcptState {
    /// Not yet attempted.
    Pending,
    /// Delivered.
    Delivered,
    /// Temporarily failed, will retry.
    Deferred,
    /// Permanently failed.
    Failed,
}

/// One recipient of a queue entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueRcpt {
    /// Address.
    pub address: String,
    /// State.
    pub state: RcptState,
    /// Last reply from the remote side or the local delivery.
    pub last_reply: String,
    /// Attempts for this recipient.
    pub attempts: u32,
    /// DSN ORCPT parameter.
    pub orcpt: String,
    /// DSN NOTIFY parameter.
    pub notify: String,
}

/// One event in an entry's history (what `ternctl queue show` and `trace` print).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueEventRec {
    /// Unix millis.
    pub at: i64,
    /// received, routed, attempt, delivered, deferred, bounced, ...
    pub kind: String,
    /// Free text.
    pub detail: String,
}

/// A queue entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueEntryRec {
    /// Queue id.
    pub id: String,
    /// MAIL FROM address (empty = null path).
    pub sender: String,
    /// Recipients and their states.
    pub recipients: Vec<QueueRcpt>,
    /// Content.
    pub blob: [u8; 32],
    /// Content size.
    pub size: u64,
    /// Unix millis.
    pub created_at: i64,
    /// Unix millis.
    pub next_attempt_at: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Worker holding the lease, or empty.
    pub lease_owner: String,
    /// Unix millis.
    pub lease_expires_at: i64,
    /// W3C trace id the message arrived with.
    pub trace_id: String,
    /// MAIL FROM parameters.
    pub mail_params: String,
    /// Accepting host / client.
    pub received_from: String,
    /// History.
    pub events: Vec<QueueEventRec>,
    /// Message-ID header.
    pub message_id: String,
}

/// Canonical form of an address: trimmed, lower-case, validated.
pub fn normalize_address(address: &str) -> Result<String, AppError> {
    let a = address.trim();
    if a.is_empty() || a.len() > MAX_ADDRESS {
        return Err(AppError::invalid(format!(
            "malformed address {address:?}: wrong length"
        )));
    }
    let (local, domain) = a
        .rsplit_once('@')
        .ok_or_else(|| AppError::invalid(format!("malformed address {address:?}: no @")))?;
    if local.is_empty() || local.len() > 64 {
        return Err(AppError::invalid(format!(
            "malformed address {address:?}: bad local part"
        )));
    }
    if local
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>()[]\\,;:\"@".contains(c))
    {
        return Err(AppError::invalid(format!(
            "malformed address {address:?}: bad character in local part"
        )));
    }
    let domain = normalize_domain(domain)?;
    Ok(format!("{}@{}", local.to_lowercase(), domain))
}

/// Canonical form of a domain name: lower-case labels of letters, digits and hyphens. Labels
/// may be U-labels (internationalized names in UTF-8, as SMTPUTF8 senders use, RFC 6531):
/// non-ASCII letters and digits are allowed and lower-cased like ASCII ones.
pub fn normalize_domain(domain: &str) -> Result<String, AppError> {
    let d = domain.trim().trim_end_matches('.').to_lowercase();
    let bad = || AppError::invalid(format!("malformed domain {domain:?}"));
    if d.is_empty() || d.len() > 253 {
        return Err(bad());
    }
    for label in d.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
            })
        {
            return Err(bad());
        }
    }
    Ok(d)
}

/// The domain part of a normalized address.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// Canonical form of a mailbox name: "INBOX" in any case becomes "INBOX" (also as the first
/// level of a hierarchy); the name must be valid UTF-8 without control characters or IMAP
/// wildcards, with no empty hierarchy levels.
pub fn normalize_mailbox(name: &str) -> Result<String, AppError> {
    let bad = |why: &str| AppError::invalid(format!("invalid mailbox name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_MAILBOX_NAME {
        return Err(bad("too long"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(bad("control characters and wildcards are not allowed"));
    }
    let parts: Vec<&str> = name.split(DELIMITER).collect();
    if parts.len() > MAX_MAILBOX_DEPTH {
        return Err(bad("hierarchy too deep"));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty hierarchy level"));
    }
    if parts[0].eq_ignore_ascii_case("INBOX") {
        let mut out = String::from("INBOX");
        for p in &parts[1..] {
            out.push(DELIMITER);
            out.push_str(p);
        }
        return Ok(out);
    }
    Ok(name.to_string())
}

/// The five system flags of RFC 3501 that a client may set, in canonical spelling.
const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Canonical, sorted, de-duplicated flags; keywords must be IMAP atoms.
pub fn normalize_flags(flags: &[String]) -> Result<Vec<String>, AppError> {
    let mut out: Vec<String> = Vec::with_capacity(flags.len());
    for f in flags {
        let canonical = if let Some(sys) = SYSTEM_FLAGS.iter().find(|s| s.eq_ignore_ascii_case(f)) {
            sys.to_string()
        } else if f.eq_ignore_ascii_case("\\Recent") {
            continue; // \Recent is session state, never stored
        } else if f.is_empty()
            || f.len() > 128
            || f.starts_with('\\')
            || f.chars().any(|c| {
                c.is_control() || c.is_whitespace() || "(){%*\"\\]".contains(c) || !c.is_ascii()
            })
        {
            return Err(AppError::invalid(format!("invalid flag {f:?}")));
        } else {
            f.clone()
        };
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&canonical)) {
            out.push(canonical);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized_and_checked() {
        assert_eq!(
            normalize_address(" Alice@Example.TEST ").unwrap(),
            "alice@example.test"
        );
        for bad in [
            "",
            "alice",
            "@x.test",
            "a b@x.test",
            "a@",
            "a@-x.test",
            "a@x..test",
            "a<@x.test",
            "a@x\u{2028}.test",
            "a@☃.test",
        ] {
            assert!(normalize_address(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_address("Jörg@Bücher.Test").unwrap(),
            "jörg@bücher.test"
        );
    }

    #[test]
    fn mailbox_names_are_normalized_and_checked() {
        assert_eq!(normalize_mailbox("inbox").unwrap(), "INBOX");
        assert_eq!(normalize_mailbox("Inbox/Sub").unwrap(), "INBOX/Sub");
        assert_eq!(normalize_mailbox("Archive/2024").unwrap(), "Archive/2024");
        for bad in ["", "a//b", "/a", "a/", "a*", "a%b", "a\u{7}"] {
            assert!(normalize_mailbox(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_mailbox(&"x".repeat(300)).is_err());
    }

    #[test]
    fn flags_are_canonical() {
        let f = normalize_flags(&[
            "\\seen".into(),
            "$Junk".into(),
            "\\SEEN".into(),
            "\\Recent".into(),
        ])
        .unwrap();
        assert_eq!(f, vec!["$Junk".to_string(), "\\Seen".to_string()]);
        assert!(normalize_flags(&["\\Bogus".into()]).is_err());
        assert!(normalize_flags(&["a b".into()]).is_err());
    }
}

/// One step of a message's journey, as `ternctl trace` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceEventRec {
    /// Unix millis.
    pub at: i64,
    /// The service whose work this records: smtp, queue, store or access.
    pub service: String,
    /// received, queued, routed, stored, delivered, deferred, failed, bounced, retrieved, ...
    pub kind: String,
    /// Free text (never a password or message content).
    pub detail: String,
}

/// The recorded timeline of one trace (one accepted message and its DSNs).
///
/// Kept apart from the queue entry because the entry is removed when delivery completes,
/// while the timeline must outlive it: `ternctl trace` is asked about delivered mail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TraceRec {
    /// W3C trace id (32 lowercase hex digits).
    pub trace_id: String,
    /// Message-IDs of its entries, the message's first (a DSN has its own).
    pub message_ids: Vec<String>,
    /// Every queue entry of this trace (the message, and any DSN about it).
    pub queue_ids: Vec<String>,
    /// Content hashes delivered under this trace (for retrieval lookups and pruning).
    pub blobs: Vec<[u8; 32]>,
    /// Unix millis of the first event (the retention clock).
    pub created_at: i64,
    /// The timeline, in the order the store applied it.
    pub events: Vec<TraceEventRec>,
}

/// One entry of the audit log: an operator's change, who made it and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRec {
    /// Position in the log (1, 2, ...; the oldest are pruned past the log's bound).
    pub seq: u64,
    /// Unix millis, as the proposing node saw it.
    pub at_ms: i64,
    /// The caller: certificate identity (`spiffe://DOMAIN/tern/ROLE`) and address.
    pub by: String,
    /// What was done: `add-domain`, `set-password`, `add-node`, ...
    pub action: String,
    /// To what: a domain, an address, a node id (never a password or hash).
    pub target: String,
}
