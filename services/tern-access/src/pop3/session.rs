//! The POP3 state machine of one connection (RFC 1939 §3–§6, with CAPA, STLS, AUTH PLAIN and
//! RESP-CODES), independent of sockets and storage: it takes command lines and writes response
//! bytes, and reaches the mailbox only through a [`Backend`].
//!
//! The maildrop is a numbered list fixed at login ([`Maildrop`]); DELE only marks; deletions
//! happen when QUIT moves the session into UPDATE, and the +OK to that QUIT is written only
//! after the backend confirmed them. A connection that ends any other way deletes nothing.

use std::future::Future;

use base64::Engine;

use super::command::{parse, Command, ParseError};
use tern_mail::lines;

/// One message of the maildrop as fixed at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The store's UID (with the UIDVALIDITY, the UIDL value).
    pub uid: u32,
    /// The size of the message on the wire ([`lines::size`]).
    pub size: u64,
}

/// The maildrop as fixed at login.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Maildrop {
    /// UIDVALIDITY of the INBOX.
    pub uid_validity: u32,
    /// Messages in UID order; message number n is `messages[n - 1]`.
    pub messages: Vec<MessageInfo>,
}

/// Why the backend could not serve a request; shown to the client as `-ERR [SYS/TEMP]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A message's stored content as it arrives from the store, so that RETR holds one piece at
/// a time, not the message.
pub trait Content: Send {
    /// The next piece; `None` after the last.
    fn next_piece(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, BackendError>> + Send;
}

/// Where a multi-line reply goes while it is written: the server's connection. A RETR of a
/// large message is sent in pieces, flushed as they fill [`Output::buf`].
pub trait Output: Send {
    /// The reply buffer.
    fn buf(&mut self) -> &mut Vec<u8>;
    /// Sends what the buffer holds and empties it.
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Octets of reply buffered before a RETR's pieces are flushed.
const SEND_AT: usize = 64 * 1024;

/// A RETR or TOP whose message the server sends with [`Session::send_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrieval {
    /// Index in the maildrop.
    index: usize,
    /// TOP's line count; `None` for RETR.
    top: Option<u32>,
}

/// What opening a maildrop can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Open {
    /// Locked for this session.
    Opened(Maildrop),
    /// Another session holds the maildrop lock.
    InUse,
}

/// The storage side of a session.
pub trait Backend {
    /// Checks credentials; returns the account on success.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<Option<String>, BackendError>> + Send;
    /// Takes the maildrop lock and lists the INBOX.
    fn open(&self, account: &str) -> impl Future<Output = Result<Open, BackendError>> + Send;
    /// A message's stored content, read piece by piece.
    type Content: Content;
    /// Starts reading a message's stored content (an error here is answered `-ERR`; one
    /// after the first piece ends the connection, since the reply has begun).
    fn retrieve(
        &self,
        account: &str,
        uid: u32,
    ) -> impl Future<Output = Result<Self::Content, BackendError>> + Send;
    /// Marks messages \Seen (RETR in keep mode leaves that trace for IMAP users). Called in
    /// batches, not once per RETR: one store write per message would cost a Raft commit each.
    fn mark_seen(
        &self,
        account: &str,
        uids: &[u32],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Removes messages durably (UPDATE state).
    fn delete(
        &self,
        account: &str,
        uids: &[u32],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Releases the maildrop lock.
    fn close(&self, account: &str) -> impl Future<Output = ()> + Send;
}

/// RETRs recorded as \Seen in one store write.
const SEEN_BATCH: usize = 64;

/// Settings of the listener a session runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Authentication over this connection is allowed without TLS (loopback-only dev
    /// listeners, or after STLS / on the implicit-TLS port).
    pub plaintext_auth_allowed: bool,
    /// STLS can be offered (a certificate is configured and TLS is not active yet).
    pub stls_available: bool,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
}

/// What the connection should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next line.
    Continue,
    /// Upgrade to TLS now, then call [`Session::tls_started`].
    StartTls,
    /// Close the connection.
    Close,
    /// The credentials were wrong: wait a little before reading on (slows guessing).
    DelayThenContinue,
    /// Send a message with [`Session::send_message`] (nothing is buffered for it yet), then
    /// read the next line.
    Send(Retrieval),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Authorization {
        user: Option<String>,
        /// An AUTH exchange waiting for the client's next response.
        sasl: Option<tern_sasl::Exchange>,
    },
    Transaction {
        account: String,
        maildrop: Maildrop,
        deleted: Vec<bool>,
        /// UIDs sent by RETR and not yet marked \Seen in the store.
        seen: Vec<u32>,
    },
    Closed,
}

/// One POP3 session.
pub struct Session<B> {
    backend: B,
    config: Config,
    state: State,
    auth_failures: u32,
}

fn ok(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+OK ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl<B: Backend> Session<B> {
    /// A session in the AUTHORIZATION state.
    pub fn new(backend: B, config: Config) -> Self {
        Self {
            backend,
            config,
            state: State::Authorization {
                user: None,
                sasl: None,
            },
            auth_failures: 0,
        }
    }

    /// The greeting.
    pub fn greeting(&self) -> &'static [u8] {
        b"+OK Tern POP3 ready\r\n"
    }

    /// After STLS: authentication is now allowed and STLS is no longer offered.
    pub fn tls_started(&mut self) {
        self.config.plaintext_auth_allowed = true;
        self.config.stls_available = false;
    }

    /// Whether a session is in the TRANSACTION state (the connection must call
    /// [`Session::abort`] if it ends without QUIT).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Transaction { .. })
    }

    /// The connection ended without QUIT: nothing is deleted, what RETR sent is marked
    /// \Seen (the client did receive it), the lock is released.
    pub async fn abort(&mut self) {
        if let State::Transaction { account, seen, .. } =
            std::mem::replace(&mut self.state, State::Closed)
        {
            self.flush_seen(&account, &seen).await;
            self.backend.close(&account).await;
        }
    }

    async fn flush_seen(&self, account: &str, seen: &[u32]) {
        if seen.is_empty() {
            return;
        }
        // Failing to record \Seen does not take mail away from this client: no error.
        if let Err(e) = self.backend.mark_seen(account, seen).await {
            tracing_free_warn(&e);
        }
    }

    /// Handles one line (without CRLF), appending the response to `out`.
    pub async fn handle(&mut self, line: &[u8], out: &mut Vec<u8>) -> Next {
        if let State::Authorization { sasl, .. } = &mut self.state {
            if let Some(mut exchange) = sasl.take() {
                let step = exchange.respond(line);
                // A further challenge (LOGIN's "Password:") keeps the exchange going; an end
                // of any kind starts the AUTHORIZATION state afresh.
                let more = matches!(step, Ok(tern_sasl::Step::Challenge(_)));
                self.state = State::Authorization {
                    user: None,
                    sasl: more.then_some(exchange),
                };
                return self.sasl_step(step, out).await;
            }
        }
        let cmd = match parse(line) {
            Ok(c) => c,
            Err(ParseError::Unknown) => {
                err(out, "unknown command");
                return Next::Continue;
            }
            Err(e) => {
                err(out, &e.to_string());
                return Next::Continue;
            }
        };
        match (&self.state, cmd) {
            (State::Closed, _) => Next::Close,
            (_, Command::Capa) => {
                self.capa(out);
                Next::Continue
            }
            (_, Command::Noop) if self.is_authenticated() => {
                ok(out, "");
                Next::Continue
            }
            (State::Authorization { .. }, Command::Quit) => {
                ok(out, "Tern POP3 signing off");
                self.state = State::Closed;
                Next::Close
            }
            (State::Transaction { .. }, Command::Quit) => self.update(out).await,
            (State::Authorization { .. }, cmd) => self.authorization(cmd, out).await,
            (State::Transaction { .. }, cmd) => self.transaction(cmd, out).await,
        }
    }

    fn capa(&self, out: &mut Vec<u8>) {
        ok(out, "capability list follows");
        let mut caps: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .map(String::from)
            .into();
        if self.config.plaintext_auth_allowed {
            caps.push("USER".into());
            let mechanisms = tern_sasl::Mechanism::ALL.map(tern_sasl::Mechanism::name);
            caps.push(format!("SASL {}", mechanisms.join(" ")));
        }
        if self.config.stls_available {
            caps.push("STLS".into());
        }
        caps.push("IMPLEMENTATION Tern".into());
        for c in caps {
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    async fn authorization(&mut self, cmd: Command, out: &mut Vec<u8>) -> Next {
        let needs_tls = !self.config.plaintext_auth_allowed;
        match cmd {
            Command::Stls if self.config.stls_available => {
                ok(out, "begin TLS negotiation");
                return Next::StartTls;
            }
            Command::Stls => err(out, "STLS is not available here"),
            Command::User(_)
            | Command::Pass(_)
            | Command::Auth {
                mechanism: Some(_), ..
            } if needs_tls => err(
                out,
                "[AUTH] authentication over an unencrypted connection is refused; use STLS",
            ),
            Command::User(name) => {
                self.state = State::Authorization {
                    user: Some(name),
                    sasl: None,
                };
                ok(out, "send PASS");
            }
            Command::Pass(password) => {
                let State::Authorization {
                    user: Some(user), ..
                } = &self.state
                else {
                    err(out, "USER first");
                    return Next::Continue;
                };
                let user = user.clone();
                return self.login(&user, &password, out).await;
            }
            Command::Apop { .. } => err(
                out,
                "APOP is not supported: passwords are stored only as hashes",
            ),
            Command::Auth {
                mechanism: None, ..
            } => {
                ok(out, "SASL mechanisms follow");
                for m in tern_sasl::Mechanism::ALL {
                    out.extend_from_slice(m.name().as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
            }
            Command::Auth {
                mechanism: Some(m),
                initial_response,
            } => {
                let Some(mechanism) = tern_sasl::Mechanism::from_name(&m) else {
                    err(out, "unsupported SASL mechanism");
                    return Next::Continue;
                };
                let ir = initial_response.as_deref().map(str::as_bytes);
                let step = tern_sasl::Exchange::start(mechanism, ir).map(|(exchange, step)| {
                    if matches!(step, tern_sasl::Step::Challenge(_)) {
                        self.state = State::Authorization {
                            user: None,
                            sasl: Some(exchange),
                        };
                    }
                    step
                });
                return self.sasl_step(step, out).await;
            }
            _ => err(out, "not allowed before authentication"),
        }
        Next::Continue
    }

    /// Answers one step of an AUTH exchange (RFC 5034): a challenge goes out as `+ base64`,
    /// finished credentials are checked like USER/PASS; the SASL rules themselves are
    /// [`tern_sasl`]'s, shared with SMTP and IMAP.
    async fn sasl_step(
        &mut self,
        step: Result<tern_sasl::Step, tern_sasl::SaslError>,
        out: &mut Vec<u8>,
    ) -> Next {
        match step {
            Ok(tern_sasl::Step::Challenge(challenge)) => {
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(challenge)
                        .as_bytes(),
                );
                out.extend_from_slice(b"\r\n");
                Next::Continue
            }
            Ok(tern_sasl::Step::Done(c)) => self.login(&c.user, &c.password, out).await,
            Err(tern_sasl::SaslError::Cancelled) => {
                err(out, "authentication cancelled");
                Next::Continue
            }
            Err(e) => {
                err(out, &format!("[AUTH] {e}"));
                Next::Continue
            }
        }
    }

    async fn login(&mut self, user: &str, password: &str, out: &mut Vec<u8>) -> Next {
        let account = match self.backend.authenticate(user, password).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.auth_failures += 1;
                self.state = State::Authorization {
                    user: None,
                    sasl: None,
                };
                err(out, "[AUTH] invalid user name or password");
                return if self.auth_failures >= self.config.max_auth_failures {
                    self.state = State::Closed;
                    Next::Close
                } else {
                    Next::DelayThenContinue
                };
            }
            Err(e) => {
                err(out, &format!("[SYS/TEMP] {e}"));
                return Next::Continue;
            }
        };
        match self.backend.open(&account).await {
            Ok(Open::Opened(maildrop)) => {
                let n = maildrop.messages.len();
                let octets: u64 = maildrop.messages.iter().map(|m| m.size).sum();
                ok(out, &format!("maildrop has {n} messages ({octets} octets)"));
                self.state = State::Transaction {
                    account,
                    deleted: vec![false; n],
                    maildrop,
                    seen: Vec::new(),
                };
            }
            Ok(Open::InUse) => err(out, "[IN-USE] the maildrop is in use by another session"),
            Err(e) => err(out, &format!("[SYS/TEMP] {e}")),
        }
        Next::Continue
    }

    async fn transaction(&mut self, cmd: Command, out: &mut Vec<u8>) -> Next {
        let State::Transaction {
            maildrop, deleted, ..
        } = &mut self.state
        else {
            return Next::Continue;
        };
        let live = |n: u32, deleted: &[bool]| -> Result<usize, &'static str> {
            let i = (n as usize).checked_sub(1).ok_or("no such message")?;
            match deleted.get(i) {
                None => Err("no such message"),
                Some(true) => Err("message is deleted"),
                Some(false) => Ok(i),
            }
        };
        match cmd {
            Command::Stat => {
                let (n, octets) = maildrop
                    .messages
                    .iter()
                    .zip(deleted.iter())
                    .filter(|(_, d)| !**d)
                    .fold((0usize, 0u64), |(n, o), (m, _)| (n + 1, o + m.size));
                ok(out, &format!("{n} {octets}"));
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(None));
                ok(
                    out,
                    if uidl {
                        "unique-id listing follows"
                    } else {
                        "scan listing follows"
                    },
                );
                for (i, m) in maildrop
                    .messages
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !deleted[*i])
                {
                    let line = if uidl {
                        format!("{} {}\r\n", i + 1, uidl_of(maildrop.uid_validity, m.uid))
                    } else {
                        format!("{} {}\r\n", i + 1, m.size)
                    };
                    out.extend_from_slice(line.as_bytes());
                }
                out.extend_from_slice(b".\r\n");
            }
            Command::List(Some(n)) => match live(n, deleted) {
                Ok(i) => ok(out, &format!("{n} {}", maildrop.messages[i].size)),
                Err(e) => err(out, e),
            },
            Command::Uidl(Some(n)) => match live(n, deleted) {
                Ok(i) => ok(
                    out,
                    &format!(
                        "{n} {}",
                        uidl_of(maildrop.uid_validity, maildrop.messages[i].uid)
                    ),
                ),
                Err(e) => err(out, e),
            },
            Command::Retr(n) | Command::Top { msg: n, .. } => match live(n, deleted) {
                Ok(index) => {
                    let top = match cmd {
                        Command::Top { lines, .. } => Some(lines),
                        _ => None,
                    };
                    return Next::Send(Retrieval { index, top });
                }
                Err(e) => err(out, e),
            },
            Command::Dele(n) => match live(n, deleted) {
                Ok(i) => {
                    deleted[i] = true;
                    ok(out, &format!("message {n} marked for deletion"));
                }
                Err(e) => err(out, e),
            },
            Command::Rset => {
                deleted.iter_mut().for_each(|d| *d = false);
                ok(
                    out,
                    &format!("maildrop has {} messages", maildrop.messages.len()),
                );
            }
            Command::User(_) | Command::Pass(_) | Command::Apop { .. } | Command::Auth { .. } => {
                err(out, "already authenticated")
            }
            Command::Stls => err(out, "STLS is only allowed before authentication"),
            Command::Noop | Command::Capa | Command::Quit => {}
        }
        Next::Continue
    }

    /// QUIT in TRANSACTION: commit the deletions, then answer.
    /// Sends the message of a RETR or TOP: `+OK` once the store starts sending it (`-ERR`
    /// if it cannot), then its lines as they arrive, flushed every [`SEND_AT`] octets, so a
    /// session holds one piece of a large message, not the whole of it. Returns whether the
    /// answer was `+OK`. An error after `+OK` (the store went away mid-message) is an I/O
    /// error: the reply cannot be finished, so the connection must end.
    pub async fn send_message<O: Output>(
        &mut self,
        r: Retrieval,
        out: &mut O,
    ) -> std::io::Result<bool> {
        let State::Transaction {
            account,
            maildrop,
            seen,
            ..
        } = &mut self.state
        else {
            return Ok(false);
        };
        let Some(info) = maildrop.messages.get(r.index) else {
            err(out.buf(), "no such message");
            return Ok(false);
        };
        let (uid, size) = (info.uid, info.size);
        let mut content = match self.backend.retrieve(account, uid).await {
            Ok(c) => c,
            Err(e) => {
                err(out.buf(), &format!("[SYS/TEMP] {e}"));
                return Ok(false);
            }
        };
        let mut wire = match r.top {
            Some(lines) => {
                ok(out.buf(), "top of message follows");
                lines::DotStuffer::top(lines)
            }
            None => {
                ok(out.buf(), &format!("{size} octets"));
                lines::DotStuffer::whole()
            }
        };
        loop {
            match content.next_piece().await {
                Ok(Some(piece)) => wire.push(&piece, out.buf()),
                Ok(None) => break,
                Err(e) => return Err(std::io::Error::other(format!("reading the message: {e}"))),
            }
            if wire.is_done() {
                // TOP has its lines: the rest is not read (dropping the content ends it).
                break;
            }
            if out.buf().len() >= SEND_AT {
                out.flush().await?;
            }
        }
        wire.finish(out.buf());
        if r.top.is_none() {
            // Keep mode leaves a trace for IMAP users, recorded in batches.
            if !seen.contains(&uid) {
                seen.push(uid);
            }
            if seen.len() >= SEEN_BATCH {
                let batch = std::mem::take(seen);
                let account = account.clone();
                self.flush_seen(&account, &batch).await;
            }
        }
        Ok(true)
    }

    async fn update(&mut self, out: &mut Vec<u8>) -> Next {
        let State::Transaction {
            account,
            maildrop,
            deleted,
            seen,
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Next::Close;
        };
        let uids: Vec<u32> = maildrop
            .messages
            .iter()
            .zip(deleted.iter())
            .filter(|(_, d)| **d)
            .map(|(m, _)| m.uid)
            .collect();
        let seen: Vec<u32> = seen.into_iter().filter(|u| !uids.contains(u)).collect();
        self.flush_seen(&account, &seen).await;
        let result = if uids.is_empty() {
            Ok(())
        } else {
            self.backend.delete(&account, &uids).await
        };
        self.backend.close(&account).await;
        match result {
            Ok(()) => ok(
                out,
                &format!("Tern POP3 signing off ({} messages deleted)", uids.len()),
            ),
            Err(e) => err(
                out,
                &format!("[SYS/TEMP] some deleted messages were not removed: {e}"),
            ),
        }
        Next::Close
    }
}

/// The UIDL value of a message: stable forever and unique, from UIDVALIDITY and UID.
pub fn uidl_of(uid_validity: u32, uid: u32) -> String {
    format!("{uid_validity}.{uid}")
}

/// The session module has no logging dependency (it also builds for the fuzzer without the
/// server feature); a failed \Seen update is worth a line in the server's log.
fn tracing_free_warn(e: &BackendError) {
    #[cfg(feature = "server")]
    tracing::warn!(error = %e, "marking retrieved messages \\Seen failed");
    #[cfg(not(feature = "server"))]
    let _ = e;
}
