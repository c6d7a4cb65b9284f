//! One IMAP connection's state machine (RFC 3501 §3): not authenticated, authenticated,
//! selected, logout. This file holds the connection's state, the dispatch of each command
//! to its handler in [`super::op`] (one module per command family) and the untagged
//! updates ([`Session::sync`]); the store is reached through an [`ImapBackend`].
//!
//! The session holds only its view (account, selected mailbox, sequence map, modseq); every
//! change goes to the store and is acknowledged only after the store committed it. Changes
//! made elsewhere (another session, another access node, SMTP delivery) arrive through the
//! store's Watch stream for the selected mailbox and are announced when RFC 3501 allows
//! ([`View::announce`]).

use std::io;

use imap_codec::imap_types::command::{Command, CommandBody};
use tern_net::connection::Connection;

use super::backend::{Change, ChangeFeed, ChangeKind, ImapBackend};
use super::op::{bad, Done};
use super::view::View;

/// Output buffered before it is written mid-command (large FETCH responses).
const SPILL: usize = 256 << 10;

/// What the connection loop does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Pause (after a failed authentication), then read the next command.
    Delay,
    /// Close the connection (LOGOUT, too many failures).
    Close,
    /// Start TLS, then read the next command.
    StartTls,
    /// Enter IDLE for this tag: the loop waits for DONE and for changes.
    Idle(String),
    /// AUTHENTICATE without an initial response: send `+ ` and hand the next line to
    /// [`Session::auth_response`].
    AuthContinue(String),
}

/// Output for one command. The sink holds the connection's own reply buffer while it lives
/// (after any replies already queued for a pipelined batch) and gives it back when dropped,
/// so replies are written once into the buffer the connection sends, never copied.
pub struct Sink<'c> {
    /// The connection's reply buffer, on loan.
    pub buf: Vec<u8>,
    /// Where this sink's output starts in `buf` (replies queued before it come first).
    start: usize,
    conn: &'c mut Connection,
}

impl<'c> Sink<'c> {
    /// Output going to `conn`.
    pub fn new(conn: &'c mut Connection) -> Self {
        let buf = std::mem::take(conn.out());
        Self {
            start: buf.len(),
            buf,
            conn,
        }
    }

    /// What this sink has been given (not replies queued before it).
    pub fn written(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Sends what is buffered now, under the connection's write time-out, and keeps the
    /// (emptied) buffer.
    async fn send_now(&mut self) -> io::Result<()> {
        std::mem::swap(self.conn.out(), &mut self.buf);
        let sent = self.conn.flush().await;
        std::mem::swap(self.conn.out(), &mut self.buf);
        self.start = 0;
        sent
    }

    /// Writes the output out once it is large (a big FETCH), so one command's replies are
    /// not all held in memory.
    pub(crate) async fn spill(&mut self) -> io::Result<()> {
        if self.buf.len() >= SPILL {
            self.send_now().await?;
        }
        Ok(())
    }

    /// Writes everything buffered and flushes.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.send_now().await
    }

    pub(crate) fn line(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }
}

impl Drop for Sink<'_> {
    /// Gives the buffer back: what is in it goes out with the connection's next flush.
    fn drop(&mut self) {
        std::mem::swap(self.conn.out(), &mut self.buf);
    }
}

/// What a session needs to know about its listener.
#[derive(Debug, Clone)]
pub struct Settings {
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Plain-text authentication allowed (development, loopback-only listeners).
    pub plaintext_auth: bool,
    /// Wrong passwords before closing.
    pub max_auth_failures: u32,
}

/// The selected mailbox.
/// How long NOOP and CHECK wait for the change feed to catch up with the store.
const CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct Selected {
    /// Its name in the store (UTF-8).
    pub(crate) name: String,
    /// Its id in the store: a mailbox created later under the same name is another one.
    pub(crate) mailbox_id: u64,
    /// Deleted (by anyone) while selected, or its feed lost: the session ends with BYE and
    /// this text, as Dovecot does for a deleted mailbox.
    pub(crate) gone: Option<&'static str>,
    pub(crate) view: View,
    /// The store's changes of this mailbox; dropping it stops the feed.
    pub(crate) feed: ChangeFeed,
    /// The highest modseq the feed has delivered (changes of any kind).
    pub(crate) feed_modseq: u64,
}

/// One connection's session.
pub struct Session<B> {
    pub(crate) backend: B,
    pub(crate) settings: Settings,
    pub(crate) tls: bool,
    pub(crate) account: Option<String>,
    pub(crate) selected: Option<Selected>,
    pub(crate) condstore: bool,
    pub(crate) auth_failures: u32,
    pub(crate) logged_out: bool,
    /// This session deleted its selected mailbox: BYE follows the tagged OK.
    pub(crate) bye_after_reply: bool,
}

impl<B: ImapBackend> Session<B> {
    /// A new session over `backend`; `tls` when the connection is already encrypted (IMAPS).
    pub fn new(backend: B, settings: Settings, tls: bool) -> Self {
        Self {
            backend,
            settings,
            tls,
            account: None,
            selected: None,
            condstore: false,
            auth_failures: 0,
            logged_out: false,
            bye_after_reply: false,
        }
    }

    /// The greeting.
    pub fn greeting(&self) -> String {
        format!(
            "* OK [CAPABILITY {}] Tern IMAP ready\r\n",
            self.capabilities()
        )
    }

    /// Called once TLS is up (STARTTLS).
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// Whether a user is logged in.
    pub fn authenticated(&self) -> bool {
        self.account.is_some()
    }

    /// Ends the session without LOGOUT (autologout).
    pub fn force_logout(&mut self) {
        self.selected = None;
        self.logged_out = true;
    }

    /// Whether LOGOUT ran.
    pub fn logged_out(&self) -> bool {
        self.logged_out
    }

    /// Whether the selected mailbox was deleted (by this session or any other).
    pub fn mailbox_gone(&self) -> Option<&'static str> {
        self.selected.as_ref().and_then(|s| s.gone)
    }

    /// Runs one command, writing its untagged responses and its tagged result.
    pub async fn handle(&mut self, cmd: Command<'static>, out: &mut Sink<'_>) -> io::Result<Next> {
        let tag = cmd.tag.inner().to_string();
        let mut next = Next::Continue;
        let name = cmd.body.name();
        let done = self.dispatch(&tag, cmd.body, out, &mut next).await?;
        if let Some(why) = self.mailbox_gone() {
            // The session cannot go on without its mailbox: BYE instead of the tagged
            // reply, as Dovecot does (RFC 3501 §7.1.5 lets BYE come at any time).
            out.line(&format!("* BYE {why}"));
            self.force_logout();
            return Ok(Next::Close);
        }
        match done {
            Done::Ok(text) => {
                crate::metrics::command_answered("imap", "ok");
                out.line(&format!("{tag} OK {text}"));
            }
            Done::No(text) => {
                crate::metrics::command_answered("imap", "no");
                out.line(&format!("{tag} NO {text}"));
            }
            Done::Bad(text) => {
                crate::metrics::command_answered("imap", "bad");
                crate::metrics::command_failed("imap");
                out.line(&format!("{tag} BAD {name}: {text}"));
            }
            Done::Later => {}
        }
        self.bye_if_deleted(out, &mut next);
        Ok(next)
    }

    /// After the tagged OK of a DELETE of the selected mailbox: BYE and close.
    pub(crate) fn bye_if_deleted(&mut self, out: &mut Sink<'_>, next: &mut Next) {
        if std::mem::take(&mut self.bye_after_reply) {
            out.line("* BYE the selected mailbox was deleted");
            self.force_logout();
            *next = Next::Close;
        }
    }

    /// Sends the command to its handler, by state.
    async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody<'static>,
        out: &mut Sink<'_>,
        next: &mut Next,
    ) -> io::Result<Done> {
        // Any state.
        match body {
            CommandBody::Capability => return self.capability(out),
            CommandBody::Noop => return self.noop(out).await,
            CommandBody::Check => return self.check(out).await,
            CommandBody::Logout => return self.logout(out, next),
            CommandBody::Id { .. } => return self.id(out),
            _ => {}
        }
        let Some(account) = self.account.clone() else {
            return self.not_authenticated(tag, body, next).await;
        };
        // Authenticated or selected.
        match body {
            CommandBody::StartTLS
            | CommandBody::Login { .. }
            | CommandBody::Authenticate { .. } => bad("already authenticated"),
            CommandBody::Enable { capabilities } => self.enable(capabilities.as_ref(), out),
            CommandBody::Namespace => self.namespace(out),
            CommandBody::Select {
                mailbox,
                parameters,
            } => {
                self.select(&account, &mailbox, &parameters, false, out)
                    .await
            }
            CommandBody::Examine {
                mailbox,
                parameters,
            } => {
                self.select(&account, &mailbox, &parameters, true, out)
                    .await
            }
            CommandBody::Create { mailbox } => self.create(&account, &mailbox).await,
            CommandBody::Delete { mailbox } => self.delete(&account, &mailbox).await,
            CommandBody::Rename { from, to } => self.rename(&account, &from, &to).await,
            CommandBody::Subscribe { mailbox } => self.subscribe(&account, &mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&account, &mailbox, false).await,
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                self.list(&account, &reference, &mailbox_wildcard, false, out)
                    .await
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                self.list(&account, &reference, &mailbox_wildcard, true, out)
                    .await
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&account, &mailbox, &item_names, out).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                self.append(&account, &mailbox, &flags, date, message, out)
                    .await
            }
            CommandBody::GetQuotaRoot { mailbox } => {
                self.get_quota_root(&account, &mailbox, out).await
            }
            CommandBody::GetQuota { root } => self.get_quota(&account, root.as_ref(), out).await,
            CommandBody::SetQuota { .. } => self.set_quota(),
            CommandBody::Idle => self.idle(tag, out, next),
            body => self.selected_command(&account, body, out).await,
        }
    }

    /// The commands of the selected state.
    async fn selected_command(
        &mut self,
        account: &str,
        body: CommandBody<'static>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        if self.selected.is_none() {
            return match body {
                CommandBody::Close
                | CommandBody::Unselect
                | CommandBody::Expunge
                | CommandBody::ExpungeUid { .. }
                | CommandBody::Search { .. }
                | CommandBody::Fetch { .. }
                | CommandBody::Store { .. }
                | CommandBody::Copy { .. }
                | CommandBody::Move { .. } => bad("no mailbox selected"),
                _ => bad("not supported by this server"),
            };
        }
        match body {
            CommandBody::Close => self.close(account).await,
            CommandBody::Unselect => self.unselect(),
            CommandBody::Expunge => self.expunge(account, None, out).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.uid_expunge(account, &sequence_set, out).await
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(account, charset, &criteria, uid, out).await,
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.fetch(
                    account,
                    &sequence_set,
                    &macro_or_item_names,
                    uid,
                    &modifiers,
                    out,
                )
                .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let request = super::op::store::StoreRequest {
                    set: &sequence_set,
                    kind,
                    response,
                    flags: &flags,
                    uid,
                    modifiers: &modifiers,
                };
                self.store(account, request, out).await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(account, &sequence_set, &mailbox, uid, false, out)
                    .await
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(account, &sequence_set, &mailbox, uid, true, out)
                    .await
            }
            _ => bad("not supported by this server"),
        }
    }

    /// Takes in what the change feed delivered, reads the records of new messages, and
    /// writes the untagged responses the current command may carry.
    pub async fn sync(&mut self, out: &mut Sink<'_>, expunge_allowed: bool, with_uid: bool) {
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        while let Ok(c) = sel.feed.changes.try_recv() {
            sel.apply(&c);
        }
        let pending = sel.view.pending_additions();
        if let Some(&highest) = pending.iter().max() {
            // Every UID between the last known one and the highest new one: the feed may lag
            // behind the store's linearizable reads, and a UID committed before ours whose
            // event has not arrived yet must not be skipped for good (UIDs only grow).
            let first = sel.view.last_uid().saturating_add(1);
            let account = self.account.clone().unwrap_or_default();
            let backend = &self.backend;
            // A read-write session claims the new messages' \Recent while it reads them, not
            // after: the claim's Raft write costs no extra round trip on top of the read.
            let claim = async {
                if sel.view.read_only {
                    return None;
                }
                let (name, uid_validity) = (&sel.name, sel.view.uid_validity);
                Some(
                    backend
                        .claim_recent(&account, name, uid_validity, highest)
                        .await,
                )
            };
            let (listed, claimed) = tokio::join!(
                backend.list_messages(&account, &sel.name, Some((first, highest.max(first)))),
                claim
            );
            match listed {
                Ok(l) => {
                    sel.view.add_records(l.messages);
                    // Whatever was not listed was expunged before it could be read.
                    sel.view.drop_pending_additions();
                    match claimed {
                        // Ours: what lay between the marker before the claim and `highest`.
                        Some(Ok(previous)) => sel.view.mark_recent(previous, highest),
                        // Not knowable: recent (RFC 3501 §2.3.2's SHOULD).
                        Some(Err(e)) => {
                            tracing::debug!(error = %e.message, "claiming recent messages failed; showing them as recent");
                            sel.view.mark_recent(0, highest);
                        }
                        // Read-only: whatever no session has claimed yet, without claiming.
                        None => {
                            let marker = l.mailbox.map(|m| m.recent_uid).unwrap_or(0);
                            if let Some((after, up_to)) = sel.view.recent_to_settle(marker) {
                                sel.view.mark_recent(after, up_to);
                            }
                        }
                    }
                }
                // A claim that landed while the read failed is lost to this session: the retry
                // finds the marker past these messages, and none shows as \Recent anywhere.
                // Rare (the store answered one call and not the other), and harmless.
                Err(e) => {
                    tracing::debug!(error = %e.message, "reading new messages failed; retrying at the next command");
                }
            }
        }
        sel.view.announce(
            expunge_allowed,
            with_uid || condstore,
            condstore,
            &mut out.buf,
        );
    }

    /// Settles \Recent for the selected mailbox's messages above `marker` (its recent marker
    /// as last read) that this session has not settled yet: a read-write session claims them
    /// in the store, and the ones its claim won are recent here; a read-only one (EXAMINE)
    /// claims nothing and shows everything above the marker as recent. When the store cannot
    /// be asked, the messages count as recent (RFC 3501 §2.3.2: if it cannot be determined
    /// whether this session is the first to be told, the message SHOULD be considered recent).
    pub async fn settle_recent(&mut self, marker: u32) {
        let account = self.account.clone().unwrap_or_default();
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let Some((after, up_to)) = sel.view.recent_to_settle(marker) else {
            return;
        };
        let after = if sel.view.read_only {
            after
        } else {
            match self
                .backend
                .claim_recent(&account, &sel.name, sel.view.uid_validity, up_to)
                .await
            {
                Ok(previous) => previous.max(after),
                Err(e) => {
                    tracing::debug!(error = %e.message, "claiming recent messages failed; showing them as recent");
                    after
                }
            }
        };
        sel.view.mark_recent(after, up_to);
    }

    /// Before NOOP and CHECK report changes: waits, at most [`CATCH_UP_LIMIT`], until the
    /// change feed has delivered every change the store committed to the selected mailbox
    /// before now (its HIGHESTMODSEQ, read linearizably). The feed follows the store a
    /// moment behind; without this, an EXPUNGE another session has already seen answered
    /// could come a command late.
    pub async fn catch_up(&mut self) {
        let account = self.account.clone().unwrap_or_default();
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let target = match self.backend.get_mailbox(&account, &sel.name).await {
            Ok(mb) if mb.id == sel.mailbox_id || sel.mailbox_id == 0 => mb.highest_modseq,
            // Gone or replaced: the feed tells the session so; nothing to wait for.
            _ => return,
        };
        let limit = tokio::time::sleep(CATCH_UP_LIMIT);
        tokio::pin!(limit);
        while sel.feed_modseq.max(sel.view.highest_modseq) < target {
            tokio::select! {
                change = sel.feed.changes.recv() => match change {
                    Some(c) => sel.apply(&c),
                    None => return,
                },
                () = &mut limit => {
                    tracing::debug!(target, seen = sel.feed_modseq, "change feed behind the store after the catch-up limit");
                    return;
                }
            }
        }
    }

    /// Waits for the next change of the selected mailbox (IDLE). Pending forever when
    /// nothing is selected.
    pub async fn next_change(&mut self) -> Option<Change> {
        match self.selected.as_mut() {
            Some(sel) => match sel.feed.changes.recv().await {
                Some(c) => {
                    sel.apply(&c);
                    Some(c)
                }
                // The watcher is gone: nothing more will come.
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

impl Selected {
    /// Takes in one change of the selected mailbox from the feed.
    fn apply(&mut self, c: &Change) {
        if self.mailbox_id != 0 && c.mailbox_id != 0 && c.mailbox_id != self.mailbox_id {
            // Another mailbox (one that took this name after a rename or delete).
            return;
        }
        self.feed_modseq = self.feed_modseq.max(c.modseq);
        let view = &mut self.view;
        match &c.kind {
            ChangeKind::Added(uids) => view.added_elsewhere(uids, c.modseq),
            ChangeKind::Expunged(uids) => view.expunged_elsewhere(uids, c.modseq),
            ChangeKind::Flags(changed) => {
                for (uid, flags) in changed {
                    view.flags_changed_elsewhere(*uid, flags.clone(), c.modseq);
                }
            }
            // Renamed (by anyone): the session follows it under its new name.
            ChangeKind::Renamed(name) => self.name = name.clone(),
            ChangeKind::Deleted => self.gone = Some("the selected mailbox was deleted"),
            ChangeKind::Lost => {
                self.gone = Some(
                    "the selected mailbox's changes can no longer be followed; select it again",
                )
            }
            ChangeKind::Other => {}
        }
    }
}
