//! A session's view of its selected mailbox: the sequence-number map, each message's flags
//! and modseq as last told to the client, and the changes made elsewhere that the client has
//! not been told about yet.
//!
//! RFC 3501 fixes when a server may tell: new messages (EXISTS) and flag changes (untagged
//! FETCH) at the end of any command; EXPUNGE at the end of any command but FETCH, STORE and
//! SEARCH (§7.4.1: their sequence numbers would become ambiguous), and never while no command
//! is in progress (IDLE counts as one). Until an expunge is announced, the message keeps its
//! sequence number, so every number the client holds still means what it did.
//!
//! Pure state: the session feeds it what the store reports and asks it for the untagged
//! responses that may go out now.

use std::collections::BTreeSet;

use super::wire::{flag_list, SYSTEM_FLAGS};

/// What the view knows of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The message's UID.
    pub uid: u32,
    /// System flags (`\Seen`) and keywords, as the store spells them.
    pub flags: Vec<String>,
    /// INTERNALDATE, seconds since the Unix epoch.
    pub internal_date: i64,
    /// RFC822.SIZE: octets with CRLF line endings.
    pub size: u64,
    /// The message's modseq (CONDSTORE).
    pub modseq: u64,
    /// `\Recent` in this session (RFC 3501 §2.3.2): this session was the first to be told of
    /// the message. Session state, never stored as a flag; see [`View::mark_recent`].
    pub recent: bool,
}

impl MessageMeta {
    /// Appends the message's FLAGS list as this session shows it: the stored flags, and
    /// `\Recent` when the message is recent here.
    pub fn write_flags(&self, out: &mut Vec<u8>) {
        flag_list(out, &self.flags);
        if self.recent {
            out.pop(); // ")"
            if !self.flags.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(b"\\Recent)");
        }
    }
}

/// One sequence set element after `*` is resolved: an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First value.
    pub first: u64,
    /// Last value ([`STAR`] stands for `*` before resolution).
    pub last: u64,
}

/// `*` before it is resolved to the largest number in use. It lies outside every `u32`, so
/// a client's literal 4294967295 is that number and not `*` (RFC 3501 §9: only `*` means
/// "the largest").
pub const STAR: u64 = u64::MAX;

/// A selected mailbox as one session sees it.
#[derive(Debug, Default)]
pub struct View {
    /// EXAMINE, or a mailbox the user may not change.
    pub read_only: bool,
    /// The mailbox's UIDVALIDITY at SELECT.
    pub uid_validity: u32,
    /// UIDNEXT as last reported.
    pub uid_next: u32,
    /// Highest modseq reflected in this view.
    pub highest_modseq: u64,
    /// Messages in sequence order (ascending UID); index + 1 is the sequence number.
    messages: Vec<MessageMeta>,
    /// UIDs expunged elsewhere, still holding their sequence numbers until announced.
    expunged: BTreeSet<u32>,
    /// UIDs whose flags changed elsewhere and have not been announced.
    flags_changed: BTreeSet<u32>,
    /// UIDs added elsewhere whose records have not been read yet.
    added: BTreeSet<u32>,
    /// Number of messages the client has been told exist.
    announced_exists: usize,
    /// The keywords the client has been told of in `* FLAGS` (RFC 3501 §7.2.6): a keyword
    /// may only appear in a FETCH FLAGS after it was announced there.
    keywords: BTreeSet<String>,
    /// Every UID up to this one has had its \Recent settled (claimed, or found claimed by
    /// another session); only messages above it can still become recent here.
    recent_through: u32,
    /// The RECENT count as last told to the client.
    announced_recent: usize,
}

impl View {
    /// A view of a freshly selected mailbox; `messages` in any order.
    pub fn new(
        mut messages: Vec<MessageMeta>,
        uid_validity: u32,
        uid_next: u32,
        highest_modseq: u64,
        read_only: bool,
    ) -> Self {
        messages.sort_by_key(|m| m.uid);
        messages.dedup_by_key(|m| m.uid);
        let announced_exists = messages.len();
        let keywords = messages
            .iter()
            .flat_map(|m| m.flags.iter())
            .filter(|f| is_keyword(f))
            .cloned()
            .collect();
        Self {
            read_only,
            uid_validity,
            uid_next,
            highest_modseq,
            messages,
            expunged: BTreeSet::new(),
            flags_changed: BTreeSet::new(),
            added: BTreeSet::new(),
            announced_exists,
            keywords,
            recent_through: 0,
            announced_recent: 0,
        }
    }

    /// The UIDs whose \Recent this session has yet to settle, given the mailbox's recent
    /// marker as last read (`marker`, [`super::backend::MailboxInfo::recent_uid`]): `Some((after,
    /// up_to))` when the view holds messages above both the marker and what was settled
    /// already. A read-write session then claims them up to `up_to` and passes what the claim
    /// returns to [`View::mark_recent`]; a read-only one (EXAMINE) does not claim and passes
    /// `after` as it is. `None`: nothing new, and nothing to write (SELECT of a mailbox where
    /// nothing arrived costs no claim).
    pub fn recent_to_settle(&self, marker: u32) -> Option<(u32, u32)> {
        let after = marker.max(self.recent_through);
        let up_to = self.last_uid();
        (up_to > after).then_some((after, up_to))
    }

    /// Marks the messages with a UID in (`after`, `up_to`] recent in this session (those
    /// settled earlier are left as they are) and settles everything up to `up_to`.
    pub fn mark_recent(&mut self, after: u32, up_to: u32) {
        let after = after.max(self.recent_through);
        let start = self.messages.partition_point(|m| m.uid <= after);
        for m in self.messages[start..]
            .iter_mut()
            .take_while(|m| m.uid <= up_to)
        {
            m.recent = true;
        }
        self.recent_through = self.recent_through.max(up_to);
    }

    /// How many messages are recent in this session (`* n RECENT`).
    pub fn recent(&self) -> usize {
        self.messages.iter().filter(|m| m.recent).count()
    }

    /// The recent messages' UIDs, ascending (SEARCH RECENT, NEW, OLD).
    pub fn recent_uids(&self) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.recent)
            .map(|m| m.uid)
            .collect()
    }

    /// Records that the client was told `* n RECENT` (at SELECT).
    pub fn recent_announced(&mut self) {
        self.announced_recent = self.recent();
    }

    /// Writes `* FLAGS` (the system flags and every keyword announced so far) and the
    /// `* OK [PERMANENTFLAGS]` that goes with it: at SELECT, and again whenever a keyword
    /// new to the mailbox appears.
    pub fn write_flags(&self, out: &mut Vec<u8>) {
        let mut flags: Vec<String> = SYSTEM_FLAGS.iter().map(|s| s.to_string()).collect();
        flags.extend(self.keywords.iter().cloned());
        out.extend_from_slice(b"* FLAGS ");
        flag_list(out, &flags);
        out.extend_from_slice(b"\r\n");
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] read-only\r\n");
        } else {
            flags.push("\\*".into());
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ");
            flag_list(out, &flags);
            out.extend_from_slice(b"] flags permitted\r\n");
        }
    }

    /// Before a FETCH names `flags`: announces the keywords among them that the client has
    /// not been told of, with a new `* FLAGS` (RFC 3501 §7.2.6).
    pub fn announce_keywords<'a>(
        &mut self,
        flags: impl IntoIterator<Item = &'a String>,
        out: &mut Vec<u8>,
    ) {
        let mut grew = false;
        for f in flags {
            if is_keyword(f) && !self.keywords.contains(f) {
                self.keywords.insert(f.clone());
                grew = true;
            }
        }
        if grew {
            self.write_flags(out);
        }
    }

    /// Messages the client knows of (EXISTS as last announced).
    pub fn exists(&self) -> usize {
        self.messages.len()
    }

    /// The message with sequence number `seq` (1-based).
    pub fn by_seq(&self, seq: u32) -> Option<&MessageMeta> {
        self.messages.get((seq as usize).checked_sub(1)?)
    }

    /// The sequence number of `uid`, if the client knows it.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| i as u32 + 1)
    }

    /// The message with `uid`.
    pub fn by_uid(&self, uid: u32) -> Option<&MessageMeta> {
        let i = self.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        self.messages.get(i)
    }

    /// Whether `uid` was expunged elsewhere and not yet announced.
    pub fn is_expunged(&self, uid: u32) -> bool {
        self.expunged.contains(&uid)
    }

    /// Every message, in sequence order.
    pub fn messages(&self) -> &[MessageMeta] {
        &self.messages
    }

    /// The UIDs a sequence-number set names, ascending. `*` is the last message; a set
    /// naming a number past the end is an error the caller reports as BAD (RFC 3501 §9
    /// `seq-number`), unless the mailbox is empty and the set is only `*`-based. Spans are
    /// merged first, so `1:*,1:*,...` costs what `1:*` does.
    pub fn uids_for_seqs(&self, spans: &[Span]) -> Result<Vec<u32>, &'static str> {
        let n = self.messages.len() as u64;
        let mut ranges = Vec::with_capacity(spans.len());
        for s in spans {
            let resolve = |v: u64| if v == STAR { n } else { v };
            let (a, b) = (resolve(s.first), resolve(s.last));
            let (lo, hi) = (a.min(b), a.max(b));
            if n == 0 {
                if s.first == STAR || s.last == STAR {
                    continue;
                }
                return Err("the mailbox is empty");
            }
            if hi > n || lo == 0 {
                return Err("no message with that sequence number");
            }
            // Both are at most the message count, a u32.
            ranges.push((lo as u32, hi as u32));
        }
        let mut out = Vec::new();
        for (lo, hi) in merge(ranges) {
            out.extend(
                self.messages[lo as usize - 1..hi as usize]
                    .iter()
                    .map(|m| m.uid),
            );
        }
        Ok(out)
    }

    /// The known UIDs a UID set names, ascending. `*` is the highest UID; UIDs that do not
    /// exist are skipped (RFC 3501 §6.4.8), and `n:*` always includes the highest UID.
    pub fn uids_for_uids(&self, spans: &[Span]) -> Vec<u32> {
        let Some(max) = self.messages.last().map(|m| m.uid) else {
            return Vec::new();
        };
        let ranges = spans
            .iter()
            .map(|s| {
                // Every value is a client's u32 or `*`, which becomes the highest UID.
                let resolve = |v: u64| u32::try_from(v).unwrap_or(max);
                let (a, b) = (resolve(s.first), resolve(s.last));
                (a.min(b), a.max(b))
            })
            .collect();
        let mut out = Vec::new();
        for (lo, hi) in merge(ranges) {
            let start = self.messages.partition_point(|m| m.uid < lo);
            let end = self.messages.partition_point(|m| m.uid <= hi);
            out.extend(self.messages[start..end.max(start)].iter().map(|m| m.uid));
        }
        out
    }

    /// The highest UID the view holds (0 when empty).
    pub fn last_uid(&self) -> u32 {
        self.messages.last().map(|m| m.uid).unwrap_or(0)
    }

    /// Records what this session itself changed (STORE, a \Seen set by FETCH): the client
    /// is told through the command's own responses, so a later echo from the change feed
    /// with the same or an older modseq is not announced again.
    pub fn set_flags(&mut self, uid: u32, flags: Vec<String>, modseq: u64) {
        if let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) {
            let m = &mut self.messages[i];
            m.flags = flags;
            m.modseq = m.modseq.max(modseq);
            self.flags_changed.remove(&uid);
        }
        self.highest_modseq = self.highest_modseq.max(modseq);
    }

    /// A flag change from the change feed.
    pub fn flags_changed_elsewhere(&mut self, uid: u32, flags: Vec<String>, modseq: u64) {
        if let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) {
            let m = &mut self.messages[i];
            if modseq > m.modseq && !self.expunged.contains(&uid) {
                m.flags = flags;
                m.modseq = modseq;
                self.flags_changed.insert(uid);
            }
        }
        self.highest_modseq = self.highest_modseq.max(modseq);
    }

    /// New UIDs from the change feed; their records are read before they are announced.
    pub fn added_elsewhere(&mut self, uids: &[u32], modseq: u64) {
        let known_max = self.messages.last().map(|m| m.uid).unwrap_or(0);
        for &u in uids {
            if u > known_max {
                self.added.insert(u);
            }
            self.uid_next = self.uid_next.max(u.saturating_add(1));
        }
        self.highest_modseq = self.highest_modseq.max(modseq);
    }

    /// UIDs added elsewhere whose records the session must read.
    pub fn pending_additions(&self) -> Vec<u32> {
        self.added.iter().copied().collect()
    }

    /// Whether anything waits to be announced.
    pub fn has_pending(&self) -> bool {
        !self.expunged.is_empty()
            || !self.flags_changed.is_empty()
            || !self.added.is_empty()
            || self.announced_exists != self.messages.len()
    }

    /// Expunges from the change feed: the messages stay until announced.
    pub fn expunged_elsewhere(&mut self, uids: &[u32], modseq: u64) {
        for &u in uids {
            self.added.remove(&u);
            if self.seq_of(u).is_some() {
                self.expunged.insert(u);
                self.flags_changed.remove(&u);
            }
        }
        self.highest_modseq = self.highest_modseq.max(modseq);
    }

    /// Adds records (from a read of the UIDs in [`View::pending_additions`], or the
    /// session's own APPEND/COPY into this mailbox) to the end of the map. Records already
    /// known or older than the last known UID are ignored: UIDs only grow.
    pub fn add_records(&mut self, mut records: Vec<MessageMeta>) {
        records.sort_by_key(|m| m.uid);
        for r in records {
            self.added.remove(&r.uid);
            let last = self.messages.last().map(|m| m.uid).unwrap_or(0);
            if r.uid > last {
                self.uid_next = self.uid_next.max(r.uid.saturating_add(1));
                self.highest_modseq = self.highest_modseq.max(r.modseq);
                self.messages.push(r);
            }
        }
    }

    /// Forgets additions that turned out to be gone already (expunged before they were read).
    pub fn drop_pending_additions(&mut self) {
        self.added.clear();
    }

    /// Removes `uids` (this session's own EXPUNGE or MOVE, or announced expunges), writing an
    /// untagged EXPUNGE for each, in an order where every number is right when it is read.
    /// With `vanished` (QRESYNC-style UID EXPUNGE answers are not offered) it is the same
    /// EXPUNGE responses.
    pub fn remove(&mut self, uids: &[u32], out: &mut Vec<u8>) {
        let mut uids: Vec<u32> = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        // Highest sequence numbers first, so no announced number shifts before it is sent;
        // RFC 3501 §7.4.1 allows either order as long as each number is current when sent.
        for &u in uids.iter().rev() {
            if let Some(seq) = self.seq_of(u) {
                out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                self.messages.remove(seq as usize - 1);
                self.announced_exists = self.announced_exists.saturating_sub(1);
            }
            self.expunged.remove(&u);
            self.flags_changed.remove(&u);
        }
    }

    /// The untagged responses that may go out at the end of the current command: pending
    /// expunges (unless `expunge_allowed` is false), then EXISTS for additions, then FETCH
    /// FLAGS for flag changes. `with_uid` adds UID to those FETCH responses (a UID command is
    /// running, or the client enabled CONDSTORE, which wants MODSEQ too).
    pub fn announce(
        &mut self,
        expunge_allowed: bool,
        with_uid: bool,
        with_modseq: bool,
        out: &mut Vec<u8>,
    ) {
        if expunge_allowed && !self.expunged.is_empty() {
            let gone: Vec<u32> = self.expunged.iter().copied().collect();
            self.remove(&gone, out);
        }
        // Keywords first: the new messages and the changed flags may name ones the client
        // has not seen in FLAGS yet.
        let changed_flags: Vec<String> = self
            .messages
            .get(self.announced_exists.min(self.messages.len())..)
            .unwrap_or_default()
            .iter()
            .chain(self.flags_changed.iter().filter_map(|u| self.by_uid(*u)))
            .flat_map(|m| m.flags.iter())
            .filter(|f| is_keyword(f) && !self.keywords.contains(*f))
            .cloned()
            .collect();
        self.announce_keywords(&changed_flags, out);
        if self.announced_exists != self.messages.len() {
            self.announced_exists = self.messages.len();
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.messages.len()).as_bytes());
            // New messages may be recent here: RECENT goes with EXISTS (RFC 3501 §7.3.2).
            let recent = self.recent();
            if recent != self.announced_recent {
                self.announced_recent = recent;
                out.extend_from_slice(format!("* {recent} RECENT\r\n").as_bytes());
            }
        }
        let changed: Vec<u32> = std::mem::take(&mut self.flags_changed)
            .into_iter()
            .collect();
        for uid in changed {
            if let (Some(seq), Some(m)) = (self.seq_of(uid), self.by_uid(uid)) {
                out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
                if with_uid {
                    out.extend_from_slice(format!("UID {uid} ").as_bytes());
                }
                if with_modseq {
                    out.extend_from_slice(format!("MODSEQ ({}) ", m.modseq).as_bytes());
                }
                out.extend_from_slice(b"FLAGS ");
                m.write_flags(out);
                out.extend_from_slice(b")\r\n");
            }
        }
    }
}

/// A keyword (`$Forwarded`, `NonJunk`), as opposed to a system flag (`\Seen`).
fn is_keyword(flag: &str) -> bool {
    !flag.starts_with('\\')
}

/// Sorted, non-overlapping inclusive ranges covering the same values.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
