//! One IMAP connection's state machine (RFC 3501 §3): not authenticated, authenticated,
//! selected, logout, and every command of each state, over the store.
//!
//! The session holds only its view (account, selected mailbox, sequence map, modseq); every
//! change goes to the store and is acknowledged only after the store committed it. Changes
//! made elsewhere (another session, another access node, SMTP delivery) arrive through the
//! store's Watch stream for the selected mailbox and are announced when RFC 3501 allows
//! ([`View::announce`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{
    Command, CommandBody, FetchModifier, SelectParameter, StoreModifier,
};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;
use mail_parser::MessageParser;
use tern_proto::client::TracedChannel;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_client::DirectoryClient;
use tern_proto::store::v1::mailboxes_client::MailboxesClient;
use tern_proto::store::v1::messages_client::MessagesClient;
use tern_proto::store::v1::watch_client::WatchClient;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use super::fetch::{self, Item, Need};
use super::search::{translate, uid_ranges};
use super::sequence::{compact, spans};
use super::server::ImapContext;
use super::utf7;
use super::view::{MessageMeta, View};
use super::wire::{flag_list, list_matches, mailbox_name, SYSTEM_FLAGS};

/// Largest store response accepted (a listing of a very large mailbox).
const MAX_RESPONSE: usize = 256 << 20;
/// Bytes read first for a header-only FETCH; a header longer than this is read whole.
const HEADER_PROBE: u64 = 64 << 10;
/// Content fetches in flight for one FETCH command.
const FETCH_PARALLEL: usize = 8;
/// Output buffered before it is written mid-command (large FETCH responses).
const SPILL: usize = 256 << 10;
/// Changes from the store buffered per selected session.
const CHANGE_BUFFER: usize = 1024;
/// Longest LIST/LSUB pattern (matching costs its length times each name's).
const MAX_PATTERN: usize = 1024;

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

/// Output for one command: buffered, written out early when it grows large.
pub struct Sink<'w> {
    /// Bytes not yet written.
    pub buf: Vec<u8>,
    w: &'w mut (dyn AsyncWrite + Unpin + Send),
}

impl<'w> Sink<'w> {
    /// Output going to `w`.
    pub fn new(w: &'w mut (dyn AsyncWrite + Unpin + Send)) -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            w,
        }
    }

    async fn spill(&mut self) -> io::Result<()> {
        if self.buf.len() >= SPILL {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes everything buffered without flushing (pipelined replies go out together).
    pub async fn write_buffered(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes everything buffered and flushes.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.w.flush().await
    }

    fn line(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }
}

/// The selected mailbox.
struct Selected {
    /// Its name in the store (UTF-8).
    name: String,
    /// Its id in the store: a mailbox created later under the same name is another one.
    mailbox_id: u64,
    /// Deleted (by anyone) while selected: the session ends with BYE, as Dovecot does.
    gone: bool,
    view: View,
    changes: mpsc::Receiver<pb::Change>,
    watcher: JoinHandle<()>,
}

impl Drop for Selected {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// One connection's session.
pub struct Session {
    ctx: Arc<ImapContext>,
    tls: bool,
    account: Option<String>,
    selected: Option<Selected>,
    condstore: bool,
    auth_failures: u32,
    logged_out: bool,
    /// This session deleted its selected mailbox: BYE follows the tagged OK.
    bye_after_reply: bool,
}

/// A command's outcome for the tagged response.
enum Done {
    Ok(String),
    No(String),
    Bad(String),
    /// No tagged reply yet: IDLE and AUTHENTICATE's continuation answer later.
    Later,
}

fn ok(s: impl Into<String>) -> Result<Done, io::Error> {
    Ok(Done::Ok(s.into()))
}
fn no(s: impl Into<String>) -> Result<Done, io::Error> {
    Ok(Done::No(s.into()))
}
fn bad(s: impl Into<String>) -> Result<Done, io::Error> {
    Ok(Done::Bad(s.into()))
}

/// The tagged NO for a store error, with the RFC 5530 response code that fits.
fn store_no(what: &str, s: &Status) -> Done {
    let code = match s.code() {
        Code::NotFound => "[NONEXISTENT] ",
        Code::AlreadyExists => "[ALREADYEXISTS] ",
        Code::ResourceExhausted => "[OVERQUOTA] ",
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => "[CANNOT] ",
        Code::PermissionDenied => "[NOPERM] ",
        _ => "[UNAVAILABLE] ",
    };
    let msg = match s.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::AlreadyExists
        | Code::ResourceExhausted
        | Code::OutOfRange => s.message().to_string(),
        _ => "the store is unavailable, try again".into(),
    };
    Done::No(format!("{code}{what}: {msg}"))
}

/// One unary store call, retried across store nodes by `StoreClient::call`:
/// `store_call!(store, client, method, request)` is `Result<tonic::Response<_>, Status>`.
macro_rules! store_call {
    ($store:expr, $client:ident, $method:ident, $req:expr) => {
        $store
            .call(|ch| {
                let r = $req.clone();
                async move { $client(ch).$method(r).await }
            })
            .await
    };
}

fn messages(ch: TracedChannel) -> MessagesClient<TracedChannel> {
    MessagesClient::new(ch).max_decoding_message_size(MAX_RESPONSE)
}

fn mailboxes(ch: TracedChannel) -> MailboxesClient<TracedChannel> {
    MailboxesClient::new(ch).max_decoding_message_size(MAX_RESPONSE)
}

/// A mailbox argument as the store's UTF-8 name, or why it is not one.
fn mailbox_arg(m: &Mailbox<'_>) -> Result<String, String> {
    match m {
        Mailbox::Inbox => Ok("INBOX".into()),
        Mailbox::Other(o) => utf7::decode(o.as_ref())
            .map_err(|e| format!("mailbox name is not valid modified UTF-7: {e}")),
    }
}

fn flag_name(f: &Flag<'_>) -> String {
    f.to_string()
}

fn meta(r: &pb::MessageRecord) -> MessageMeta {
    MessageMeta {
        uid: r.uid,
        flags: r.flags.clone(),
        internal_date: r.internal_date,
        size: if r.wire_size > 0 { r.wire_size } else { r.size },
        modseq: r.modseq,
    }
}

/// Whether `data` has a line feed without a carriage return before it.
fn has_bare_lf(data: &[u8]) -> bool {
    data.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
}

impl Session {
    /// A new session; `tls` when the connection is already encrypted (IMAPS).
    pub fn new(ctx: Arc<ImapContext>, tls: bool) -> Self {
        Self {
            ctx,
            tls,
            account: None,
            selected: None,
            condstore: false,
            auth_failures: 0,
            logged_out: false,
            bye_after_reply: false,
        }
    }

    fn plaintext_ok(&self) -> bool {
        self.tls || self.ctx.plaintext_auth
    }

    /// The capability list for the current state (RFC 3501 §7.2.1).
    pub fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "SASL-IR", "LITERAL+", "ID", "ENABLE", "IDLE"];
        if self.account.is_none() {
            if !self.tls && self.ctx.tls.is_some() {
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

    /// Runs one command, writing its untagged responses and its tagged result.
    pub async fn handle(&mut self, cmd: Command<'static>, out: &mut Sink<'_>) -> io::Result<Next> {
        let tag = cmd.tag.inner().to_string();
        let mut next = Next::Continue;
        let name = command_name(&cmd.body);
        let done = self.dispatch(&tag, cmd.body, out, &mut next).await?;
        if self.mailbox_gone() {
            // The session cannot go on without its mailbox: BYE instead of the tagged
            // reply, as Dovecot does (RFC 3501 §7.1.5 lets BYE come at any time).
            out.line("* BYE the selected mailbox was deleted");
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
        if std::mem::take(&mut self.bye_after_reply) {
            out.line("* BYE the selected mailbox was deleted");
            self.force_logout();
            next = Next::Close;
        }
        Ok(next)
    }

    /// Whether the selected mailbox was deleted (by this session or any other).
    pub fn mailbox_gone(&self) -> bool {
        self.selected.as_ref().is_some_and(|s| s.gone)
    }

    /// Whether the last tagged reply was BAD is tracked by the caller from the output.
    async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody<'static>,
        out: &mut Sink<'_>,
        next: &mut Next,
    ) -> io::Result<Done> {
        // Any state.
        match body {
            CommandBody::Capability => {
                out.line(&format!("* CAPABILITY {}", self.capabilities()));
                return ok("CAPABILITY completed");
            }
            CommandBody::Noop => {
                self.sync(out, true, false).await;
                return ok("NOOP completed");
            }
            CommandBody::Check => {
                if self.selected.is_none() {
                    return bad("no mailbox selected");
                }
                self.sync(out, true, false).await;
                return ok("CHECK completed");
            }
            CommandBody::Logout => {
                out.line("* BYE Tern IMAP logging out");
                self.selected = None;
                self.logged_out = true;
                *next = Next::Close;
                return ok("LOGOUT completed");
            }
            CommandBody::Id { .. } => {
                out.line("* ID (\"name\" \"Tern\" \"vendor\" \"Tern\")");
                return ok("ID completed");
            }
            _ => {}
        }
        let Some(account) = self.account.clone() else {
            return self.not_authenticated(tag, body, out, next).await;
        };
        // Authenticated or selected.
        match body {
            CommandBody::StartTLS
            | CommandBody::Login { .. }
            | CommandBody::Authenticate { .. } => bad("already authenticated"),
            CommandBody::Enable { capabilities } => {
                if self.selected.is_some() {
                    // RFC 5161 §3.1: only before a mailbox is selected.
                    return bad("ENABLE is only valid before SELECT");
                }
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    if matches!(c, CapabilityEnable::CondStore) && !self.condstore {
                        self.condstore = true;
                        enabled.push("CONDSTORE");
                    }
                }
                out.line(format!("* ENABLED {}", enabled.join(" ")).trim_end());
                ok("ENABLE completed")
            }
            CommandBody::Namespace => {
                out.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                ok("NAMESPACE completed")
            }
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
            CommandBody::Delete { mailbox } => {
                let name = match mailbox_arg(&mailbox) {
                    Ok(n) => n,
                    Err(e) => return bad(e),
                };
                if name == "INBOX" {
                    return no("[CANNOT] INBOX cannot be deleted");
                }
                let req = pb::DeleteMailboxRequest {
                    account: account.clone(),
                    name: name.clone(),
                };
                match store_call!(self.ctx.store, mailboxes, delete, req) {
                    Ok(_) => {
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
            CommandBody::Rename { from, to } => {
                let (from, to) = match (mailbox_arg(&from), mailbox_arg(&to)) {
                    (Ok(f), Ok(t)) => (f, t.trim_end_matches('/').to_string()),
                    (Err(e), _) | (_, Err(e)) => return bad(e),
                };
                let req = pb::RenameMailboxRequest {
                    account: account.clone(),
                    from: from.clone(),
                    to: to.clone(),
                };
                match store_call!(self.ctx.store, mailboxes, rename, req) {
                    Ok(_) => {
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
                // The literal's bytes are moved out of the command, not copied.
                let data = match message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.into_inner().into_owned()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.into_owned()
                    }
                };
                let date = date.map(|d| d.as_ref().timestamp());
                self.append(&account, &mailbox, &flags, date, data, out)
                    .await
            }
            CommandBody::GetQuotaRoot { mailbox } => {
                let name = match mailbox_arg(&mailbox) {
                    Ok(n) => n,
                    Err(e) => return bad(e),
                };
                let mut shown = Vec::new();
                mailbox_name(&mut shown, &name);
                let user = match self.user(&account).await {
                    Ok(u) => u,
                    Err(s) => return Ok(store_no("GETQUOTAROOT", &s)),
                };
                if user.quota_bytes == 0 {
                    out.line(&format!("* QUOTAROOT {}", String::from_utf8_lossy(&shown)));
                } else {
                    out.line(&format!(
                        "* QUOTAROOT {} \"\"",
                        String::from_utf8_lossy(&shown)
                    ));
                    out.line(&quota_line(&user));
                }
                ok("GETQUOTAROOT completed")
            }
            CommandBody::GetQuota { root } => {
                if !root.as_ref().is_empty() {
                    return no("[NONEXISTENT] no such quota root");
                }
                match self.user(&account).await {
                    Ok(u) if u.quota_bytes > 0 => {
                        out.line(&quota_line(&u));
                        ok("GETQUOTA completed")
                    }
                    Ok(_) => no("[NONEXISTENT] no quota is set"),
                    Err(s) => Ok(store_no("GETQUOTA", &s)),
                }
            }
            CommandBody::SetQuota { .. } => {
                no("[NOPERM] quotas are set by the administrator (ternctl)")
            }
            CommandBody::Idle => {
                out.line("+ idling");
                *next = Next::Idle(tag.to_string());
                // The tagged reply comes when DONE arrives ([`Session::idle_done`]).
                Ok(Done::Later)
            }
            body => self.selected_command(&account, body, out).await,
        }
    }

    async fn not_authenticated(
        &mut self,
        tag: &str,
        body: CommandBody<'static>,
        out: &mut Sink<'_>,
        next: &mut Next,
    ) -> io::Result<Done> {
        match body {
            CommandBody::StartTLS => {
                if self.tls {
                    return bad("TLS is already active");
                }
                if self.ctx.tls.is_none() {
                    return bad("STARTTLS is not available here");
                }
                *next = Next::StartTls;
                ok("Begin TLS negotiation now")
            }
            CommandBody::Login { username, password } => {
                if !self.plaintext_ok() {
                    return no("[PRIVACYREQUIRED] LOGIN needs TLS first (STARTTLS or port 993)");
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&user, &pass, next).await
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !matches!(mechanism, AuthMechanism::Plain) {
                    return no("[CANNOT] only AUTHENTICATE PLAIN is offered");
                }
                if !self.plaintext_ok() {
                    return no("[PRIVACYREQUIRED] authentication needs TLS first");
                }
                match initial_response {
                    Some(r) => {
                        let data = r.declassify().to_vec();
                        self.plain(&data, next).await
                    }
                    None => {
                        *next = Next::AuthContinue(tag.to_string());
                        Ok(Done::Later)
                    }
                }
            }
            CommandBody::Enable { .. } | CommandBody::Idle | CommandBody::Namespace => {
                bad("log in first")
            }
            _ => {
                let _ = out;
                bad("log in first")
            }
        }
    }

    /// The client's answer to AUTHENTICATE PLAIN's empty challenge.
    pub async fn auth_response(
        &mut self,
        tag: &str,
        line: &[u8],
        out: &mut Sink<'_>,
    ) -> io::Result<Next> {
        let mut next = Next::Continue;
        let done = if line == b"*" {
            Done::Bad("AUTHENTICATE cancelled".into())
        } else {
            match base64::engine::general_purpose::STANDARD.decode(line) {
                Ok(data) => self.plain(&data, &mut next).await?,
                Err(_) => Done::Bad("the response is not base64".into()),
            }
        };
        match done {
            Done::Ok(t) => out.line(&format!("{tag} OK {t}")),
            Done::No(t) => out.line(&format!("{tag} NO {t}")),
            Done::Bad(t) => out.line(&format!("{tag} BAD AUTHENTICATE: {t}")),
            Done::Later => {}
        }
        if std::mem::take(&mut self.bye_after_reply) {
            out.line("* BYE the selected mailbox was deleted");
            self.force_logout();
            next = Next::Close;
        }
        Ok(next)
    }

    async fn plain(&mut self, data: &[u8], next: &mut Next) -> io::Result<Done> {
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        let [authz, authc, pass] = parts[..] else {
            return bad("PLAIN wants authzid NUL authcid NUL password");
        };
        let (authz, authc, pass) = (
            String::from_utf8_lossy(authz),
            String::from_utf8_lossy(authc).into_owned(),
            String::from_utf8_lossy(pass).into_owned(),
        );
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(&authc) {
            return no("[AUTHORIZATIONFAILED] acting as another user is not allowed");
        }
        self.login(&authc, &pass, next).await
    }

    async fn login(&mut self, user: &str, pass: &str, next: &mut Next) -> io::Result<Done> {
        let req = pb::CheckPasswordRequest {
            address: user.to_string(),
            password: pass.to_string(),
        };
        let resp = self
            .ctx
            .store
            .call(|ch| {
                let r = req.clone();
                async move { DirectoryClient::new(ch).check_password(r).await }
            })
            .await;
        match resp {
            Ok(r) => {
                let r = r.into_inner();
                match (r.ok, r.user) {
                    (true, Some(u)) => {
                        self.account = Some(u.address.clone());
                        tracing::info!(account = %u.address, "imap login");
                        ok(format!("[CAPABILITY {}] Logged in", self.capabilities()))
                    }
                    _ => {
                        self.auth_failures += 1;
                        if self.auth_failures >= self.ctx.max_auth_failures {
                            *next = Next::Close;
                            return no("[AUTHENTICATIONFAILED] authentication failed; closing");
                        }
                        *next = Next::Delay;
                        no("[AUTHENTICATIONFAILED] authentication failed")
                    }
                }
            }
            Err(_) => no("[UNAVAILABLE] the directory is unavailable, try again"),
        }
    }

    async fn user(&self, account: &str) -> Result<pb::User, Status> {
        let req = pb::GetUserRequest {
            address: account.to_string(),
        };
        self.ctx
            .store
            .call(|ch| {
                let r = req.clone();
                async move { DirectoryClient::new(ch).get_user(r).await }
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn select(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        params: &[SelectParameter],
        read_only: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        // Whatever happens, the previous mailbox is no longer selected (RFC 3501 §6.3.1).
        self.selected = None;
        let name = match mailbox_arg(mailbox) {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        for p in params {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } => return bad("QRESYNC is not offered"),
            }
        }
        let req = pb::ListMessagesRequest {
            account: account.to_string(),
            mailbox: name.clone(),
            uids: None,
            changed_since: 0,
        };
        let listed = match store_call!(self.ctx.store, messages, list, req) {
            Ok(l) => l.into_inner(),
            Err(s) => return Ok(store_no("SELECT", &s)),
        };
        let Some(mb) = listed.mailbox else {
            return no("[NONEXISTENT] no such mailbox");
        };
        let records: Vec<MessageMeta> = listed.messages.iter().map(meta).collect();
        let view = View::new(
            records,
            mb.uid_validity,
            mb.uid_next,
            mb.highest_modseq,
            read_only,
        );
        let mut keywords: Vec<String> = Vec::new();
        for m in view.messages() {
            for f in &m.flags {
                if !f.starts_with('\\') && !keywords.contains(f) {
                    keywords.push(f.clone());
                }
            }
        }
        keywords.sort();
        let mut flags: Vec<String> = SYSTEM_FLAGS.iter().map(|s| s.to_string()).collect();
        flags.extend(keywords);
        let mut line = b"* FLAGS ".to_vec();
        flag_list(&mut line, &flags);
        out.buf.extend_from_slice(&line);
        out.buf.extend_from_slice(b"\r\n");
        if read_only {
            out.line("* OK [PERMANENTFLAGS ()] read-only");
        } else {
            let mut perm = SYSTEM_FLAGS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>();
            perm.push("\\*".into());
            let mut line = b"* OK [PERMANENTFLAGS ".to_vec();
            flag_list(&mut line, &perm);
            out.buf.extend_from_slice(&line);
            out.buf.extend_from_slice(b"] flags permitted\r\n");
        }
        out.line(&format!("* {} EXISTS", view.exists()));
        out.line("* 0 RECENT");
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
        let (tx, rx) = mpsc::channel(CHANGE_BUFFER);
        let watcher = tokio::spawn(watch(
            self.ctx.clone(),
            account.to_string(),
            name.clone(),
            mb.highest_modseq,
            tx,
        ));
        self.selected = Some(Selected {
            name,
            mailbox_id: mb.id,
            gone: false,
            view,
            changes: rx,
            watcher,
        });
        if read_only {
            ok("[READ-ONLY] EXAMINE completed")
        } else {
            ok("[READ-WRITE] SELECT completed")
        }
    }

    async fn create(&mut self, account: &str, mailbox: &Mailbox<'_>) -> io::Result<Done> {
        let name = match mailbox_arg(mailbox) {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        // A trailing delimiter declares the intent to create children (RFC 3501 §6.3.3).
        let name = name.trim_end_matches('/').to_string();
        if name.eq_ignore_ascii_case("INBOX") {
            return no("[ALREADYEXISTS] INBOX always exists");
        }
        let req = pb::CreateMailboxRequest {
            account: account.to_string(),
            name,
            special_use: String::new(),
        };
        match store_call!(self.ctx.store, mailboxes, create, req) {
            Ok(_) => ok("CREATE completed"),
            Err(s) => Ok(store_no("CREATE", &s)),
        }
    }

    async fn subscribe(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        on: bool,
    ) -> io::Result<Done> {
        let name = match mailbox_arg(mailbox) {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        let req = pb::SubscribeRequest {
            account: account.to_string(),
            name,
            subscribed: on,
        };
        match store_call!(self.ctx.store, mailboxes, subscribe, req) {
            Ok(_) => ok(if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }),
            Err(s) => Ok(store_no(if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" }, &s)),
        }
    }

    async fn all_mailboxes(&self, account: &str) -> Result<Vec<pb::Mailbox>, Status> {
        let req = pb::ListMailboxesRequest {
            account: account.to_string(),
        };
        store_call!(self.ctx.store, mailboxes, list, req).map(|r| r.into_inner().mailboxes)
    }

    async fn list(
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
        let all = match self.all_mailboxes(account).await {
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

    async fn status(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let name = match mailbox_arg(mailbox) {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            // STATUS must not run ahead of what the session was told (EXISTS, UIDNEXT).
            self.sync(out, true, false).await;
        }
        if items.contains(&StatusDataItemName::HighestModSeq) {
            self.condstore = true;
        }
        let req = pb::GetMailboxRequest {
            account: account.to_string(),
            name: name.clone(),
        };
        let mb = match store_call!(self.ctx.store, mailboxes, get, req) {
            Ok(m) => m.into_inner(),
            Err(s) => return Ok(store_no("STATUS", &s)),
        };
        let mut parts = Vec::new();
        for i in items {
            parts.push(match i {
                StatusDataItemName::Messages => format!("MESSAGES {}", mb.messages),
                StatusDataItemName::Recent => "RECENT 0".into(),
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

    async fn append(
        &mut self,
        account: &str,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        data: Vec<u8>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let name = match mailbox_arg(mailbox) {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        if data.is_empty() {
            return no("[CANNOT] an empty message cannot be appended");
        }
        if flags.iter().any(|f| matches!(f, Flag::Extension(_))) {
            // `\Recent` and unknown system flags cannot be set (RFC 3501 §2.3.2).
            return bad("unknown or read-only system flag");
        }
        let header = pb::AppendHeader {
            account: account.to_string(),
            mailbox: name.clone(),
            flags: flags.iter().map(flag_name).collect(),
            internal_date: date.unwrap_or(0),
            // A retry after a lost answer (store failover) returns the first result instead
            // of storing the message twice.
            delivery_id: format!(
                "imap-append/{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            ),
            size: data.len() as u64,
        };
        let data = Arc::new(data);
        let resp = self
            .ctx
            .store
            .call(|ch| {
                let (header, data) = (header.clone(), data.clone());
                async move {
                    // Chunks are cut as the stream is sent, not all at once.
                    const CHUNK: usize = 64 << 10;
                    let count = data.len().div_ceil(CHUNK);
                    let chunks = futures::stream::iter((0..count).map(move |i| {
                        let end = ((i + 1) * CHUNK).min(data.len());
                        pb::AppendRequest {
                            header: (i == 0).then(|| header.clone()),
                            chunk: data[i * CHUNK..end].to_vec(),
                        }
                    }));
                    messages(ch).append(chunks).await
                }
            })
            .await;
        match resp {
            Ok(r) => {
                let r = r.into_inner();
                if let Some(sel) = self.selected.as_mut().filter(|s| s.name == name) {
                    sel.view.added_elsewhere(&[r.uid], 0);
                }
                self.sync(out, true, false).await;
                ok(format!(
                    "[APPENDUID {} {}] APPEND completed",
                    r.uid_validity, r.uid
                ))
            }
            Err(s) if s.code() == Code::NotFound => no("[TRYCREATE] no such mailbox"),
            Err(s) => Ok(store_no("APPEND", &s)),
        }
    }

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
            CommandBody::Close => {
                let (name, read_only) = self.sel_info();
                if !read_only {
                    // CLOSE expunges silently (RFC 3501 §6.4.2).
                    let _ = self.expunge_call(account, &name, None).await;
                }
                self.selected = None;
                ok("CLOSE completed")
            }
            CommandBody::Unselect => {
                self.selected = None;
                ok("UNSELECT completed")
            }
            CommandBody::Expunge => self.expunge(account, None, out).await,
            CommandBody::ExpungeUid { sequence_set } => {
                let uids = self.resolve(&sequence_set, true);
                match uids {
                    Ok(u) => self.expunge(account, Some(u), out).await,
                    Err(e) => bad(e),
                }
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                if let Some(c) = charset {
                    let c = c.as_ref().to_ascii_uppercase();
                    if c != "UTF-8" && c != "US-ASCII" {
                        return no("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset");
                    }
                }
                self.search(account, &criteria, uid, out).await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                let mut items = match fetch::items(&macro_or_item_names, uid) {
                    Ok(i) => i,
                    Err(e) => return bad(e.to_string()),
                };
                let mut changed_since = None;
                for m in &modifiers {
                    match m {
                        FetchModifier::ChangedSince(v) => changed_since = Some(v.get()),
                        FetchModifier::Vanished => {
                            return bad("VANISHED needs QRESYNC, which is not offered")
                        }
                    }
                }
                if changed_since.is_some() {
                    self.condstore = true;
                    if !items.contains(&Item::ModSeq) {
                        items.push(Item::ModSeq);
                    }
                }
                if items.contains(&Item::ModSeq) {
                    self.condstore = true;
                }
                self.fetch(account, &sequence_set, uid, items, changed_since, out)
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
                let mut unchanged_since = 0;
                for m in &modifiers {
                    let StoreModifier::UnchangedSince(v) = m;
                    self.condstore = true;
                    if *v == 0 {
                        // No message has a modseq of 0 or less: every one fails the
                        // condition (RFC 7162 §3.1.3).
                        let (name, read_only) = self.sel_info();
                        let _ = name;
                        if read_only {
                            return no("[READ-ONLY] the mailbox is read-only");
                        }
                        let uids = match self.resolve(&sequence_set, uid) {
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
                self.store_flags(
                    account,
                    &sequence_set,
                    kind,
                    response,
                    &flags,
                    uid,
                    unchanged_since,
                    out,
                )
                .await
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

    fn sel_info(&self) -> (String, bool) {
        self.selected
            .as_ref()
            .map(|s| (s.name.clone(), s.view.read_only))
            .unwrap_or_default()
    }

    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, String> {
        let Some(sel) = &self.selected else {
            return Err("no mailbox selected".into());
        };
        let sp = spans(set);
        if uid {
            Ok(sel.view.uids_for_uids(&sp))
        } else {
            sel.view.uids_for_seqs(&sp).map_err(String::from)
        }
    }

    async fn expunge_call(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<Vec<u32>>,
    ) -> Result<pb::ExpungeResponse, Status> {
        let req = pb::ExpungeRequest {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: uids.map(|u| uid_ranges(&u)),
            force: false,
        };
        store_call!(self.ctx.store, messages, expunge, req).map(|r| r.into_inner())
    }

    async fn expunge(
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
        match self.expunge_call(account, &name, uids).await {
            Ok(r) => {
                if let Some(sel) = self.selected.as_mut() {
                    sel.view.remove(&r.expunged, &mut out.buf);
                    sel.view.highest_modseq = sel.view.highest_modseq.max(r.highest_modseq);
                }
                self.sync(out, true, false).await;
                ok("EXPUNGE completed")
            }
            Err(s) => Ok(store_no("EXPUNGE", &s)),
        }
    }

    async fn search(
        &mut self,
        account: &str,
        criteria: &imap_codec::imap_types::core::Vec1<
            imap_codec::imap_types::search::SearchKey<'_>,
        >,
        uid: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let translated = match translate(criteria, &sel.view) {
            Ok(t) => t,
            Err(e) => return bad(e),
        };
        let req = pb::SearchRequest {
            account: account.to_string(),
            mailbox: sel.name.clone(),
            key: Some(translated.key),
        };
        let resp = match store_call!(self.ctx.store, messages, search, req) {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(store_no("SEARCH", &s)),
        };
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let mut hits: Vec<u32> = resp
            .uids
            .iter()
            .filter_map(|&u| sel.view.seq_of(u).map(|s| if uid { u } else { s }))
            .collect();
        hits.sort_unstable();
        let mut line = String::from("* SEARCH");
        for h in &hits {
            line.push_str(&format!(" {h}"));
        }
        if translated.uses_modseq && !hits.is_empty() {
            let highest = resp
                .uids
                .iter()
                .filter_map(|u| sel.view.by_uid(*u).map(|m| m.modseq))
                .max()
                .unwrap_or(resp.highest_modseq);
            line.push_str(&format!(" (MODSEQ {highest})"));
        }
        out.line(&line);
        if translated.uses_modseq {
            self.condstore = true;
        }
        self.sync(out, uid, uid).await;
        ok("SEARCH completed")
    }

    async fn fetch(
        &mut self,
        account: &str,
        set: &SequenceSet,
        uid: bool,
        items: Vec<Item>,
        changed_since: Option<u64>,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
        let mut uids = match self.resolve(set, uid) {
            Ok(u) => u,
            Err(e) => return bad(e),
        };
        let (name, read_only) = self.sel_info();
        if let (Some(since), Some(sel)) = (changed_since, &self.selected) {
            uids.retain(|u| sel.view.by_uid(*u).is_some_and(|m| m.modseq > since));
        }
        // \Seen as a side effect of reading a body (RFC 3501 §6.4.5), committed first.
        let mut seen_set: Vec<u32> = Vec::new();
        if fetch::sets_seen(&items) && !read_only {
            if let Some(sel) = &self.selected {
                seen_set = uids
                    .iter()
                    .copied()
                    .filter(|u| {
                        sel.view
                            .by_uid(*u)
                            .is_some_and(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                    })
                    .collect();
            }
            if !seen_set.is_empty() {
                let req = pb::StoreFlagsRequest {
                    account: account.to_string(),
                    mailbox: name.clone(),
                    uids: Some(uid_ranges(&seen_set)),
                    mode: pb::store_flags_request::Mode::Add as i32,
                    flags: vec!["\\Seen".into()],
                    unchanged_since: 0,
                };
                match store_call!(self.ctx.store, messages, store_flags, req) {
                    Ok(r) => {
                        if let Some(sel) = self.selected.as_mut() {
                            for rec in r.into_inner().updated {
                                sel.view.set_flags(rec.uid, rec.flags, rec.modseq);
                            }
                        }
                    }
                    Err(s) => return Ok(store_no("FETCH", &s)),
                }
            }
        }
        let need = fetch::need(&items);
        let Some(sel) = &self.selected else {
            return bad("no mailbox selected");
        };
        let uid_validity = sel.view.uid_validity;
        let mut expunge_issued = false;
        // Content is read a few messages at a time, in order.
        let store = self.ctx.store.clone();
        let retrievals = self.ctx.retrievals.clone();
        // A message expunged elsewhere and not yet announced: its metadata is still in the
        // view (RFC 2180 §4.1.1), its content may be gone. A UID FETCH leaves it out quietly
        // (the EXPUNGE follows at the end); a FETCH by number says so with EXPUNGEISSUED.
        let wanted: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| {
                let gone = need != Need::Nothing && sel.view.is_expunged(*u);
                expunge_issued |= gone && !uid;
                !gone
            })
            .collect();
        let parallel = if need == Need::Everything {
            // Whole messages: keep the bytes in flight per connection small.
            2
        } else {
            FETCH_PARALLEL
        };
        let seen_set: std::collections::HashSet<u32> = seen_set.into_iter().collect();
        let condstore = self.condstore;
        let mut contents = futures::stream::iter(wanted.into_iter().map(|u| {
            let (store, account, name) = (store.clone(), account.to_string(), name.clone());
            let tracer = retrievals.clone();
            async move {
                let content = match need {
                    Need::Nothing => Ok(None),
                    Need::Header => read_header(&store, &account, &name, u, uid_validity)
                        .await
                        .map(Some),
                    Need::Everything => {
                        match read_content(&store, &account, &name, u, uid_validity, 0, 0).await {
                            Ok((data, trace_id)) => {
                                // The whole message goes to the client: a retrieval.
                                tracer.retrieved(&trace_id, "IMAP FETCH", &account, &name, u);
                                Ok(Some(data))
                            }
                            Err(s) => Err(s),
                        }
                    }
                };
                (u, content)
            }
        }))
        .buffered(parallel);
        while let Some((u, content)) = contents.next().await {
            let content = match content {
                Ok(c) => c,
                Err(s) if s.code() == Code::NotFound => {
                    expunge_issued |= !uid;
                    continue;
                }
                Err(s) => return Ok(store_no("FETCH", &s)),
            };
            let Some(sel) = &self.selected else { break };
            let (Some(seq), Some(m)) = (sel.view.seq_of(u), sel.view.by_uid(u)) else {
                continue;
            };
            let parsed = content
                .as_deref()
                .and_then(|c| MessageParser::default().parse(c));
            fetch::render(
                &mut out.buf,
                seq,
                m,
                &items,
                parsed.as_ref(),
                seen_set.contains(&u),
                condstore,
            );
            out.spill().await?;
        }
        self.sync(out, uid, uid).await;
        if expunge_issued {
            no("[EXPUNGEISSUED] some of the requested messages no longer exist")
        } else {
            ok("FETCH completed")
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_flags(
        &mut self,
        account: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        unchanged_since: u64,
        out: &mut Sink<'_>,
    ) -> io::Result<Done> {
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
        let mode = match kind {
            StoreType::Replace => pb::store_flags_request::Mode::Replace,
            StoreType::Add => pb::store_flags_request::Mode::Add,
            StoreType::Remove => pb::store_flags_request::Mode::Remove,
        };
        let req = pb::StoreFlagsRequest {
            account: account.to_string(),
            mailbox: name,
            uids: Some(uid_ranges(&uids)),
            mode: mode as i32,
            flags: flags.iter().map(flag_name).collect(),
            unchanged_since,
        };
        let resp = match store_call!(self.ctx.store, messages, store_flags, req) {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(store_no("STORE", &s)),
        };
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return bad("no mailbox selected");
        };
        for rec in &resp.updated {
            sel.view.set_flags(rec.uid, rec.flags.clone(), rec.modseq);
        }
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
                flag_list(&mut line, &m.flags);
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

    async fn copy(
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
        let target = match mailbox_arg(target) {
            Ok(t) => t,
            Err(e) => return bad(e),
        };
        let (name, read_only) = self.sel_info();
        if moving && read_only {
            return no("[READ-ONLY] the mailbox is read-only");
        }
        if uids.is_empty() {
            self.sync(out, uid, uid).await;
            return ok(format!("{what} completed"));
        }
        let req = pb::CopyRequest {
            account: account.to_string(),
            mailbox: name.clone(),
            uids: Some(uid_ranges(&uids)),
            target: target.clone(),
        };
        let resp = self
            .ctx
            .store
            .call(|ch| {
                let r = req.clone();
                async move {
                    if moving {
                        messages(ch).r#move(r).await
                    } else {
                        messages(ch).copy(r).await
                    }
                }
            })
            .await;
        let resp = match resp {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => {
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

    /// Takes in what the change feed delivered, reads the records of new messages, and
    /// writes the untagged responses the current command may carry.
    pub async fn sync(&mut self, out: &mut Sink<'_>, expunge_allowed: bool, with_uid: bool) {
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        while let Ok(c) = sel.changes.try_recv() {
            sel.apply(&c);
        }
        let pending = sel.view.pending_additions();
        if let Some(&highest) = pending.iter().max() {
            // Every UID between the last known one and the highest new one: the feed may lag
            // behind the store's linearizable reads, and a UID committed before ours whose
            // event has not arrived yet must not be skipped for good (UIDs only grow).
            let first = sel.view.last_uid().saturating_add(1);
            let req = pb::ListMessagesRequest {
                account: self.account.clone().unwrap_or_default(),
                mailbox: sel.name.clone(),
                uids: Some(pb::UidSet {
                    ranges: vec![pb::UidRange {
                        first,
                        last: highest.max(first),
                    }],
                }),
                changed_since: 0,
            };
            let listed = store_call!(self.ctx.store, messages, list, req);
            match listed {
                Ok(l) => {
                    let l = l.into_inner();
                    sel.view.add_records(l.messages.iter().map(meta).collect());
                    // Whatever was not listed was expunged before it could be read.
                    sel.view.drop_pending_additions();
                }
                Err(e) => {
                    tracing::debug!(error = %e.message(), "reading new messages failed; retrying at the next command");
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

    /// Waits for the next change of the selected mailbox (IDLE). Pending forever when
    /// nothing is selected.
    pub async fn next_change(&mut self) -> Option<pb::Change> {
        match self.selected.as_mut() {
            Some(sel) => match sel.changes.recv().await {
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

    /// DONE after IDLE.
    pub async fn idle_done(&mut self, tag: &str, out: &mut Sink<'_>) {
        self.sync(out, true, false).await;
        out.line(&format!("{tag} OK IDLE terminated"));
    }
}

impl Selected {
    /// Takes in one change of the selected mailbox from the feed.
    fn apply(&mut self, c: &pb::Change) {
        use pb::change::Kind;
        if self.mailbox_id != 0 && c.mailbox_id != 0 && c.mailbox_id != self.mailbox_id {
            // Another mailbox (one that took this name after a rename or delete).
            return;
        }
        let view = &mut self.view;
        match c.kind() {
            Kind::MessageAdded => view.added_elsewhere(&c.uids, c.modseq),
            Kind::Expunged => view.expunged_elsewhere(&c.uids, c.modseq),
            Kind::FlagsChanged => {
                for (i, uid) in c.uids.iter().enumerate() {
                    let flags = c
                        .flags
                        .get(i)
                        .map(|f| f.split_whitespace().map(String::from).collect())
                        .unwrap_or_default();
                    view.flags_changed_elsewhere(*uid, flags, c.modseq);
                }
            }
            // Renamed (by anyone): the session follows it under its new name.
            Kind::MailboxRenamed if !c.mailbox.is_empty() => self.name = c.mailbox.clone(),
            Kind::MailboxDeleted => self.gone = true,
            _ => {}
        }
    }
}

fn quota_line(u: &pb::User) -> String {
    format!(
        "* QUOTA \"\" (STORAGE {} {})",
        u.used_bytes.div_ceil(1024),
        u.quota_bytes / 1024
    )
}

fn command_name(b: &CommandBody<'_>) -> &'static str {
    b.name()
}

/// Reads a message's content (or a range of it) from the store, with CRLF line endings, and
/// the trace it was delivered under (empty if none).
async fn read_content(
    store: &tern_proto::client::StoreClient,
    account: &str,
    mailbox: &str,
    uid: u32,
    uid_validity: u32,
    offset: u64,
    length: u64,
) -> Result<(Vec<u8>, String), Status> {
    let req = pb::FetchRequest {
        account: account.to_string(),
        mailbox: mailbox.to_string(),
        uid,
        offset,
        length,
        uid_validity,
    };
    let (data, trace_id) = store
        .call(|ch| {
            let r = req.clone();
            async move {
                let stream = messages(ch).fetch(r).await?.into_inner();
                let chunks: Vec<pb::FetchChunk> = stream.try_collect().await?;
                let trace_id = chunks.first().map(|c| c.trace_id.clone());
                let data = chunks.into_iter().flat_map(|c| c.data).collect::<Vec<u8>>();
                Ok((data, trace_id.unwrap_or_default()))
            }
        })
        .await?;
    let data = if has_bare_lf(&data) {
        tern_mail::lines::canonical(&data)
    } else {
        data
    };
    Ok((data, trace_id))
}

/// Reads only the header section when it fits in the first [`HEADER_PROBE`] octets.
async fn read_header(
    store: &tern_proto::client::StoreClient,
    account: &str,
    mailbox: &str,
    uid: u32,
    uid_validity: u32,
) -> Result<Vec<u8>, Status> {
    let (mut head, _) =
        read_content(store, account, mailbox, uid, uid_validity, 0, HEADER_PROBE).await?;
    match tern_mail::header::section_end(&head) {
        Some(end) => {
            head.truncate(end);
            Ok(head)
        }
        None if (head.len() as u64) < HEADER_PROBE => Ok(head),
        None => read_content(store, account, mailbox, uid, uid_validity, 0, 0)
            .await
            .map(|(data, _)| data),
    }
}

/// Follows the store's change feed for one mailbox, reconnecting (from the last modseq
/// seen) when a store node goes away, until the session drops the receiver.
async fn watch(
    ctx: Arc<ImapContext>,
    account: String,
    mut mailbox: String,
    mut from: u64,
    tx: mpsc::Sender<pb::Change>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let req = pb::WatchRequest {
            account: account.clone(),
            mailbox: mailbox.clone(),
            from_modseq: from,
        };
        let stream = ctx
            .store
            .call(|ch| {
                let r = req.clone();
                async move { WatchClient::new(ch).watch(r).await }
            })
            .await;
        match stream {
            Ok(s) => {
                let mut s = s.into_inner();
                while let Ok(Some(c)) = s.message().await {
                    backoff = Duration::from_millis(200);
                    from = from.max(c.modseq);
                    if c.kind() == pb::change::Kind::MailboxRenamed && !c.mailbox.is_empty() {
                        // A reconnect asks for the mailbox under the name it has now.
                        mailbox = c.mailbox.clone();
                    }
                    if tx.send(c).await.is_err() {
                        return;
                    }
                }
            }
            // The account or mailbox is gone: nothing more will come (a deletion was already
            // reported through the feed).
            Err(s) if s.code() == Code::NotFound => return,
            Err(_) => {}
        }
        if tx.is_closed() {
            return;
        }
        // Store calls already fail over between nodes; this only paces reconnects.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
