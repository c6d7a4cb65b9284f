//! What an IMAP session needs from the store, as one trait: [`ImapBackend`].
//!
//! The session and its command handlers ([`super::op`]) speak only this trait, so IMAP's
//! semantics are unit-tested against an in-memory implementation (`mem_backend`, test code)
//! while the one production implementation, [`super::grpc::StoreBackend`], holds every
//! store request and the retry logic. The types here are the session's vocabulary, not the
//! wire's: a change in the store's protobuf messages touches the adapter only.
//!
//! The one exception is SEARCH: its criteria travel as the store's own search key
//! ([`pb::SearchKey`], built by [`super::search`]), because the store is where the search
//! runs and that key is already the query language both sides agree on.

use std::future::Future;

use tern_proto::store::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::view::MessageMeta;

/// Why the store refused or failed a request; the handlers map each kind to the RFC 5530
/// response code that fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct StoreError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The store's explanation (shown to the client only for the kinds that are the
    /// client's doing).
    pub message: String,
}

/// The failures the session tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such mailbox, message or account.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// Over the account's quota.
    OverQuota,
    /// The request cannot be carried out as asked (bad name, hierarchy rules, ...).
    Rejected,
    /// The caller may not do this.
    PermissionDenied,
    /// The store could not be reached or failed; the client may try again.
    Unavailable,
}

impl StoreError {
    /// An error of `kind` with the store's `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A result from the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// A mailbox as the store describes it (LIST, STATUS, SELECT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The store's id: a mailbox created later under the same name has another one.
    pub id: u64,
    /// UTF-8 name, `/` as the hierarchy delimiter.
    pub name: String,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Number of messages.
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Messages with `\Deleted`.
    pub deleted: u64,
    /// The highest UID an IMAP session has claimed as first seen (\Recent): messages above
    /// it are recent to the next session that claims them.
    pub recent_uid: u32,
    /// Messages above `recent_uid` (STATUS RECENT); counted by [`ImapBackend::get_mailbox`]
    /// only, 0 elsewhere.
    pub recent: u32,
    /// In the account's subscription list.
    pub subscribed: bool,
    /// `\Sent`, `\Drafts`, `\Trash`, `\Junk` or empty.
    pub special_use: String,
}

/// A mailbox and its messages, read in one linearizable step (SELECT, new messages).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The mailbox; `None` when it does not exist.
    pub mailbox: Option<MailboxInfo>,
    /// Its messages (those asked for), in UID order.
    pub messages: Vec<MessageMeta>,
}

/// An account's storage quota (RFC 9208 STORAGE, in octets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Octets in use.
    pub used_bytes: u64,
    /// The limit; 0 means none.
    pub limit_bytes: u64,
}

/// One message to read: its mailbox, its UID, and the mailbox's UIDVALIDITY it was seen under
/// (0: any), so a message of a mailbox recreated under the same name is never read instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// The mailbox's name.
    pub mailbox: &'a str,
    /// The message's UID.
    pub uid: u32,
    /// The mailbox's UIDVALIDITY; 0 when any will do.
    pub uid_validity: u32,
}

/// Which octets of a message to read: `length` of them from `offset` (length 0: to the end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteRange {
    /// The first octet.
    pub offset: u64,
    /// How many octets; 0 means to the end.
    pub length: u64,
}

impl ByteRange {
    /// The whole message.
    pub const WHOLE: ByteRange = ByteRange {
        offset: 0,
        length: 0,
    };
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Flags and keywords to set.
    pub flags: Vec<String>,
    /// Internal date (Unix seconds); 0 means now.
    pub internal_date: i64,
    /// The message.
    pub data: Vec<u8>,
}

/// Where an appended message went (APPENDUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The mailbox's UIDVALIDITY.
    pub uid_validity: u32,
    /// The new message's UID.
    pub uid: u32,
}

/// What an expunge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expunged {
    /// UIDs removed.
    pub uids: Vec<u32>,
    /// The mailbox's HIGHESTMODSEQ afterwards.
    pub highest_modseq: u64,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMode {
    /// `FLAGS`: set exactly these.
    Replace,
    /// `+FLAGS`.
    Add,
    /// `-FLAGS`.
    Remove,
}

/// A change to messages' flags (STORE, and FETCH setting `\Seen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    /// How the flags change.
    pub mode: FlagMode,
    /// The flags and keywords set, added or removed.
    pub flags: Vec<String>,
    /// When not 0, only messages whose modseq is at most this change (RFC 7162
    /// UNCHANGEDSINCE).
    pub unchanged_since: u64,
}

/// A message's flags after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    /// The message.
    pub uid: u32,
    /// All its flags now.
    pub flags: Vec<String>,
    /// Its modseq now.
    pub modseq: u64,
}

/// What a STORE did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Messages whose flags changed.
    pub updated: Vec<FlagUpdate>,
    /// Messages left alone because they changed after UNCHANGEDSINCE (RFC 7162).
    pub modified: Vec<u32>,
}

/// What a COPY or MOVE did (COPYUID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// The target's UIDVALIDITY.
    pub uid_validity: u32,
    /// Source UIDs, in the order of `target_uids`.
    pub source_uids: Vec<u32>,
    /// The new UIDs in the target.
    pub target_uids: Vec<u32>,
}

/// What a search matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Matching UIDs.
    pub uids: Vec<u32>,
    /// The highest modseq among them (CONDSTORE's `(MODSEQ n)`).
    pub highest_modseq: u64,
}

/// The most UIDs one [`ImapBackend::read_headers`] may name (the store's bound).
pub const MAX_HEADERS_PER_READ: usize = 10_000;

/// What [`ImapBackend::read_headers`] found.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// (UID, header section as stored), in UID order.
    pub found: Vec<(u32, Vec<u8>)>,
    /// UIDs whose header section is too large for a header read (over 64 KiB with no
    /// header record): read them whole.
    pub too_large: Vec<u32>,
}

/// A message's content, or part of it.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// The octets, as stored (line endings may be bare LF).
    pub data: Vec<u8>,
    /// The delivery trace the message arrived under; empty if none.
    pub trace_id: String,
}

/// One change of the selected mailbox, from the store's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The mailbox's modseq after the change.
    pub modseq: u64,
    /// The mailbox's id (0: unknown).
    pub mailbox_id: u64,
    /// What changed.
    pub kind: ChangeKind,
}

/// The kinds of change a session reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// Messages added.
    Added(Vec<u32>),
    /// Messages expunged.
    Expunged(Vec<u32>),
    /// Messages' flags changed: each UID with all its flags now.
    Flags(Vec<(u32, Vec<String>)>),
    /// The mailbox was renamed to this name.
    Renamed(String),
    /// The mailbox was deleted.
    Deleted,
    /// The feed cannot be followed from where the session is (the store pruned it): the
    /// session no longer knows the mailbox's state and must end.
    Lost,
    /// Anything else (subscriptions, other mailboxes).
    Other,
}

/// The change feed of one mailbox. Dropping it stops the feed.
pub struct ChangeFeed {
    /// Changes as they happen.
    pub changes: mpsc::Receiver<Change>,
    /// The task that follows the store's feed, if one runs (stopped on drop).
    pub task: Option<JoinHandle<()>>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The store operations IMAP needs. Every write returns only after the store committed it
/// (a tagged OK follows a Raft majority).
pub trait ImapBackend: Send + Sync {
    /// Checks a password; the account's canonical address when it is right.
    fn check_password(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// The account's quota.
    fn quota(&self, account: &str) -> impl Future<Output = StoreResult<Quota>> + Send;

    /// Every mailbox of the account.
    fn list_mailboxes(
        &self,
        account: &str,
    ) -> impl Future<Output = StoreResult<Vec<MailboxInfo>>> + Send;

    /// One mailbox's counters (STATUS).
    fn get_mailbox(
        &self,
        account: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<MailboxInfo>> + Send;

    /// Creates a mailbox (and its missing parents).
    fn create_mailbox(
        &self,
        account: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes a mailbox.
    fn delete_mailbox(
        &self,
        account: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Renames a mailbox (and its children; INBOX's messages move to the new name).
    fn rename_mailbox(
        &self,
        account: &str,
        from: &str,
        to: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Claims the messages up to `up_to` as first seen by this session (RFC 3501 \Recent);
    /// returns the mailbox's recent marker before the claim, so this session's recent
    /// messages are those with a UID in (returned, `up_to`]. Fails with
    /// [`ErrorKind::Rejected`] when UIDVALIDITY is no longer `uid_validity`.
    fn claim_recent(
        &self,
        account: &str,
        mailbox: &str,
        uid_validity: u32,
        up_to: u32,
    ) -> impl Future<Output = StoreResult<u32>> + Send;

    /// Adds a mailbox to or removes it from the subscription list.
    fn subscribe(
        &self,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The mailbox and the records of its messages, all of them or those with a UID in
    /// `uids` (an inclusive range).
    fn list_messages(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<(u32, u32)>,
    ) -> impl Future<Output = StoreResult<Listing>> + Send;

    /// Reads the octets `range` of a message's content. Fails with [`ErrorKind::NotFound`]
    /// when it is gone or the mailbox's UIDVALIDITY changed.
    fn read(
        &self,
        account: &str,
        message: MessageRef<'_>,
        range: ByteRange,
    ) -> impl Future<Output = StoreResult<Content>> + Send;

    /// The header sections of the messages `uids` of `mailbox` (at most
    /// [`MAX_HEADERS_PER_READ`]), as stored, from store requests that read no body (one,
    /// unless the answer would pass the store's byte bound): for FETCH of ENVELOPE and
    /// header fields over a sequence set. Expunged messages are left out; fails with
    /// [`ErrorKind::Rejected`] when the mailbox's UIDVALIDITY changed.
    fn read_headers(
        &self,
        account: &str,
        mailbox: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> impl Future<Output = StoreResult<Headers>> + Send;

    /// Records that a whole message went to the client, in its delivery trace.
    fn retrieved(&self, trace_id: &str, account: &str, mailbox: &str, uid: u32);

    /// Appends a message.
    fn append(
        &self,
        account: &str,
        mailbox: &str,
        message: NewMessage,
    ) -> impl Future<Output = StoreResult<Appended>> + Send;

    /// Changes flags of the messages in `uids` (see [`FlagChange::unchanged_since`] for which
    /// of them).
    fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        change: FlagChange,
    ) -> impl Future<Output = StoreResult<Stored>> + Send;

    /// Copies (or, with `moving`, moves) messages to `target`.
    fn copy(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        target: &str,
        moving: bool,
    ) -> impl Future<Output = StoreResult<Copied>> + Send;

    /// Removes the `\Deleted` messages, all of them or those in `uids`.
    fn expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&[u32]>,
    ) -> impl Future<Output = StoreResult<Expunged>> + Send;

    /// Runs a search in the mailbox.
    fn search(
        &self,
        account: &str,
        mailbox: &str,
        key: pb::SearchKey,
    ) -> impl Future<Output = StoreResult<Found>> + Send;

    /// Follows the mailbox's changes after modseq `from` until the feed is dropped.
    fn watch(&self, account: &str, mailbox: &str, from: u64) -> ChangeFeed;
}
