//! STATUS (RFC 3501 §6.3.10, with CONDSTORE's HIGHESTMODSEQ and RFC 9208's DELETED).

use std::io;

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;

use super::{bad, mailbox_or_no, ok, store_no, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Session, Sink};
use crate::imap::wire::mailbox_name;

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn status(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let name = mailbox_or_no!(mailbox);
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            // STATUS must not run ahead of what the session was told (EXISTS, UIDNEXT).
            self.sync(out, true, false).await;
        }
        if items.contains(&StatusDataItemName::HighestModSeq) {
            self.condstore = true;
        }
        let mb = match self.backend.get_mailbox(account, &name).await {
            Ok(m) => m,
            Err(s) => return Ok(store_no("STATUS", &s)),
        };
        let mut parts = Vec::new();
        for i in items {
            parts.push(match i {
                StatusDataItemName::Messages => format!("MESSAGES {}", mb.messages),
                // Not yet claimed by any session (RFC 3501 §6.3.10).
                StatusDataItemName::Recent => format!("RECENT {}", mb.recent),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", mb.uid_next),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", mb.uid_validity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", mb.unseen),
                StatusDataItemName::Deleted => format!("DELETED {}", mb.deleted),
                StatusDataItemName::DeletedStorage => return bad("DELETED-STORAGE is not offered"),
                StatusDataItemName::HighestModSeq => {
                    format!("HIGHESTMODSEQ {}", mb.highest_modseq.max(1))
                }
            });
        }
        let mut line = b"* STATUS ".to_vec();
        mailbox_name(&mut line, &name);
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        out.buf.extend_from_slice(&line);
        ok("STATUS completed")
    }
}
