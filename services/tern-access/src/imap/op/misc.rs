//! The commands without store work: CAPABILITY, NOOP, CHECK, LOGOUT, ID (RFC 2971), ENABLE
//! (RFC 5161), NAMESPACE (RFC 2342) and IDLE (RFC 2177; the connection loop waits for DONE).

use std::io;

use imap_codec::imap_types::extensions::enable::CapabilityEnable;

use super::{bad, ok, Done};
use crate::imap::backend::ImapBackend;
use crate::imap::session::{Next, Session, Sink};

impl<B: ImapBackend> Session<B> {
    pub(crate) fn plaintext_ok(&self) -> bool {
        self.tls || self.settings.plaintext_auth
    }

    /// The capability list for the current state (RFC 3501 §7.2.1).
    pub fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"];
        if self.account.is_none() {
            if !self.tls && self.settings.starttls {
                caps.push("STARTTLS");
            }
            if self.plaintext_ok() {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        } else {
            caps.extend([
                "NAMESPACE",
                "UIDPLUS",
                "MOVE",
                "UNSELECT",
                "CHILDREN",
                "SPECIAL-USE",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "CONDSTORE",
            ]);
        }
        caps.join(" ")
    }

    pub(crate) fn capability(&self, out: &mut Sink<'_>) -> io::Result<Done> {
        out.line(&format!("* CAPABILITY {}", self.capabilities()));
        ok("CAPABILITY completed")
    }

    pub(crate) async fn noop(&mut self, out: &mut Sink<'_>) -> io::Result<Done> {
        self.catch_up().await;
        self.sync(out, true, false).await;
        ok("NOOP completed")
    }

    pub(crate) async fn check(&mut self, out: &mut Sink<'_>) -> io::Result<Done> {
        if self.selected.is_none() {
            return bad("no mailbox selected");
        }
        self.catch_up().await;
        self.sync(out, true, false).await;
        ok("CHECK completed")
    }

    pub(crate) fn logout(&mut self, out: &mut Sink<'_>, next: &mut Next) -> io::Result<Done> {
        out.line("* BYE Tern IMAP logging out");
        self.selected = None;
        self.logged_out = true;
        *next = Next::Close;
        ok("LOGOUT completed")
    }

    pub(crate) fn id(&self, out: &mut Sink<'_>) -> io::Result<Done> {
        out.line("* ID (\"name\" \"Tern\" \"vendor\" \"Tern\")");
        ok("ID completed")
    }

    pub(crate) fn enable(
        &mut self,
        capabilities: &[CapabilityEnable<'_>],
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        if self.selected.is_some() {
            // RFC 5161 §3.1: only before a mailbox is selected.
            return bad("ENABLE is only valid before SELECT");
        }
        let mut enabled = Vec::new();
        for c in capabilities {
            if matches!(c, CapabilityEnable::CondStore) && !self.condstore {
                self.condstore = true;
                enabled.push("CONDSTORE");
            }
        }
        out.line(format!("* ENABLED {}", enabled.join(" ")).trim_end());
        ok("ENABLE completed")
    }

    pub(crate) fn namespace(&self, out: &mut Sink<'_>) -> io::Result<Done> {
        out.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
        ok("NAMESPACE completed")
    }

    pub(crate) fn idle(&self, tag: &str, out: &mut Sink<'_>, next: &mut Next) -> io::Result<Done> {
        out.line("+ idling");
        *next = Next::Idle(tag.to_string());
        // The tagged reply comes when DONE arrives ([`Session::idle_done`]).
        Ok(Done::Later)
    }

    /// DONE after IDLE.
    pub async fn idle_done(&mut self, tag: &str, out: &mut Sink<'_>) {
        self.sync(out, true, false).await;
        out.line(&format!("{tag} OK IDLE terminated"));
    }
}
