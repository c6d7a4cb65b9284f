//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (UIDPLUS, RFC 4315 §2.1).

use std::io;

use imap_codec::imap_types::sequence::SequenceSet;

use super::{bad, no, ok, store_no, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Session, Sink};

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn uid_expunge(
        &mut self,
        account: &str,
        set: &SequenceSet,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        match self.resolve(set, true) {
            Ok(u) => self.expunge(account, Some(u), out).await,
            Err(e) => bad(e),
        }
    }

    pub(crate) async fn expunge(
        &mut self,
        account: &str,
        uids: Option<Vec<u32>>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let (name, read_only) = self.sel_info();
        if read_only {
            return no("[READ-ONLY] the mailbox is read-only");
        }
        if uids.as_ref().is_some_and(|u| u.is_empty()) {
            self.sync(out, true, false).await;
            return ok("EXPUNGE completed");
        }
        match self.backend.expunge(account, &name, uids.as_deref()).await {
            Ok(r) => {
                if let Some(sel) = self.selected.as_mut() {
                    sel.view.remove(&r.uids, &mut out.buf);
                    sel.view.highest_modseq = sel.view.highest_modseq.max(r.highest_modseq);
                }
                self.sync(out, true, false).await;
                ok("EXPUNGE completed")
            }
            Err(s) => Ok(store_no("EXPUNGE", &s)),
        }
    }
}
