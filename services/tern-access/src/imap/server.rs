//! The IMAP listeners: accept, apply the connection limits, read each command (its lines and
//! literals, bounded), run it in the [`Session`], and handle the exchanges that take over the
//! connection for a while: STARTTLS, AUTHENTICATE's continuation and IDLE.
//!
//! Commands of one connection run one at a time (pipelined commands wait in the socket, so
//! TCP holds them back); the bounds are the line length, the literal sizes, the command
//! size and [`super::command::MAX_DEPTH`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tern_net::conn::Conn;
use tern_net::limit::ConnectionLimiter;
use tern_net::line::{read_line, Line};
use tern_net::timed::WriteTimeout;
use tern_net::tls::ReloadingTls;
use tern_proto::client::StoreClient;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::backend::ImapBackend;
use super::command::{parse, tag_of, Parsed};
use super::grpc::StoreBackend;
use super::session::{Next, Session, Settings, Sink};
use crate::metrics;

/// Longest command line (Dovecot's default too); real clients send long UID sets.
pub const MAX_LINE: usize = 64 << 10;
/// Largest literal outside APPEND (search strings, passwords).
pub const MAX_SMALL_LITERAL: u32 = 64 << 10;
/// Largest command (lines and literals together) other than an APPEND, once logged in.
const MAX_COMMAND: usize = 1 << 20;
/// Largest command before login: a login needs no more, and a stranger gets no more memory.
const MAX_PREAUTH_COMMAND: usize = 16 << 10;
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
/// Time from connecting to logging in (a connection that never logs in is closed).
const PREAUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// What every IMAP connection of a node shares.
pub struct ImapContext {
    /// The store.
    pub store: StoreClient,
    /// Certificate for STARTTLS and IMAPS, if configured.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Limits shared by this node's IMAP listeners.
    pub limiter: ConnectionLimiter,
    /// Plain-text authentication allowed (development, loopback-only listeners).
    pub plaintext_auth: bool,
    /// Autologout time of an authenticated session (at least [`MIN_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Pause after a wrong password.
    pub auth_failure_delay: Duration,
    /// Wrong passwords before closing.
    pub max_auth_failures: u32,
    /// BAD replies before closing.
    pub max_errors: u32,
    /// Largest APPEND literal (message size).
    pub max_message: u32,
    /// Reports whole-message fetches into the messages' delivery traces.
    pub retrievals: crate::retrieval::RetrievalTracer,
}

/// What the connection loop needs from its listener's settings (the [`ImapContext`] without
/// the store, so the loop runs over any [`ImapBackend`] and any [`Transport`]).
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
}

impl ImapContext {
    fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            tls: self.tls.clone(),
            idle_timeout: self.idle_timeout,
            auth_failure_delay: self.auth_failure_delay,
            max_errors: self.max_errors,
            max_message: self.max_message,
        }
    }

    fn session_settings(&self) -> Settings {
        Settings {
            starttls: self.tls.is_some(),
            plaintext_auth: self.plaintext_auth,
            max_auth_failures: self.max_auth_failures,
        }
    }
}

/// A connection the loop can run on: a socket that may switch to TLS (STARTTLS).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sized {
    /// Runs the TLS handshake as the server.
    fn start_tls(self, tls: &ReloadingTls) -> impl Future<Output = std::io::Result<Self>> + Send;
}

impl Transport for Conn {
    async fn start_tls(self, tls: &ReloadingTls) -> std::io::Result<Self> {
        self.upgrade(&tls.acceptor()).await
    }
}

/// Accepts connections until the task is dropped. `implicit_tls` makes it an IMAPS listener.
pub async fn serve(listener: TcpListener, ctx: Arc<ImapContext>, implicit_tls: bool) {
    let limiter = ctx.limiter.clone();
    crate::accept::accept_loop(
        listener,
        limiter,
        "imap",
        implicit_tls,
        "* BYE [UNAVAILABLE]",
        move |tcp, _peer| run(tcp, ctx.clone(), implicit_tls),
    )
    .await
}

async fn run(
    tcp: tokio::net::TcpStream,
    ctx: Arc<ImapContext>,
    implicit_tls: bool,
) -> std::io::Result<()> {
    let mut conn = Conn::Plain(tcp);
    if implicit_tls {
        let Some(tls) = &ctx.tls else {
            return Ok(());
        };
        conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.upgrade(&tls.acceptor()))
            .await
            .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    }
    let backend = StoreBackend::new(ctx.store.clone(), ctx.retrievals.clone());
    let mut session = Session::new(backend, ctx.session_settings(), implicit_tls);
    converse(
        WriteTimeout::new(conn, WRITE_TIMEOUT),
        &mut session,
        &ctx.loop_settings(),
    )
    .await
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

type Reader<S> = BufReader<WriteTimeout<S>>;

async fn read_command<S: Transport>(
    reader: &mut Reader<S>,
    line: &mut Vec<u8>,
    ctx: &LoopSettings,
    timeout: Duration,
    authenticated: bool,
) -> std::io::Result<Read> {
    let mut buf: Vec<u8> = Vec::new();
    let mut literals = 0usize;
    loop {
        let read = tokio::time::timeout(timeout, read_line(reader, line, MAX_LINE)).await;
        match read {
            Err(_) => {
                let _ = reader
                    .get_mut()
                    .write_all(b"* BYE autologout: idle for too long\r\n")
                    .await;
                return Ok(Read::Close);
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Line::Eof)) => return Ok(Read::Close),
            Ok(Ok(Line::TooLong)) => {
                let tag = if buf.is_empty() { None } else { tag_of(&buf) };
                let reply = match tag {
                    Some(t) => format!("{t} BAD line too long\r\n"),
                    None => "* BAD line too long\r\n".to_string(),
                };
                reader.get_mut().write_all(reply.as_bytes()).await?;
                return Ok(Read::Answered);
            }
            Ok(Ok(Line::Complete)) => {
                buf.extend_from_slice(line);
                buf.extend_from_slice(b"\r\n");
            }
        }
        if buf == b"\r\n" {
            // Empty lines between commands are ignored, as most servers do.
            return Ok(Read::Nothing);
        }
        let (max_literal, max_command) = bounds(&buf, ctx, authenticated);
        if buf.len() > max_command {
            reader
                .get_mut()
                .write_all(b"* BYE [TOOBIG] command too large\r\n")
                .await?;
            return Ok(Read::Close);
        }
        match parse(&buf, max_literal) {
            Parsed::Command(c, _) => return Ok(Read::Command(c)),
            Parsed::NeedLiteral {
                length,
                synchronizing,
            } => {
                literals += 1;
                let start = buf.len();
                if literals > MAX_LITERALS || start + length as usize > max_command {
                    // Several literals that each pass add up to too much for one command.
                    reader
                        .get_mut()
                        .write_all(b"* BYE [TOOBIG] command too large\r\n")
                        .await?;
                    return Ok(Read::Close);
                }
                if synchronizing {
                    let w = reader.get_mut();
                    w.write_all(b"+ go ahead\r\n").await?;
                    w.flush().await?;
                }
                buf.resize(start + length as usize, 0);
                let got = tokio::time::timeout(timeout, reader.read_exact(&mut buf[start..])).await;
                match got {
                    Err(_) => return Ok(Read::Close),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Ok(Read::Close)
                    }
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(_)) => {}
                }
                // The rest of the command follows the literal on the same logical line.
            }
            Parsed::Incomplete => {
                let reply = match tag_of(&buf) {
                    Some(t) => format!("{t} BAD incomplete command\r\n"),
                    None => "* BAD incomplete command\r\n".to_string(),
                };
                reader.get_mut().write_all(reply.as_bytes()).await?;
                return Ok(Read::Answered);
            }
            Parsed::LiteralTooBig {
                tag,
                length,
                synchronizing,
            } => {
                let w = reader.get_mut();
                if synchronizing {
                    // The client waits for `+` and will not send it (RFC 7889 TOOBIG).
                    w.write_all(format!("{tag} NO [TOOBIG] a literal of {length} octets is over this server's limit\r\n").as_bytes()).await?;
                    return Ok(Read::Answered);
                }
                // A non-synchronizing literal is already on its way: close (RFC 7888 §4).
                w.write_all(b"* BYE [TOOBIG] literal over this server's limit\r\n")
                    .await?;
                return Ok(Read::Close);
            }
            Parsed::Bad { tag, reason } => {
                metrics::command_answered("imap", "bad");
                metrics::command_failed("imap");
                let reply = match tag {
                    Some(t) => format!("{t} BAD {reason}\r\n"),
                    None => format!("* BAD {reason}\r\n"),
                };
                reader.get_mut().write_all(reply.as_bytes()).await?;
                return Ok(Read::Answered);
            }
        }
    }
}

/// Runs one connection: the greeting, then command after command until LOGOUT, an error
/// or a time-out.
pub async fn converse<S: Transport, B: ImapBackend>(
    conn: WriteTimeout<S>,
    session: &mut Session<B>,
    ctx: &LoopSettings,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let connected = tokio::time::Instant::now();
    reader
        .get_mut()
        .write_all(session.greeting().as_bytes())
        .await?;
    reader.get_mut().flush().await?;
    let mut line = Vec::with_capacity(256);
    let mut errors = 0u32;
    loop {
        let authenticated = session.authenticated();
        let timeout = if authenticated {
            ctx.idle_timeout.max(MIN_IDLE_TIMEOUT)
        } else {
            // One deadline from connecting to logging in, not one per line.
            PREAUTH_TIMEOUT.saturating_sub(connected.elapsed())
        };
        let cmd = match read_command(&mut reader, &mut line, ctx, timeout, authenticated).await? {
            Read::Close => {
                let _ = reader.get_mut().flush().await;
                return Ok(());
            }
            Read::Nothing => continue,
            Read::Answered => {
                errors += 1;
                if errors >= ctx.max_errors {
                    reader
                        .get_mut()
                        .write_all(b"* BYE too many errors\r\n")
                        .await?;
                    reader.get_mut().flush().await?;
                    return Ok(());
                }
                if reader.buffer().is_empty() {
                    reader.get_mut().flush().await?;
                }
                continue;
            }
            Read::Command(c) => c,
        };
        let mut next = {
            let mut sink = Sink::new(reader.get_mut());
            let next = session.handle(*cmd, &mut sink).await?;
            if last_reply_is_bad(&sink.buf) {
                errors += 1;
            }
            sink.write_buffered().await?;
            next
        };
        if errors >= ctx.max_errors && next != Next::Close {
            reader
                .get_mut()
                .write_all(b"* BYE too many errors\r\n")
                .await?;
            reader.get_mut().flush().await?;
            return Ok(());
        }
        // Pipelined commands' replies go out together.
        if reader.buffer().is_empty() || next != Next::Continue {
            reader.get_mut().flush().await?;
        }
        loop {
            match next {
                Next::Continue => break,
                Next::Close => {
                    let _ = reader.get_mut().flush().await;
                    let _ = reader.get_mut().shutdown().await;
                    return Ok(());
                }
                Next::Delay => {
                    tokio::time::sleep(ctx.auth_failure_delay).await;
                    break;
                }
                Next::StartTls => {
                    // Anything sent after STARTTLS and before the handshake would count as
                    // sent under TLS (CVE-2011-0411): refuse it.
                    if !reader.buffer().is_empty() {
                        return Ok(());
                    }
                    let Some(tls) = &ctx.tls else {
                        return Ok(());
                    };
                    let plain = reader.into_inner().into_inner();
                    let upgraded = tokio::time::timeout(HANDSHAKE_TIMEOUT, plain.start_tls(tls))
                        .await
                        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
                    session.tls_started();
                    reader = BufReader::new(WriteTimeout::new(upgraded, WRITE_TIMEOUT));
                    break;
                }
                Next::AuthContinue(tag) => {
                    let w = reader.get_mut();
                    w.write_all(b"+ \r\n").await?;
                    w.flush().await?;
                    let read = tokio::time::timeout(
                        PREAUTH_TIMEOUT,
                        read_line(&mut reader, &mut line, 12 << 10),
                    )
                    .await;
                    let resp: Vec<u8> = match read {
                        Ok(Ok(Line::Complete)) => line.clone(),
                        Ok(Ok(Line::TooLong)) => b"!".to_vec(),
                        _ => return Ok(()),
                    };
                    let mut sink = Sink::new(reader.get_mut());
                    next = session.auth_response(&tag, &resp, &mut sink).await?;
                    sink.flush().await?;
                }
                Next::Idle(tag) => {
                    idle(&mut reader, &mut line, session, ctx, &tag).await?;
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
async fn idle<S: Transport, B: ImapBackend>(
    reader: &mut Reader<S>,
    line: &mut Vec<u8>,
    session: &mut Session<B>,
    ctx: &LoopSettings,
    tag: &str,
) -> std::io::Result<()> {
    let timeout = ctx.idle_timeout.max(MIN_IDLE_TIMEOUT);
    // Anything already pending goes out at once.
    {
        let mut sink = Sink::new(reader.get_mut());
        session.sync(&mut sink, true, false).await;
        sink.flush().await?;
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            // fill_buf consumes nothing, so losing this race to a change loses no input.
            ready = tokio::io::AsyncBufReadExt::fill_buf(reader) => {
                ready?;
                let read = tokio::time::timeout(PREAUTH_TIMEOUT, read_line(reader, line, 1024)).await;
                let read = match read {
                    Ok(r) => r?,
                    Err(_) => {
                        // Half a line and then silence: end the session rather than leave
                        // IDLE without its tagged reply.
                        session.force_logout();
                        return Ok(());
                    }
                };
                let mut sink = Sink::new(reader.get_mut());
                match read {
                    Line::Complete if line.eq_ignore_ascii_case(b"DONE") => {
                        session.idle_done(tag, &mut sink).await;
                    }
                    Line::Eof => return Ok(()),
                    _ => sink.buf.extend_from_slice(format!("{tag} BAD expected DONE\r\n").as_bytes()),
                }
                sink.flush().await?;
                return Ok(());
            }
            change = session.next_change() => {
                if change.is_none() {
                    // The feed ended (the session is being torn down).
                    continue;
                }
                let mut sink = Sink::new(reader.get_mut());
                session.sync(&mut sink, true, false).await;
                if session.mailbox_gone() {
                    sink.buf.extend_from_slice(b"* BYE the selected mailbox was deleted\r\n");
                    sink.flush().await?;
                    session.force_logout();
                    return Ok(());
                }
                sink.flush().await?;
            }
            _ = &mut deadline => {
                reader.get_mut().write_all(b"* BYE autologout: idle for too long\r\n").await?;
                reader.get_mut().flush().await?;
                session.force_logout();
                return Ok(());
            }
        }
    }
}
