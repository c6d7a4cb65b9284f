//! SELECT and EXAMINE (RFC 3501 §6.3.1-2, CONDSTORE's HIGHESTMODSEQ), CLOSE and UNSELECT
//! (RFC 3691): entering and leaving the selected state.

use std::io;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;

use super::{bad, mailbox_or_no, no, ok, store_no, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Selected, Session, Sink};
use crate::imap::view::View;

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn select(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        params: &[SelectParameter],
        read_only: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        // Whatever happens, the previous mailbox is no longer selected (RFC 3501 §6.3.1).
        self.selected = None;
        let name = mailbox_or_no!(mailbox);
        for p in params {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } => return bad("QRESYNC is not offered"),
            }
        }
        let listed = match self.backend.list_messages(account, &name, None).await {
            Ok(l) => l,
            Err(s) => return Ok(store_no("SELECT", &s)),
        };
        let Some(mb) = listed.mailbox else {
            return no("[NONEXISTENT] no such mailbox");
        };
        let view = View::new(
            listed.messages,
            mb.uid_validity,
            mb.uid_next,
            mb.highest_modseq,
            read_only,
        );
        let feed = self.backend.watch(account, &name, mb.highest_modseq);
        self.selected = Some(Selected {
            name,
            mailbox_id: mb.id,
            gone: None,
            view,
            feed,
            feed_modseq: mb.highest_modseq,
        });
        self.settle_recent(mb.recent_uid).await;
        let Some(sel) = self.selected.as_mut() else {
            return no("[NONEXISTENT] no such mailbox");
        };
        let view = &mut sel.view;
        view.write_flags(&mut out.buf);
        out.line(&format!("* {} EXISTS", view.exists()));
        out.line(&format!("* {} RECENT", view.recent()));
        view.recent_announced();
        if let Some(first) = view
            .messages()
            .iter()
            .position(|m| !m.flags.iter().any(|f| f == "\\Seen"))
        {
            out.line(&format!("* OK [UNSEEN {}] first unseen", first + 1));
        }
        out.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.uid_validity
        ));
        out.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            view.uid_next
        ));
        out.line(&format!(
            "* OK [HIGHESTMODSEQ {}] highest",
            view.highest_modseq.max(1)
        ));
        if read_only {
            ok("[READ-ONLY] EXAMINE completed")
        } else {
            ok("[READ-WRITE] SELECT completed")
        }
    }

    pub(crate) async fn close(&mut self, account: &str) -> io::Result<Done> {
        let (name, read_only) = self.sel_info();
        if !read_only {
            // CLOSE expunges silently (RFC 3501 §6.4.2).
            let _ = self.backend.expunge(account, &name, None).await;
        }
        self.selected = None;
        ok("CLOSE completed")
    }

    pub(crate) fn unselect(&mut self) -> io::Result<Done> {
        self.selected = None;
        ok("UNSELECT completed")
    }
}
