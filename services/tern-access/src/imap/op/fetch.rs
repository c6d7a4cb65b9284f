//! FETCH and UID FETCH (RFC 3501 §6.4.5, CONDSTORE's CHANGEDSINCE and MODSEQ): the
//! items come from [`crate::imap::fetch`]; this reads what they need from the store, a few
//! messages at a time, and sets \Seen first when a body is read.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::sequence::SequenceSet;
use mail_parser::MessageParser;

use super::{bad, no, ok, store_no, Done};
use crate::imap::backend::{
    ByteRange, ErrorKind, FlagChange, FlagMode, ImapBackend, MessageRef, StoreError, StoreResult,
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

/// Messages whose headers one FETCH asks the store for at a time: a window's headers are
/// all a session holds (a header-only answer is at most 8 MiB, and 64 KiB a message).
const HEADER_WINDOW: usize = 1000;

/// One content read's outcome for a message of a FETCH.
type Read = (u32, StoreResult<Option<Vec<u8>>>);

/// The header sections of a window of `uids`, with CRLF line endings, cut as the whole
/// message would be (a bare CR ends a line too, so the cut is made again after the line
/// endings are made canonical); a message whose header is too large for a header read is
/// read whole, and a message that is gone is NotFound.
async fn header_window<B: ImapBackend>(
    backend: &B,
    account: &str,
    mailbox: &str,
    uid_validity: u32,
    uids: &[u32],
) -> Vec<Read> {
    let read = match backend
        .read_headers(account, mailbox, uid_validity, uids)
        .await
    {
        Ok(r) => r,
        Err(s) => return vec![(uids.first().copied().unwrap_or(0), Err(s))],
    };
    let mut found: HashMap<u32, Vec<u8>> = read.found.into_iter().collect();
    let mut out = Vec::with_capacity(uids.len());
    for &u in uids {
        let header = if let Some(h) = found.remove(&u) {
            if has_bare_lf(&h) {
                Ok(tern_mail::header::section(&tern_mail::lines::canonical(&h)).to_vec())
            } else {
                Ok(h)
            }
        } else if read.too_large.contains(&u) {
            let message = MessageRef {
                mailbox,
                uid: u,
                uid_validity,
            };
            read_content(backend, account, message, ByteRange::WHOLE)
                .await
                .map(|(data, _)| tern_mail::header::section(&data).to_vec())
        } else {
            Err(StoreError::new(ErrorKind::NotFound, "no such message"))
        };
        out.push((u, header.map(Some)));
    }
    out
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
        let seen_set: std::collections::HashSet<u32> = seen_set.into_iter().collect();
        let condstore = self.condstore;
        let mut contents: Pin<Box<dyn Stream<Item = Read> + Send + '_>> = if need == Need::Header {
            // Header-only items: one store request per window of messages, no body read.
            let windows: Vec<Vec<u32>> =
                wanted.chunks(HEADER_WINDOW).map(<[u32]>::to_vec).collect();
            let name = name.clone();
            Box::pin(
                futures::stream::iter(windows)
                    .then(move |window| {
                        let name = name.clone();
                        async move {
                            header_window(backend, account, &name, uid_validity, &window).await
                        }
                    })
                    .flat_map(futures::stream::iter),
            )
        } else {
            Box::pin(
                futures::stream::iter(wanted.into_iter().map(|u| {
                    let (account, name) = (account.to_string(), name.clone());
                    async move {
                        let message = MessageRef {
                            mailbox: &name,
                            uid: u,
                            uid_validity,
                        };
                        let content = match need {
                            Need::Everything => {
                                match read_content(backend, &account, message, ByteRange::WHOLE)
                                    .await
                                {
                                    Ok((data, trace_id)) => {
                                        // The whole message goes to the client: a retrieval.
                                        backend.retrieved(&trace_id, &account, &name, u);
                                        Ok(Some(data))
                                    }
                                    Err(s) => Err(s),
                                }
                            }
                            _ => Ok(None),
                        };
                        (u, content)
                    }
                }))
                .buffered(parallel),
            )
        };
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
