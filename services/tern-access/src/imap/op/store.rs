//! STORE and UID STORE (RFC 3501 §6.4.6, CONDSTORE's UNCHANGEDSINCE and MODIFIED).

use std::io;

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use super::{bad, flag_name, no, ok, store_no, Done};
use crate::imap::backend::{FlagChange, FlagMode, ImapBackend};
use crate::imap::sequence::compact;
use crate::imap::session::{Session, Sink};

/// A STORE command's arguments.
pub(crate) struct StoreRequest<'a> {
    pub(crate) set: &'a SequenceSet,
    pub(crate) kind: StoreType,
    pub(crate) response: StoreResponse,
    pub(crate) flags: &'a [Flag<'a>],
    pub(crate) uid: bool,
    pub(crate) modifiers: &'a [StoreModifier],
}

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn store(
        &mut self,
        account: &str,
        request: StoreRequest<'_>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let (sequence_set, uid) = (request.set, request.uid);
        let mut unchanged_since = 0;
        for m in request.modifiers {
            let StoreModifier::UnchangedSince(v) = m;
            self.condstore = true;
            if *v == 0 {
                // No message has a modseq of 0 or less: every one fails the
                // condition (RFC 7162 §3.1.3).
                let (_, read_only) = self.sel_info();
                if read_only {
                    return no("[READ-ONLY] the mailbox is read-only");
                }
                let uids = match self.resolve(sequence_set, uid) {
                    Ok(u) => u,
                    Err(e) => return bad(e),
                };
                let shown: Vec<u32> = if uid {
                    uids
                } else {
                    let Some(sel) = &self.selected else {
                        return bad("no mailbox selected");
                    };
                    uids.iter().filter_map(|u| sel.view.seq_of(*u)).collect()
                };
                self.sync(out, uid, uid).await;
                return ok(format!(
                    "[MODIFIED {}] conditional STORE failed",
                    compact(&shown)
                ));
            }
            unchanged_since = *v;
        }
        self.store_flags(account, request, unchanged_since, out)
            .await
    }

    async fn store_flags(
        &mut self,
        account: &str,
        request: StoreRequest<'_>,
        unchanged_since: u64,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let StoreRequest {
            set,
            kind,
            response,
            flags,
            uid,
            ..
        } = request;
        let uids = match self.resolve(set, uid) {
            Ok(u) => u,
            Err(e) => return bad(e),
        };
        let (name, read_only) = self.sel_info();
        if read_only {
            return no("[READ-ONLY] the mailbox is read-only");
        }
        if flags.iter().any(|f| matches!(f, Flag::Extension(_))) {
            return bad("unknown system flag");
        }
        if uids.is_empty() {
            self.sync(out, uid, uid).await;
            return ok("STORE completed");
        }
        let change = FlagChange {
            mode: match kind {
                StoreType::Replace => FlagMode::Replace,
                StoreType::Add => FlagMode::Add,
                StoreType::Remove => FlagMode::Remove,
            },
            flags: flags.iter().map(flag_name).collect(),
            unchanged_since,
        };
        let resp = match self
            .backend
            .store_flags(account, &name, &uids, change)
            .await
        {
            Ok(r) => r,
            Err(s) => return Ok(store_no("STORE", &s)),
        };
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return bad("no mailbox selected");
        };
        for rec in &resp.updated {
            sel.view.set_flags(rec.uid, rec.flags.clone(), rec.modseq);
        }
        // A keyword new to the mailbox is announced in FLAGS before a FETCH names it.
        sel.view
            .announce_keywords(resp.updated.iter().flat_map(|r| &r.flags), &mut out.buf);
        let silent = matches!(response, StoreResponse::Silent);
        for u in &uids {
            if resp.modified.contains(u) || sel.view.is_expunged(*u) {
                continue;
            }
            let changed = resp.updated.iter().any(|r| r.uid == *u);
            // .SILENT skips the FETCH, except that CONDSTORE wants the new MODSEQ of what
            // changed under UNCHANGEDSINCE (RFC 7162 §3.1.3).
            if silent && !(changed && unchanged_since > 0) {
                continue;
            }
            if let (Some(seq), Some(m)) = (sel.view.seq_of(*u), sel.view.by_uid(*u)) {
                let mut line = format!("* {seq} FETCH (").into_bytes();
                if uid || condstore {
                    line.extend_from_slice(format!("UID {u} ").as_bytes());
                }
                if condstore {
                    line.extend_from_slice(format!("MODSEQ ({}) ", m.modseq).as_bytes());
                }
                line.extend_from_slice(b"FLAGS ");
                m.write_flags(&mut line);
                line.extend_from_slice(b")\r\n");
                out.buf.extend_from_slice(&line);
            }
        }
        self.sync(out, uid, uid).await;
        if !resp.modified.is_empty() {
            let mut m = resp.modified.clone();
            m.sort_unstable();
            let shown: Vec<u32> = if uid {
                m
            } else {
                let Some(sel) = &self.selected else {
                    return bad("no mailbox selected");
                };
                m.iter().filter_map(|u| sel.view.seq_of(*u)).collect()
            };
            return ok(format!(
                "[MODIFIED {}] conditional STORE failed for some messages",
                compact(&shown)
            ));
        }
        ok("STORE completed")
    }
}
