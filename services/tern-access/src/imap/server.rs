//! The IMAP listeners: accept, apply the connection limits, read each command (its lines and
//! literals, bounded), run it in the [`Session`], and handle the exchanges that take over the
//! connection for a while: STARTTLS, AUTHENTICATE's continuation and IDLE.
//!
//! Commands of one connection run one at a time (pipelined commands wait in the socket, so
//! TCP holds them back); the bounds are the line length, the literal sizes, the command
//! size and [`super::command::MAX_DEPTH`].

use std::sync::Arc;
use std::time::Duration;

use tern_net::connection::{Connection, Read as Input, Timeouts};
use tern_net::drain::Drain;
use tern_net::tls::ReloadingTls;
use tern_proto::client::StoreClient;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::backend::ImapBackend;
use super::command::{parse, tag_of, Parsed};
use super::grpc::StoreBackend;
use super::session::{Next, Session, Settings, Sink};
use crate::accept::ListenerPolicy;
use crate::metrics;

/// Longest command line (Dovecot's default too); real clients send long UID sets.
pub const MAX_LINE: usize = 64 << 10;
/// Largest literal outside APPEND (search strings, passwords).
pub const MAX_SMALL_LITERAL: u32 = 64 << 10;
/// Largest command (lines and literals together) other than an APPEND, once logged in.
const MAX_COMMAND: usize = 1 << 20;
/// Largest command before login: the largest ID RFC 2971 allows (30 pairs of a 30-octet
/// field and a 1,024-octet value, quoted: about 32 KiB) fits, a login needs less, and a
/// stranger gets no more memory.
const MAX_PREAUTH_COMMAND: usize = 40 << 10;
/// Literals in one command (APPEND needs one, LOGIN two; SEARCH a few). Each literal makes
/// the command be parsed again, so this also bounds that work.
const MAX_LITERALS: usize = 16;
/// A write that makes no progress for this long ends the connection (a client that stopped
/// reading must not hold its slot forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// What a session hears when its node shuts down.
const SHUTDOWN_BYE: &[u8] = b"* BYE [UNAVAILABLE] server shutting down, try again later\r\n";
/// Time from connecting to logging in (a connection that never logs in is closed).
const PREAUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// What every IMAP connection of a node shares.
pub struct ImapContext {
    /// The store.
    pub store: StoreClient,
    /// TLS, limits, login and failure policy (shared with POP3).
    pub policy: ListenerPolicy,
    /// Autologout time of an authenticated session (at least [`MIN_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Largest APPEND literal (message size).
    pub max_message: u32,
    /// Reports whole-message fetches into the messages' delivery traces.
    pub retrievals: crate::retrieval::RetrievalTracer,
}

/// What the connection loop needs from its listener's settings (the [`ImapContext`] without
/// the store, so the loop runs over any [`ImapBackend`]).
pub struct LoopSettings {
    /// Certificate for STARTTLS, if configured.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Autologout time of an authenticated session (at least [`MIN_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Pause after a wrong password.
    pub auth_failure_delay: Duration,
    /// BAD replies before closing.
    pub max_errors: u32,
    /// Largest APPEND literal (message size).
    pub max_message: u32,
    /// Set on SIGTERM: the session says `* BYE` at its next read, or at once in IDLE.
    pub drain: Drain,
}

impl ImapContext {
    fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            tls: self.policy.tls.clone(),
            idle_timeout: self.idle_timeout,
            auth_failure_delay: self.policy.auth_failure_delay,
            max_errors: self.policy.max_errors,
            max_message: self.max_message,
            drain: self.policy.drain.clone(),
        }
    }

    fn session_settings(&self) -> Settings {
        Settings {
            starttls: self.policy.tls.is_some(),
            plaintext_auth: self.policy.plaintext_auth,
            max_auth_failures: self.policy.max_auth_failures,
        }
    }
}

/// The write and handshake time-outs of every IMAP connection.
pub fn timeouts() -> Timeouts {
    Timeouts {
        write: WRITE_TIMEOUT,
        handshake: HANDSHAKE_TIMEOUT,
    }
}

/// Accepts connections until the task is dropped. `implicit_tls` makes it an IMAPS listener.
pub async fn serve(listener: TcpListener, ctx: Arc<ImapContext>, implicit_tls: bool) {
    let policy = ctx.policy.clone();
    crate::accept::accept_loop(
        listener,
        &policy,
        "imap",
        implicit_tls,
        "* BYE [UNAVAILABLE]",
        move |tcp, peer| run(tcp, peer, ctx.clone(), implicit_tls),
    )
    .await
}

async fn run(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    ctx: Arc<ImapContext>,
    implicit_tls: bool,
) -> std::io::Result<()> {
    let Some(mut conn) = ctx.policy.open(tcp, implicit_tls).await? else {
        return Ok(());
    };
    let backend =
        StoreBackend::new(ctx.store.for_session(), ctx.retrievals.clone()).for_client(peer.ip());
    let mut session = Session::new(backend, ctx.session_settings(), implicit_tls);
    converse(&mut conn, &mut session, &ctx.loop_settings()).await
}

/// One command read off the wire, or why not.
enum Read {
    Command(Box<imap_codec::imap_types::command::Command<'static>>),
    /// Answered already (BAD, NO [TOOBIG]); read the next.
    Answered,
    /// Close the connection.
    Close,
    /// An empty line: nothing to answer.
    Nothing,
}

/// The bounds on one literal and on the whole command in `buf`: APPEND carries a message,
/// but only once logged in; before that, nothing needs more than a login.
fn bounds(buf: &[u8], ctx: &LoopSettings, authenticated: bool) -> (u32, usize) {
    if !authenticated {
        return (MAX_PREAUTH_COMMAND as u32, MAX_PREAUTH_COMMAND);
    }
    let word = buf.split(|b| *b == b' ').nth(1).unwrap_or_default();
    if word.eq_ignore_ascii_case(b"APPEND") {
        (ctx.max_message, ctx.max_message as usize + MAX_COMMAND)
    } else {
        (MAX_SMALL_LITERAL, MAX_COMMAND)
    }
}

/// Queues `tag BAD text` (or untagged when the tag is unknown).
fn queue_bad(conn: &mut Connection, tag: Option<&str>, text: &str) {
    let reply = match tag {
        Some(t) => format!("{t} BAD {text}\r\n"),
        None => format!("* BAD {text}\r\n"),
    };
    conn.queue(reply.as_bytes());
}

/// Reads one command: its lines and literals, within the bounds of [`bounds`]. Replies that
/// end the command here (BAD, NO [TOOBIG], BYE) are queued on `conn`. A literal's buffer
/// grows as its octets arrive, never by what it announces: a client that announces a large
/// APPEND and stalls costs the node nothing.
async fn read_command(
    conn: &mut Connection,
    ctx: &LoopSettings,
    idle: Duration,
    authenticated: bool,
) -> std::io::Result<Read> {
    let mut buf: Vec<u8> = Vec::new();
    let mut literals = 0usize;
    loop {
        match conn.read_line(MAX_LINE, idle).await? {
            Input::TimedOut => {
                conn.queue(b"* BYE autologout: idle for too long\r\n");
                return Ok(Read::Close);
            }
            Input::Eof => return Ok(Read::Close),
            Input::TooLong => {
                let tag = if buf.is_empty() { None } else { tag_of(&buf) };
                queue_bad(conn, tag.as_deref(), "line too long");
                return Ok(Read::Answered);
            }
            Input::Done => {
                buf.extend_from_slice(conn.line());
                buf.extend_from_slice(b"\r\n");
            }
        }
        if buf == b"\r\n" {
            // Empty lines between commands are ignored, as most servers do.
            return Ok(Read::Nothing);
        }
        let (max_literal, max_command) = bounds(&buf, ctx, authenticated);
        if buf.len() > max_command {
            conn.queue(b"* BYE [TOOBIG] command too large\r\n");
            return Ok(Read::Close);
        }
        match parse(&buf, max_literal) {
            Parsed::Command(c, _) => return Ok(Read::Command(c)),
            Parsed::NeedLiteral {
                length,
                synchronizing,
            } => {
                literals += 1;
                let end = buf.len() + length as usize;
                if literals > MAX_LITERALS || end > max_command {
                    // Several literals that each pass add up to too much for one command.
                    conn.queue(b"* BYE [TOOBIG] command too large\r\n");
                    return Ok(Read::Close);
                }
                if synchronizing {
                    conn.send(b"+ go ahead\r\n").await?;
                }
                while buf.len() < end {
                    let want = end - buf.len();
                    if conn.read_some(&mut buf, want, idle).await? != Input::Done {
                        return Ok(Read::Close);
                    }
                }
                // The rest of the command follows the literal on the same logical line.
            }
            Parsed::Incomplete => {
                queue_bad(conn, tag_of(&buf).as_deref(), "incomplete command");
                return Ok(Read::Answered);
            }
            Parsed::LiteralTooBig {
                tag,
                length,
                synchronizing,
            } => {
                if synchronizing {
                    // The client waits for `+` and will not send it (RFC 7889 TOOBIG).
                    conn.queue(
                        format!("{tag} NO [TOOBIG] a literal of {length} octets is over this server's limit\r\n")
                            .as_bytes(),
                    );
                    return Ok(Read::Answered);
                }
                // A non-synchronizing literal is already on its way: close (RFC 7888 §4).
                conn.queue(b"* BYE [TOOBIG] literal over this server's limit\r\n");
                return Ok(Read::Close);
            }
            Parsed::Bad { tag, reason } => {
                metrics::command_answered("imap", "bad");
                metrics::command_failed("imap");
                queue_bad(conn, tag.as_deref(), reason);
                return Ok(Read::Answered);
            }
        }
    }
}

/// Runs one connection: the greeting, then command after command until LOGOUT, an error
/// or a time-out.
pub async fn converse<B: ImapBackend>(
    conn: &mut Connection,
    session: &mut Session<B>,
    ctx: &LoopSettings,
) -> std::io::Result<()> {
    conn.send(session.greeting().as_bytes()).await?;
    // One deadline from connecting to logging in, not one per line.
    conn.set_deadline(Some(Instant::now() + PREAUTH_TIMEOUT));
    let mut errors = 0u32;
    loop {
        let authenticated = session.authenticated();
        if authenticated {
            conn.set_deadline(None);
        }
        let idle = ctx.idle_timeout.max(MIN_IDLE_TIMEOUT);
        // A node that is shutting down says BYE (RFC 3501 §7.1.5) instead of waiting for
        // the next command. Only the wait for a command's first octet races the drain (that
        // wait consumes nothing, so it may be cancelled); a command that has begun, an
        // APPEND literal under way included, is read and answered whole.
        if !conn.has_pipelined_input() {
            let waited = tokio::select! {
                biased;
                () = ctx.drain.draining() => {
                    conn.queue(SHUTDOWN_BYE);
                    conn.close().await;
                    return Ok(());
                }
                waited = conn.fill(idle) => waited?,
            };
            match waited {
                Input::Done => {}
                Input::Eof => return Ok(()),
                Input::TimedOut | Input::TooLong => {
                    conn.queue(b"* BYE autologout: idle for too long\r\n");
                    conn.close().await;
                    return Ok(());
                }
            }
        }
        let cmd = match read_command(conn, ctx, idle, authenticated).await? {
            Read::Close => {
                conn.close().await;
                return Ok(());
            }
            Read::Nothing => continue,
            Read::Answered => {
                errors += 1;
                if errors >= ctx.max_errors {
                    conn.queue(b"* BYE too many errors\r\n");
                    conn.close().await;
                    return Ok(());
                }
                conn.flush_unless_pipelined().await?;
                continue;
            }
            Read::Command(c) => c,
        };
        let mut next = {
            let mut sink = Sink::new(conn);
            let next = session.handle(*cmd, &mut sink).await?;
            if last_reply_is_bad(sink.written()) {
                errors += 1;
            }
            // Dropping the sink hands its replies to the connection.
            next
        };
        if errors >= ctx.max_errors && next != Next::Close {
            conn.queue(b"* BYE too many errors\r\n");
            conn.close().await;
            return Ok(());
        }
        // Pipelined commands' replies go out together.
        if next == Next::Continue {
            conn.flush_unless_pipelined().await?;
        } else {
            conn.flush().await?;
        }
        loop {
            match next {
                Next::Continue => break,
                Next::Close => {
                    conn.close().await;
                    return Ok(());
                }
                Next::Delay => {
                    tokio::time::sleep(ctx.auth_failure_delay).await;
                    break;
                }
                Next::StartTls => {
                    let Some(tls) = &ctx.tls else {
                        return Ok(());
                    };
                    // Input pipelined after STARTTLS (CVE-2011-0411) or a failed handshake
                    // ends the connection.
                    if conn.start_tls(&tls.acceptor()).await.is_err() {
                        return Ok(());
                    }
                    session.tls_started();
                    break;
                }
                Next::AuthContinue(tag) => {
                    conn.send(b"+ \r\n").await?;
                    let resp: Vec<u8> = match conn.read_line(12 << 10, PREAUTH_TIMEOUT).await? {
                        Input::Done => conn.line().to_vec(),
                        Input::TooLong => b"!".to_vec(),
                        Input::Eof | Input::TimedOut => return Ok(()),
                    };
                    let mut sink = Sink::new(conn);
                    next = session.auth_response(&tag, &resp, &mut sink).await?;
                    sink.flush().await?;
                }
                Next::Idle(tag) => {
                    idle_until_done(conn, session, ctx, &tag).await?;
                    if session.logged_out() {
                        return Ok(());
                    }
                    break;
                }
            }
        }
    }
}

/// Whether the output's last line is a tagged BAD.
fn last_reply_is_bad(out: &[u8]) -> bool {
    let body = out.strip_suffix(b"\r\n").unwrap_or(out);
    let last = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => &body[i + 1..],
        None => body,
    };
    let mut words = last.split(|b| *b == b' ');
    let tag = words.next().unwrap_or_default();
    tag != b"*" && tag != b"+" && words.next() == Some(b"BAD")
}

/// IDLE (RFC 2177): changes go out as they happen until the client sends DONE.
async fn idle_until_done<B: ImapBackend>(
    conn: &mut Connection,
    session: &mut Session<B>,
    ctx: &LoopSettings,
    tag: &str,
) -> std::io::Result<()> {
    let timeout = ctx.idle_timeout.max(MIN_IDLE_TIMEOUT);
    // Anything already pending goes out at once.
    {
        let mut sink = Sink::new(conn);
        session.sync(&mut sink, true, false).await;
        sink.flush().await?;
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            // Waiting for input consumes nothing, so losing this race to a change loses no
            // input.
            ready = conn.input_ready() => {
                ready?;
                let read = conn.read_line(1024, PREAUTH_TIMEOUT).await?;
                if read == Input::TimedOut {
                    // Half a line and then silence: end the session rather than leave IDLE
                    // without its tagged reply.
                    session.force_logout();
                    return Ok(());
                }
                if read == Input::Eof {
                    return Ok(());
                }
                let done = read == Input::Done && conn.line().eq_ignore_ascii_case(b"DONE");
                let mut sink = Sink::new(conn);
                if done {
                    session.idle_done(tag, &mut sink).await;
                } else {
                    sink.buf.extend_from_slice(format!("{tag} BAD expected DONE\r\n").as_bytes());
                }
                sink.flush().await?;
                return Ok(());
            }
            change = session.next_change() => {
                if change.is_none() {
                    // The feed ended (the session is being torn down).
                    continue;
                }
                let mut sink = Sink::new(conn);
                session.sync(&mut sink, true, false).await;
                if let Some(why) = session.mailbox_gone() {
                    sink.buf.extend_from_slice(format!("* BYE {why}\r\n").as_bytes());
                    sink.flush().await?;
                    session.force_logout();
                    return Ok(());
                }
                sink.flush().await?;
            }
            () = ctx.drain.draining() => {
                conn.send(SHUTDOWN_BYE).await?;
                session.force_logout();
                return Ok(());
            }
            _ = &mut deadline => {
                conn.send(b"* BYE autologout: idle for too long\r\n").await?;
                session.force_logout();
                return Ok(());
            }
        }
    }
}
