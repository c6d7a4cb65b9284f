//! CREATE, DELETE, RENAME (RFC 3501 §6.3.3-5), SUBSCRIBE and UNSUBSCRIBE (§6.3.6-7).

use std::io;

use imap_codec::imap_types::mailbox::Mailbox;

use super::{bad, mailbox_arg, mailbox_or_no, no, ok, store_no, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::Session;

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn create(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
    ) -> io::Result<Done> {
        let name = mailbox_or_no!(mailbox);
        // A trailing delimiter declares the intent to create children (RFC 3501 §6.3.3).
        let name = name.trim_end_matches('/').to_string();
        if name.eq_ignore_ascii_case("INBOX") {
            return no("[ALREADYEXISTS] INBOX always exists");
        }
        match self.backend.create_mailbox(account, &name).await {
            Ok(()) => ok("CREATE completed"),
            Err(s) => Ok(store_no("CREATE", &s)),
        }
    }

    pub(crate) async fn delete(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
    ) -> io::Result<Done> {
        let name = mailbox_or_no!(mailbox);
        if name == "INBOX" {
            return no("[CANNOT] INBOX cannot be deleted");
        }
        match self.backend.delete_mailbox(account, &name).await {
            Ok(()) => {
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    // Its own selected mailbox: OK, then BYE (see `handle`).
                    self.selected = None;
                    self.bye_after_reply = true;
                }
                ok("DELETE completed")
            }
            Err(s) => Ok(store_no("DELETE", &s)),
        }
    }

    pub(crate) async fn rename(
        &mut self,
        account: &str,
        from: &Mailbox<'_>,
        to: &Mailbox<'_>,
    ) -> io::Result<Done> {
        let (from, to) = match (mailbox_arg(from), mailbox_arg(to)) {
            (Ok(f), Ok(t)) => (f, t.trim_end_matches('/').to_string()),
            (Err(e), _) | (_, Err(e)) => return bad(e),
        };
        match self.backend.rename_mailbox(account, &from, &to).await {
            Ok(()) => {
                // The selected mailbox keeps being selected under its new name (INBOX
                // is the exception: renaming it moves its messages to a new mailbox).
                if let Some(sel) = self
                    .selected
                    .as_mut()
                    .filter(|s| s.name == from && from != "INBOX")
                {
                    sel.name = to;
                }
                ok("RENAME completed")
            }
            Err(s) => Ok(store_no("RENAME", &s)),
        }
    }

    pub(crate) async fn subscribe(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        on: bool,
    ) -> io::Result<Done> {
        let name = mailbox_or_no!(mailbox);
        match self.backend.subscribe(account, &name, on).await {
            Ok(()) => ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(s) => Ok(store_no(if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" }, &s)),
        }
    }
}
