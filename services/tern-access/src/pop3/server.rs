//! The POP3 listeners: accept, apply the connection limits, run one [`Session`] per
//! connection over a [`Conn`], with bounded lines, the idle timeout, STLS and implicit TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_net::conn::Conn;
use tern_net::limit::ConnectionLimiter;
use tern_net::line::{read_line, Line};
use tern_net::tls::ReloadingTls;
use tern_proto::client::StoreClient;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::backend::StoreBackend;
use super::session::{Config as SessionConfig, Next, Session};
use crate::metrics;

/// RFC 2449 bounds a command at 255 octets; SASL responses (AUTH PLAIN's base64) may be
/// longer, so lines are accepted up to this.
pub const MAX_LINE: usize = 2048;
/// Bound on the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every POP3 connection of a node shares.
pub struct Pop3Context {
    /// The store.
    pub store: StoreClient,
    /// This node's name in lock owners.
    pub node: String,
    /// Reports retrievals into the messages' delivery traces.
    pub retrievals: crate::retrieval::RetrievalTracer,
    /// Certificate for STLS and POP3S, if configured.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Limits shared by all of this node's POP3 listeners.
    pub limiter: ConnectionLimiter,
    /// Plain-text authentication allowed (development, loopback-only listeners).
    pub plaintext_auth: bool,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Pause after a wrong password.
    pub auth_failure_delay: Duration,
    /// Wrong passwords before closing.
    pub max_auth_failures: u32,
    /// Failed commands before closing.
    pub max_errors: u32,
    /// Maildrop lock lifetime.
    pub lock_ttl: Duration,
}

/// Accepts connections until the task is dropped. `implicit_tls` makes it a POP3S listener.
pub async fn serve(listener: TcpListener, ctx: Arc<Pop3Context>, implicit_tls: bool) {
    let limiter = ctx.limiter.clone();
    crate::accept::accept_loop(
        listener,
        limiter,
        "pop3",
        implicit_tls,
        "-ERR [SYS/TEMP]",
        move |tcp, peer| {
            let ctx = ctx.clone();
            async move { run(tcp, peer, &ctx, implicit_tls).await }
        },
    )
    .await
}

async fn run(
    tcp: tokio::net::TcpStream,
    _peer: SocketAddr,
    ctx: &Pop3Context,
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
    let backend = StoreBackend::new(
        ctx.store.clone(),
        &ctx.node,
        ctx.lock_ttl,
        ctx.retrievals.clone(),
    );
    let mut session = Session::new(
        backend,
        SessionConfig {
            plaintext_auth_allowed: implicit_tls || ctx.plaintext_auth,
            stls_available: !implicit_tls && ctx.tls.is_some(),
            max_auth_failures: ctx.max_auth_failures,
        },
    );
    if implicit_tls {
        session.tls_started();
    }
    let result = converse(conn, &mut session, ctx).await;
    // Whatever ended the connection, a session without QUIT deletes nothing and gives its
    // lock back.
    session.abort().await;
    result
}

async fn converse(
    conn: Conn,
    session: &mut Session<StoreBackend>,
    ctx: &Pop3Context,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    reader.get_mut().write_all(session.greeting()).await?;
    let mut line = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(4096);
    let mut errors = 0u32;
    loop {
        let read = tokio::time::timeout(
            ctx.idle_timeout,
            read_line(&mut reader, &mut line, MAX_LINE),
        )
        .await;
        out.clear();
        let next = match read {
            Err(_) => {
                let _ = reader
                    .get_mut()
                    .write_all(b"-ERR idle for too long, closing\r\n")
                    .await;
                return Ok(());
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Line::Eof)) => return Ok(()),
            Ok(Ok(Line::TooLong)) => {
                out.extend_from_slice(b"-ERR line too long\r\n");
                Next::Continue
            }
            Ok(Ok(Line::Complete)) => session.handle(&line, &mut out).await,
        };
        if out.starts_with(b"-ERR") {
            errors += 1;
            metrics::command_answered("pop3", "err");
            metrics::command_failed("pop3");
        } else if out.starts_with(b"+OK") {
            metrics::command_answered("pop3", "ok");
        }
        let conn = reader.get_mut();
        conn.write_all(&out).await?;
        if errors >= ctx.max_errors && next != Next::Close {
            conn.write_all(b"-ERR too many errors, closing\r\n").await?;
            conn.flush().await?;
            return Ok(());
        }
        // Replies to pipelined commands (RFC 2449) go out together.
        if reader.buffer().is_empty() || next != Next::Continue {
            reader.get_mut().flush().await?;
        }
        match next {
            Next::Continue => {}
            Next::Close => {
                let _ = reader.get_mut().shutdown().await;
                return Ok(());
            }
            Next::DelayThenContinue => tokio::time::sleep(ctx.auth_failure_delay).await,
            Next::StartTls => {
                // Anything the client sent after STLS and before the handshake would be
                // treated as if it came over TLS (CVE-2011-0411): refuse it.
                if !reader.buffer().is_empty() {
                    return Ok(());
                }
                let Some(tls) = &ctx.tls else {
                    return Ok(());
                };
                let plain = reader.into_inner();
                let upgraded =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, plain.upgrade(&tls.acceptor()))
                        .await
                        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
                session.tls_started();
                reader = BufReader::new(upgraded);
            }
        }
    }
}
