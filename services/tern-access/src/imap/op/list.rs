//! LIST and LSUB (RFC 3501 §6.3.8-9, with CHILDREN and SPECIAL-USE attributes).

use std::io;

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

use super::{bad, ok, store_no, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Session, Sink};
use crate::imap::utf7;
use crate::imap::wire::{list_matches, mailbox_name};

/// Longest LIST/LSUB pattern (matching costs its length times each name's).
const MAX_PATTERN: usize = 1024;

impl<B: ImapBackend> Session<B> {
    pub(crate) async fn list(
        &mut self,
        account: &str,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let what = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => match utf7::decode(o.as_ref()) {
                Ok(r) => r,
                Err(e) => return bad(format!("reference is not valid modified UTF-7: {e}")),
            },
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        if pattern_bytes.len() > MAX_PATTERN {
            return bad("the pattern is too long");
        }
        let pattern = match utf7::decode(pattern_bytes) {
            Ok(p) => p,
            Err(e) => return bad(format!("pattern is not valid modified UTF-7: {e}")),
        };
        if pattern.is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            out.line("* LIST (\\Noselect) \"/\" \"\"");
            return ok("LIST completed");
        }
        let full = format!("{reference}{pattern}");
        let all = match self.backend.list_mailboxes(account).await {
            Ok(a) => a,
            Err(s) => return Ok(store_no(what, &s)),
        };
        let has_children = |name: &str| {
            let prefix = format!("{name}/");
            all.iter().any(|m| m.name.starts_with(&prefix))
        };
        let mut shown: Vec<(String, Vec<&str>)> = Vec::new();
        for m in &all {
            if lsub && !m.subscribed {
                continue;
            }
            if list_matches(&full, &m.name) {
                let mut attrs = vec![if has_children(&m.name) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                }];
                if !m.special_use.is_empty() && !lsub {
                    attrs.push(m.special_use.as_str());
                }
                shown.push((m.name.clone(), attrs));
            } else if lsub && full.ends_with('%') {
                // A subscribed child under `%` shows its unsubscribed parent as \Noselect.
                let mut parent = m.name.as_str();
                while let Some(i) = parent.rfind('/') {
                    parent = &parent[..i];
                    if list_matches(&full, parent)
                        && !all.iter().any(|x| x.name == parent && x.subscribed)
                        && !shown.iter().any(|(n, _)| n == parent)
                    {
                        shown.push((parent.to_string(), vec!["\\Noselect"]));
                    }
                }
            }
        }
        for (name, attrs) in shown {
            let mut line = format!("* {what} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            mailbox_name(&mut line, &name);
            out.buf.extend_from_slice(&line);
            out.buf.extend_from_slice(b"\r\n");
        }
        ok(format!("{what} completed"))
    }
}
