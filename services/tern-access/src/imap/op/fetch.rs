//! FETCH and UID FETCH (RFC 3501 §6.4.5, CONDSTORE's CHANGEDSINCE and MODSEQ): the
//! items come from [`crate::imap::fetch`]; this reads what they need from the store, a few
//! messages at a time, and sets \Seen first when a body is read.

use std::collections::HashMap;
use std::io;

use futures::StreamExt;
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::sequence::SequenceSet;
use mail_parser::MessageParser;

use super::{bad, no, ok, store_no, Done};
use crate::imap::backend::{
    ByteRange, ErrorKind, FlagChange, FlagMode, ImapBackend, MessageRef, StoreError, StoreResult,
    MAX_HEADERS_PER_READ,
};
use crate::imap::fetch::{self, Item, Need};
use crate::imap::session::{Session, Sink};

/// Content fetches in flight for one FETCH command.
const FETCH_PARALLEL: usize = 8;

/// Whether `data` has a line feed without a carriage return before it.
fn has_bare_lf(data: &[u8]) -> bool {
    data.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
}

/// Reads a message's content (or a range of it) from the store, with CRLF line endings, and
/// the trace it was delivered under (empty if none).
async fn read_content<B: ImapBackend>(
    backend: &B,
    account: &str,
    message: MessageRef<'_>,
    range: ByteRange,
) -> StoreResult<(Vec<u8>, String)> {
    let content = backend.read(account, message, range).await?;
    let data = if has_bare_lf(&content.data) {
        tern_mail::lines::canonical(&content.data)
    } else {
        content.data
    };
    Ok((data, content.trace_id))
}

/// The header sections of `uids`, with CRLF line endings, in as few store requests as the
/// backend's bound allows (one for up to [`MAX_HEADERS_PER_READ`] messages).
async fn read_headers<B: ImapBackend>(
    backend: &B,
    account: &str,
    mailbox: &str,
    uid_validity: u32,
    uids: &[u32],
) -> StoreResult<HashMap<u32, Vec<u8>>> {
    let mut headers = HashMap::with_capacity(uids.len());
    for part in uids.chunks(MAX_HEADERS_PER_READ) {
        for (uid, header) in backend
            .read_headers(account, mailbox, uid_validity, part)
            .await?
        {
            let header = if has_bare_lf(&header) {
                tern_mail::lines::canonical(&header)
            } else {
                header
            };
            headers.insert(uid, header);
        }
    }
    Ok(headers)
}

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn fetch(
        &mut self,
        account: &str,
        set: &SequenceSet,
        names: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let mut items = match fetch::items(names, uid) {
            Ok(i) => i,
            Err(e) => return bad(e.to_string()),
        };
        let mut changed_since = None;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(v) => changed_since = Some(v.get()),
                FetchModifier::Vanished => {
                    return bad("VANISHED needs QRESYNC, which is not offered")
                }
            }
        }
        if changed_since.is_some() {
            self.condstore = true;
            if !items.contains(&Item::ModSeq) {
                items.push(Item::ModSeq);
            }
        }
        if items.contains(&Item::ModSeq) {
            self.condstore = true;
        }
        self.fetch_items(account, set, uid, items, changed_since, out)
            .await
    }

    async fn fetch_items(
        &mut self,
        account: &str,
        set: &SequenceSet,
        uid: bool,
        items: Vec<Item>,
        changed_since: Option<u64>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let mut uids = match self.resolve(set, uid) {
            Ok(u) => u,
            Err(e) => return bad(e),
        };
        let (name, read_only) = self.sel_info();
        if let (Some(since), Some(sel)) = (changed_since, &self.selected) {
            uids.retain(|u| sel.view.by_uid(*u).is_some_and(|m| m.modseq > since));
        }
        // \Seen as a side effect of reading a body (RFC 3501 §6.4.5), committed first.
        let mut seen_set: Vec<u32> = Vec::new();
        if fetch::sets_seen(&items) && !read_only {
            if let Some(sel) = &self.selected {
                seen_set = uids
                    .iter()
                    .copied()
                    .filter(|u| {
                        sel.view
                            .by_uid(*u)
                            .is_some_and(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                    })
                    .collect();
            }
            if !seen_set.is_empty() {
                let flagged = self
                    .backend
                    .store_flags(
                        account,
                        &name,
                        &seen_set,
                        FlagChange {
                            mode: FlagMode::Add,
                            flags: vec!["\\Seen".into()],
                            unchanged_since: 0,
                        },
                    )
                    .await;
                match flagged {
                    Ok(r) => {
                        if let Some(sel) = self.selected.as_mut() {
                            // The store's flags may name a keyword another session just
                            // set: announced before this FETCH shows it.
                            sel.view.announce_keywords(
                                r.updated.iter().flat_map(|rec| &rec.flags),
                                &mut out.buf,
                            );
                            for rec in r.updated {
                                sel.view.set_flags(rec.uid, rec.flags, rec.modseq);
                            }
                        }
                    }
                    Err(s) => return Ok(store_no("FETCH", &s)),
                }
            }
        }
        let need = fetch::need(&items);
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let uid_validity = sel.view.uid_validity;
        let mut expunge_issued = false;
        // Content is read a few messages at a time, in order.
        let backend = &self.backend;
        // A message expunged elsewhere and not yet announced: its metadata is still in the
        // view (RFC 2180 §4.1.1), its content may be gone. A UID FETCH leaves it out quietly
        // (the EXPUNGE follows at the end); a FETCH by number says so with EXPUNGEISSUED.
        let wanted: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| {
                let gone = need != Need::Nothing && sel.view.is_expunged(*u);
                expunge_issued |= gone && !uid;
                !gone
            })
            .collect();
        let parallel = if need == Need::Everything {
            // Whole messages: keep the bytes in flight per connection small.
            2
        } else {
            FETCH_PARALLEL
        };
        // Header-only items over the whole set: one store request, no body read.
        let mut headers = if need == Need::Header && !wanted.is_empty() {
            match read_headers(backend, account, &name, uid_validity, &wanted).await {
                Ok(h) => h,
                Err(s) => return Ok(store_no("FETCH", &s)),
            }
        } else {
            HashMap::new()
        };
        let headers = &mut headers;
        let seen_set: std::collections::HashSet<u32> = seen_set.into_iter().collect();
        let condstore = self.condstore;
        let mut contents = futures::stream::iter(wanted.into_iter().map(|u| {
            let (account, name) = (account.to_string(), name.clone());
            let header = headers.remove(&u);
            async move {
                let message = MessageRef {
                    mailbox: &name,
                    uid: u,
                    uid_validity,
                };
                let content = match need {
                    Need::Nothing => Ok(None),
                    Need::Header => header
                        .map(Some)
                        .ok_or_else(|| StoreError::new(ErrorKind::NotFound, "no such message")),
                    Need::Everything => {
                        match read_content(backend, &account, message, ByteRange::WHOLE).await {
                            Ok((data, trace_id)) => {
                                // The whole message goes to the client: a retrieval.
                                backend.retrieved(&trace_id, &account, &name, u);
                                Ok(Some(data))
                            }
                            Err(s) => Err(s),
                        }
                    }
                };
                (u, content)
            }
        }))
        .buffered(parallel);
        while let Some((u, content)) = contents.next().await {
            let content = match content {
                Ok(c) => c,
                Err(s) if s.kind == ErrorKind::NotFound => {
                    expunge_issued |= !uid;
                    continue;
                }
                Err(s) => return Ok(store_no("FETCH", &s)),
            };
            let Some(sel) = &self.selected else { break };
            let (Some(seq), Some(m)) = (sel.view.seq_of(u), sel.view.by_uid(u)) else {
                continue;
            };
            let parsed = content
                .as_deref()
                .and_then(|c| MessageParser::default().parse(c));
            fetch::render(
                &mut out.buf,
                seq,
                m,
                &items,
                parsed.as_ref(),
                seen_set.contains(&u),
                condstore,
            );
            out.spill().await?;
        }
        drop(contents);
        self.sync(out, uid, uid).await;
        if expunge_issued {
            no("[EXPUNGEISSUED] some of the requested messages no longer exist")
        } else {
            ok("FETCH completed")
        }
    }
}
