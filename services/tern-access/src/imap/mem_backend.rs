//! An in-memory [`ImapBackend`] for the session tests: one account, mailboxes with UIDs,
//! UIDVALIDITY, UIDNEXT, flags and keywords, a MODSEQ per mailbox, expunge, a storage quota,
//! and a change feed that reports every change to every session watching the mailbox (as
//! the store's Watch stream does), so IDLE and the untagged updates are tested too.

use std::sync::{Arc, Mutex, MutexGuard};

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::search_key::Key;
use tokio::sync::mpsc;

use super::backend::*;
use super::view::MessageMeta;

/// The account the tests log in as, and its password.
pub const USER: &str = "alice@example.test";
pub const PASSWORD: &str = "pw";

#[derive(Clone)]
struct Message {
    uid: u32,
    flags: Vec<String>,
    internal_date: i64,
    data: Vec<u8>,
    modseq: u64,
}

struct Folder {
    id: u64,
    name: String,
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    /// The recent marker (see [`ImapBackend::claim_recent`]).
    recent_uid: u32,
    subscribed: bool,
    special_use: String,
    messages: Vec<Message>,
}

impl Folder {
    fn info(&self) -> MailboxInfo {
        MailboxInfo {
            id: self.id,
            name: self.name.clone(),
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            highest_modseq: self.highest_modseq,
            messages: self.messages.len() as u32,
            unseen: self
                .messages
                .iter()
                .filter(|m| !has(&m.flags, "\\Seen"))
                .count() as u32,
            deleted: self
                .messages
                .iter()
                .filter(|m| has(&m.flags, "\\Deleted"))
                .count() as u64,
            recent_uid: self.recent_uid,
            recent: self
                .messages
                .iter()
                .filter(|m| m.uid > self.recent_uid)
                .count() as u32,
            subscribed: self.subscribed,
            special_use: self.special_use.clone(),
        }
    }
}

fn has(flags: &[String], f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

#[derive(Default)]
struct State {
    folders: Vec<Folder>,
    next_id: u64,
    quota: u64,
    watchers: Vec<(u64, mpsc::Sender<Change>)>,
    /// (trace id, mailbox, uid) of every whole-message read.
    retrievals: Vec<(String, String, u32)>,
    /// Every store call fails with this, when set.
    failing: Option<ErrorKind>,
    /// Content reads (`read`) and header reads (`read_headers`) asked for so far.
    content_reads: u64,
    header_reads: u64,
}

impl State {
    fn folder(&mut self, name: &str) -> StoreResult<&mut Folder> {
        self.folders
            .iter_mut()
            .find(|f| f.name == name)
            .ok_or_else(|| StoreError::new(ErrorKind::NotFound, format!("no mailbox {name}")))
    }

    fn add_folder(&mut self, name: &str, special_use: &str) {
        self.next_id += 1;
        self.folders.push(Folder {
            id: self.next_id,
            name: name.to_string(),
            uid_validity: 1000 + self.next_id as u32,
            uid_next: 1,
            highest_modseq: 1,
            recent_uid: 0,
            subscribed: false,
            special_use: special_use.to_string(),
            messages: Vec::new(),
        });
    }

    fn used(&self) -> u64 {
        self.folders
            .iter()
            .flat_map(|f| &f.messages)
            .map(|m| m.data.len() as u64)
            .sum()
    }

    /// Tells every session watching mailbox `id`.
    fn announce(&mut self, id: u64, modseq: u64, kind: ChangeKind) {
        self.watchers.retain(|(_, tx)| !tx.is_closed());
        for (watched, tx) in &self.watchers {
            if *watched == id {
                let _ = tx.try_send(Change {
                    modseq,
                    mailbox_id: id,
                    kind: kind.clone(),
                });
            }
        }
    }

    fn check(&self) -> StoreResult<()> {
        match self.failing {
            Some(kind) => Err(StoreError::new(kind, "the test store fails on purpose")),
            None => Ok(()),
        }
    }
}

/// The in-memory store, shared by every session of a test (clones share it).
#[derive(Clone)]
pub struct Mem(Arc<Mutex<State>>);

impl Default for Mem {
    fn default() -> Self {
        Self::new()
    }
}

impl Mem {
    /// A store with INBOX, Archive and Trash (special use `\Trash`), all empty.
    pub fn new() -> Self {
        let mut s = State::default();
        s.add_folder("INBOX", "");
        s.add_folder("Archive", "");
        s.add_folder("Trash", "\\Trash");
        Mem(Arc::new(Mutex::new(s)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers a message as SMTP would: a change made elsewhere.
    pub fn deliver(&self, mailbox: &str, flags: &[&str], data: &[u8]) -> u32 {
        let message = NewMessage {
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internal_date: 1_700_000_000,
            data: data.to_vec(),
        };
        match append(&mut self.lock(), mailbox, message) {
            Ok(a) => a.uid,
            Err(e) => panic!("test delivery failed: {e}"),
        }
    }

    /// Sets the account's quota in octets (0: none).
    pub fn set_quota(&self, bytes: u64) {
        self.lock().quota = bytes;
    }

    /// Makes every store call fail with `kind` (None: work again).
    pub fn fail(&self, kind: Option<ErrorKind>) {
        self.lock().failing = kind;
    }

    /// The flags of a message.
    pub fn flags(&self, mailbox: &str, uid: u32) -> Vec<String> {
        let mut s = self.lock();
        s.folder(mailbox)
            .ok()
            .and_then(|f| f.messages.iter().find(|m| m.uid == uid))
            .map(|m| m.flags.clone())
            .unwrap_or_default()
    }

    /// The UIDs in a mailbox.
    pub fn uids(&self, mailbox: &str) -> Vec<u32> {
        let mut s = self.lock();
        s.folder(mailbox)
            .map(|f| f.messages.iter().map(|m| m.uid).collect())
            .unwrap_or_default()
    }

    /// The whole-message reads reported so far: (mailbox, uid).
    pub fn retrievals(&self) -> Vec<(String, u32)> {
        self.lock()
            .retrievals
            .iter()
            .map(|(_, m, u)| (m.clone(), *u))
            .collect()
    }

    /// The store calls that read content so far: (content reads, header reads).
    pub fn reads(&self) -> (u64, u64) {
        let s = self.lock();
        (s.content_reads, s.header_reads)
    }

    /// Changes flags as another session would.
    pub fn set_flags_elsewhere(&self, mailbox: &str, uid: u32, flags: &[&str]) {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        if let Err(e) = store_flags(
            &mut self.lock(),
            mailbox,
            &[uid],
            FlagMode::Replace,
            flags,
            0,
        ) {
            panic!("test flag change failed: {e}");
        }
    }

    /// Tells the sessions watching `mailbox` that its feed was pruned past them, as the
    /// store does to a session that fell more than the retention period behind.
    pub fn lose_feed(&self, mailbox: &str) {
        let mut s = self.lock();
        let id = match s.folder(mailbox) {
            Ok(f) => f.id,
            Err(e) => panic!("test feed loss failed: {e}"),
        };
        s.announce(id, 0, ChangeKind::Lost);
    }

    /// Expunges as another session would (the messages need `\Deleted`).
    pub fn expunge_elsewhere(&self, mailbox: &str, uids: &[u32]) {
        if let Err(e) = expunge(&mut self.lock(), mailbox, Some(uids)) {
            panic!("test expunge failed: {e}");
        }
    }
}

fn meta(m: &Message) -> MessageMeta {
    MessageMeta {
        uid: m.uid,
        flags: m.flags.clone(),
        internal_date: m.internal_date,
        size: m.data.len() as u64,
        modseq: m.modseq,
        recent: false,
    }
}

fn append(s: &mut State, mailbox: &str, message: NewMessage) -> StoreResult<Appended> {
    s.check()?;
    if s.quota > 0 && s.used() + message.data.len() as u64 > s.quota {
        return Err(StoreError::new(ErrorKind::OverQuota, "quota exceeded"));
    }
    let f = s.folder(mailbox)?;
    f.highest_modseq += 1;
    let uid = f.uid_next;
    f.uid_next += 1;
    f.messages.push(Message {
        uid,
        flags: message.flags,
        internal_date: if message.internal_date == 0 {
            1_700_000_000
        } else {
            message.internal_date
        },
        data: message.data,
        modseq: f.highest_modseq,
    });
    let (id, modseq, uid_validity) = (f.id, f.highest_modseq, f.uid_validity);
    s.announce(id, modseq, ChangeKind::Added(vec![uid]));
    Ok(Appended { uid_validity, uid })
}

fn store_flags(
    s: &mut State,
    mailbox: &str,
    uids: &[u32],
    mode: FlagMode,
    flags: Vec<String>,
    unchanged_since: u64,
) -> StoreResult<Stored> {
    s.check()?;
    let f = s.folder(mailbox)?;
    let modseq = f.highest_modseq + 1;
    let mut out = Stored::default();
    for m in f.messages.iter_mut().filter(|m| uids.contains(&m.uid)) {
        if unchanged_since > 0 && m.modseq > unchanged_since {
            out.modified.push(m.uid);
            continue;
        }
        let mut new = match mode {
            FlagMode::Replace => Vec::new(),
            FlagMode::Add | FlagMode::Remove => m.flags.clone(),
        };
        for flag in &flags {
            match mode {
                FlagMode::Remove => new.retain(|x| !x.eq_ignore_ascii_case(flag)),
                FlagMode::Replace | FlagMode::Add => {
                    if !has(&new, flag) {
                        new.push(flag.clone());
                    }
                }
            }
        }
        if new != m.flags {
            m.flags = new;
            m.modseq = modseq;
            out.updated.push(FlagUpdate {
                uid: m.uid,
                flags: m.flags.clone(),
                modseq,
            });
        }
    }
    if !out.updated.is_empty() {
        f.highest_modseq = modseq;
        let id = f.id;
        let changed = out
            .updated
            .iter()
            .map(|u| (u.uid, u.flags.clone()))
            .collect();
        s.announce(id, modseq, ChangeKind::Flags(changed));
    }
    Ok(out)
}

fn expunge(s: &mut State, mailbox: &str, uids: Option<&[u32]>) -> StoreResult<Expunged> {
    s.check()?;
    let f = s.folder(mailbox)?;
    let gone: Vec<u32> = f
        .messages
        .iter()
        .filter(|m| has(&m.flags, "\\Deleted") && uids.is_none_or(|u| u.contains(&m.uid)))
        .map(|m| m.uid)
        .collect();
    if gone.is_empty() {
        return Ok(Expunged {
            uids: gone,
            highest_modseq: f.highest_modseq,
        });
    }
    f.messages.retain(|m| !gone.contains(&m.uid));
    f.highest_modseq += 1;
    let (id, modseq) = (f.id, f.highest_modseq);
    s.announce(id, modseq, ChangeKind::Expunged(gone.clone()));
    Ok(Expunged {
        uids: gone,
        highest_modseq: modseq,
    })
}

fn contains_ci(hay: &[u8], needle: &str) -> bool {
    let hay = String::from_utf8_lossy(hay).to_lowercase();
    hay.contains(&needle.to_lowercase())
}

/// Whether a message matches the store's search key (the sent-date keys need a Date:
/// parser this test store does not have: they are refused).
fn matches_key(m: &Message, key: &pb::SearchKey) -> StoreResult<bool> {
    let Some(k) = &key.key else {
        return Ok(true);
    };
    let header_end = tern_mail::header::section_end(&m.data).unwrap_or(m.data.len());
    Ok(match k {
        Key::All(_) => true,
        Key::FlagSet(f) => has(&m.flags, f),
        Key::FlagUnset(f) => !has(&m.flags, f),
        Key::Header(h) => m.data[..header_end].split(|b| *b == b'\n').any(|line| {
            let line = String::from_utf8_lossy(line).to_lowercase();
            line.starts_with(&format!("{}:", h.name.to_lowercase()))
                && line.contains(&h.value.to_lowercase())
        }),
        Key::Body(t) => contains_ci(&m.data[header_end..], t),
        Key::Text(t) => contains_ci(&m.data, t),
        Key::Larger(n) => m.data.len() as u64 > *n,
        Key::Smaller(n) => (m.data.len() as u64) < *n,
        Key::Before(t) => m.internal_date < *t,
        Key::Since(t) => m.internal_date >= *t,
        Key::SentBefore(_) | Key::SentSince(_) => {
            return Err(StoreError::new(
                ErrorKind::Rejected,
                "the test store has no Date: parser",
            ))
        }
        Key::Uids(set) => set
            .ranges
            .iter()
            .any(|r| (r.first..=r.last).contains(&m.uid)),
        Key::And(keys) => {
            for k in &keys.keys {
                if !matches_key(m, k)? {
                    return Ok(false);
                }
            }
            true
        }
        Key::Or(keys) => {
            for k in &keys.keys {
                if matches_key(m, k)? {
                    return Ok(true);
                }
            }
            false
        }
        Key::Not(k) => !matches_key(m, k)?,
        Key::Modseq(v) => m.modseq >= *v,
    })
}

impl ImapBackend for Mem {
    async fn check_password(&self, user: &str, password: &str) -> StoreResult<Option<String>> {
        self.lock().check()?;
        Ok((user.eq_ignore_ascii_case(USER) && password == PASSWORD).then(|| USER.to_string()))
    }

    async fn quota(&self, _account: &str) -> StoreResult<Quota> {
        let s = self.lock();
        s.check()?;
        Ok(Quota {
            used_bytes: s.used(),
            limit_bytes: s.quota,
        })
    }

    async fn list_mailboxes(&self, _account: &str) -> StoreResult<Vec<MailboxInfo>> {
        let s = self.lock();
        s.check()?;
        Ok(s.folders.iter().map(Folder::info).collect())
    }

    async fn get_mailbox(&self, _account: &str, name: &str) -> StoreResult<MailboxInfo> {
        let mut s = self.lock();
        s.check()?;
        s.folder(name).map(|f| f.info())
    }

    async fn create_mailbox(&self, _account: &str, name: &str) -> StoreResult<()> {
        let mut s = self.lock();
        s.check()?;
        if s.folders.iter().any(|f| f.name == name) {
            return Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("{name} exists"),
            ));
        }
        s.add_folder(name, "");
        Ok(())
    }

    async fn delete_mailbox(&self, _account: &str, name: &str) -> StoreResult<()> {
        let mut s = self.lock();
        s.check()?;
        let f = s.folder(name)?;
        let (id, modseq) = (f.id, f.highest_modseq + 1);
        s.folders.retain(|f| f.id != id);
        s.announce(id, modseq, ChangeKind::Deleted);
        Ok(())
    }

    async fn rename_mailbox(&self, _account: &str, from: &str, to: &str) -> StoreResult<()> {
        let mut s = self.lock();
        s.check()?;
        if s.folders.iter().any(|f| f.name == to) {
            return Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("{to} exists"),
            ));
        }
        if from == "INBOX" {
            // Renaming INBOX moves its messages to a new mailbox; INBOX stays, empty.
            let messages = std::mem::take(&mut s.folder("INBOX")?.messages);
            s.add_folder(to, "");
            let f = s.folder(to)?;
            f.uid_next = messages.iter().map(|m| m.uid + 1).max().unwrap_or(1);
            f.messages = messages;
            return Ok(());
        }
        let f = s.folder(from)?;
        f.name = to.to_string();
        f.highest_modseq += 1;
        let (id, modseq) = (f.id, f.highest_modseq);
        let prefix = format!("{from}/");
        for child in s.folders.iter_mut() {
            if let Some(rest) = child.name.strip_prefix(&prefix) {
                child.name = format!("{to}/{rest}");
            }
        }
        s.announce(id, modseq, ChangeKind::Renamed(to.to_string()));
        Ok(())
    }

    async fn claim_recent(
        &self,
        _account: &str,
        mailbox: &str,
        uid_validity: u32,
        up_to: u32,
    ) -> StoreResult<u32> {
        let mut s = self.lock();
        s.check()?;
        let f = s.folder(mailbox)?;
        if uid_validity != 0 && uid_validity != f.uid_validity {
            return Err(StoreError::new(ErrorKind::Rejected, "UIDVALIDITY changed"));
        }
        let previous = f.recent_uid;
        f.recent_uid = previous.max(up_to.min(f.uid_next.saturating_sub(1)));
        Ok(previous)
    }

    async fn subscribe(&self, _account: &str, name: &str, subscribed: bool) -> StoreResult<()> {
        let mut s = self.lock();
        s.check()?;
        s.folder(name)?.subscribed = subscribed;
        Ok(())
    }

    async fn list_messages(
        &self,
        _account: &str,
        mailbox: &str,
        uids: Option<(u32, u32)>,
    ) -> StoreResult<Listing> {
        let mut s = self.lock();
        s.check()?;
        let Ok(f) = s.folder(mailbox) else {
            return Ok(Listing::default());
        };
        Ok(Listing {
            mailbox: Some(f.info()),
            messages: f
                .messages
                .iter()
                .filter(|m| uids.is_none_or(|(a, b)| (a..=b).contains(&m.uid)))
                .map(meta)
                .collect(),
        })
    }

    async fn read(
        &self,
        _account: &str,
        message: MessageRef<'_>,
        range: ByteRange,
    ) -> StoreResult<Content> {
        let MessageRef {
            mailbox,
            uid,
            uid_validity,
        } = message;
        let ByteRange { offset, length } = range;
        let mut s = self.lock();
        s.check()?;
        s.content_reads += 1;
        let f = s.folder(mailbox)?;
        if uid_validity != 0 && uid_validity != f.uid_validity {
            return Err(StoreError::new(ErrorKind::NotFound, "UIDVALIDITY changed"));
        }
        let m = f
            .messages
            .iter()
            .find(|m| m.uid == uid)
            .ok_or_else(|| StoreError::new(ErrorKind::NotFound, "no such message"))?;
        let start = (offset as usize).min(m.data.len());
        let end = if length == 0 {
            m.data.len()
        } else {
            (start + length as usize).min(m.data.len())
        };
        Ok(Content {
            data: m.data[start..end].to_vec(),
            trace_id: format!("trace-{uid}"),
        })
    }

    async fn read_headers(
        &self,
        _account: &str,
        mailbox: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> StoreResult<Headers> {
        let mut s = self.lock();
        s.check()?;
        s.header_reads += 1;
        let f = s.folder(mailbox)?;
        if uid_validity != f.uid_validity {
            return Err(StoreError::new(ErrorKind::Rejected, "UIDVALIDITY changed"));
        }
        let mut out = Headers::default();
        for m in f.messages.iter().filter(|m| uids.contains(&m.uid)) {
            let head = tern_mail::header::section(&m.data);
            // As the store answers: a header over 64 KiB is named, not sent.
            if head.len() > 64 << 10 {
                out.too_large.push(m.uid);
            } else {
                out.found.push((m.uid, head.to_vec()));
            }
        }
        Ok(out)
    }

    fn retrieved(&self, trace_id: &str, _account: &str, mailbox: &str, uid: u32) {
        self.lock()
            .retrievals
            .push((trace_id.to_string(), mailbox.to_string(), uid));
    }

    async fn append(
        &self,
        _account: &str,
        mailbox: &str,
        message: NewMessage,
    ) -> StoreResult<Appended> {
        append(&mut self.lock(), mailbox, message)
    }

    async fn store_flags(
        &self,
        _account: &str,
        mailbox: &str,
        uids: &[u32],
        change: FlagChange,
    ) -> StoreResult<Stored> {
        store_flags(
            &mut self.lock(),
            mailbox,
            uids,
            change.mode,
            change.flags,
            change.unchanged_since,
        )
    }

    async fn copy(
        &self,
        _account: &str,
        mailbox: &str,
        uids: &[u32],
        target: &str,
        moving: bool,
    ) -> StoreResult<Copied> {
        let mut s = self.lock();
        s.check()?;
        s.folder(target)?;
        let picked: Vec<Message> = s
            .folder(mailbox)?
            .messages
            .iter()
            .filter(|m| uids.contains(&m.uid))
            .cloned()
            .collect();
        let mut copied = Copied::default();
        for m in &picked {
            let message = NewMessage {
                flags: m.flags.clone(),
                internal_date: m.internal_date,
                data: m.data.clone(),
            };
            let a = append(&mut s, target, message)?;
            copied.uid_validity = a.uid_validity;
            copied.source_uids.push(m.uid);
            copied.target_uids.push(a.uid);
        }
        if moving && !picked.is_empty() {
            let f = s.folder(mailbox)?;
            f.messages.retain(|m| !copied.source_uids.contains(&m.uid));
            f.highest_modseq += 1;
            let (id, modseq) = (f.id, f.highest_modseq);
            s.announce(id, modseq, ChangeKind::Expunged(copied.source_uids.clone()));
        }
        Ok(copied)
    }

    async fn expunge(
        &self,
        _account: &str,
        mailbox: &str,
        uids: Option<&[u32]>,
    ) -> StoreResult<Expunged> {
        expunge(&mut self.lock(), mailbox, uids)
    }

    async fn search(
        &self,
        _account: &str,
        mailbox: &str,
        key: pb::SearchKey,
    ) -> StoreResult<Found> {
        let mut s = self.lock();
        s.check()?;
        let f = s.folder(mailbox)?;
        let mut found = Found::default();
        for m in &f.messages {
            if matches_key(m, &key)? {
                found.uids.push(m.uid);
                found.highest_modseq = found.highest_modseq.max(m.modseq);
            }
        }
        Ok(found)
    }

    fn watch(&self, _account: &str, mailbox: &str, _from: u64) -> ChangeFeed {
        let (tx, rx) = mpsc::channel(1024);
        let mut s = self.lock();
        if let Ok(id) = s.folder(mailbox).map(|f| f.id) {
            s.watchers.push((id, tx));
        }
        ChangeFeed {
            changes: rx,
            task: None,
        }
    }
}
