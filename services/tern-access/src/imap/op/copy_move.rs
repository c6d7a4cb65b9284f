//! COPY, MOVE (RFC 6851) and their UID forms, with UIDPLUS's COPYUID.

use std::io;

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use super::{bad, mailbox_or_no, no, ok, store_no, Done};
use crate::imap::backend::{ErrorKind, ImapBackend};
use crate::imap::sequence::compact;
use crate::imap::session::{Session, Sink};

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn copy(
        &mut self,
        account: &str,
        set: &SequenceSet,
        target: &Mailbox<'_>,
        uid: bool,
        moving: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let what = if moving { "MOVE" } else { "COPY" };
        let uids = match self.resolve(set, uid) {
            Ok(u) => u,
            Err(e) => return bad(e),
        };
        let target = mailbox_or_no!(target);
        let (name, read_only) = self.sel_info();
        if moving && read_only {
            return no("[READ-ONLY] the mailbox is read-only");
        }
        if uids.is_empty() {
            self.sync(out, uid, uid).await;
            return ok(format!("{what} completed"));
        }
        let resp = match self
            .backend
            .copy(account, &name, &uids, &target, moving)
            .await
        {
            Ok(r) => r,
            Err(s) if s.kind == ErrorKind::NotFound => {
                return no("[TRYCREATE] no such target mailbox");
            }
            Err(s) => return Ok(store_no(what, &s)),
        };
        let code = if resp.source_uids.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {} {} {}] ",
                resp.uid_validity,
                compact(&resp.source_uids),
                compact(&resp.target_uids)
            )
        };
        if let Some(sel) = self.selected.as_mut() {
            if target == name {
                sel.view.added_elsewhere(&resp.target_uids, 0);
            }
            if moving {
                // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
                if !code.is_empty() {
                    out.line(&format!("* OK {}moved", code));
                }
                sel.view.remove(&resp.source_uids, &mut out.buf);
            }
        }
        self.sync(out, true, uid).await;
        if moving {
            ok(format!("{what} completed"))
        } else {
            ok(format!("{code}{what} completed"))
        }
    }
}
