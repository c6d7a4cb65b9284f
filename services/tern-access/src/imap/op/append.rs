//! APPEND (RFC 3501 §6.3.11, UIDPLUS's APPENDUID).

use std::io;

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

use super::{bad, flag_name, mailbox_or_no, no, ok, store_no, Done};
use crate::imap::backend::{ErrorKind, ImapBackend, NewMessage};
use crate::imap::session::{Session, Sink};

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn append(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        // The literal's bytes are moved out of the command, not copied.
        let data = match message {
            LiteralOrLiteral8::Literal(l) => l.into_inner().into_owned(),
            LiteralOrLiteral8::Literal8(l) => l.data.into_owned(),
        };
        let date = date.map(|d| d.as_ref().timestamp());
        let name = mailbox_or_no!(mailbox);
        if data.is_empty() {
            return no("[CANNOT] an empty message cannot be appended");
        }
        if flags.iter().any(|f| matches!(f, Flag::Extension(_))) {
            // `\Recent` and unknown system flags cannot be set (RFC 3501 §2.3.2).
            return bad("unknown or read-only system flag");
        }
        let message = NewMessage {
            flags: flags.iter().map(flag_name).collect(),
            internal_date: date.unwrap_or(0),
            data,
        };
        match self.backend.append(account, &name, message).await {
            Ok(r) => {
                if let Some(sel) = self.selected.as_mut().filter(|s| s.name == name) {
                    sel.view.added_elsewhere(&[r.uid], 0);
                }
                self.sync(out, true, false).await;
                ok(format!(
                    "[APPENDUID {} {}] APPEND completed",
                    r.uid_validity, r.uid
                ))
            }
            Err(s) if s.kind == ErrorKind::NotFound => no("[TRYCREATE] no such mailbox"),
            Err(s) => Ok(store_no("APPEND", &s)),
        }
    }
}
