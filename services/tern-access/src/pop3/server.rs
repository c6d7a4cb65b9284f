//! The POP3 listeners: accept, apply the connection limits, run one [`Session`] per
//! connection over a [`Connection`] (bounded lines, idle and write time-outs, a login
//! deadline, STLS and implicit TLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_net::connection::{Connection, Read};
use tern_proto::client::StoreClient;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::backend::StoreBackend;
use super::session::{Config as SessionConfig, Next, Output, Session};
use crate::accept::ListenerPolicy;
use crate::metrics;

/// RFC 2449 bounds a command at 255 octets; SASL responses (AUTH PLAIN's base64) may be
/// longer, so lines are accepted up to this.
pub const MAX_LINE: usize = 2048;
/// Time from connecting to logging in (RFC 1939 §3's inactivity timer is for the whole
/// session; this bounds unauthenticated connections, which cost a slot and can guess
/// passwords, much more tightly).
const PREAUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// What every POP3 connection of a node shares.
pub struct Pop3Context {
    /// The store.
    pub store: StoreClient,
    /// This node's name in lock owners.
    pub node: String,
    /// Reports retrievals into the messages' delivery traces.
    pub retrievals: crate::retrieval::RetrievalTracer,
    /// TLS, limits, login and failure policy (shared with IMAP).
    pub policy: ListenerPolicy,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Maildrop lock lifetime.
    pub lock_ttl: Duration,
}

/// Accepts connections until the task is dropped. `implicit_tls` makes it a POP3S listener.
pub async fn serve(listener: TcpListener, ctx: Arc<Pop3Context>, implicit_tls: bool) {
    let policy = ctx.policy.clone();
    crate::accept::accept_loop(
        listener,
        &policy,
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
    peer: SocketAddr,
    ctx: &Pop3Context,
    implicit_tls: bool,
) -> std::io::Result<()> {
    let Some(mut conn) = ctx.policy.open(tcp, implicit_tls).await? else {
        return Ok(());
    };
    let backend = StoreBackend::new(
        ctx.store.for_session(),
        &ctx.node,
        ctx.lock_ttl,
        ctx.retrievals.clone(),
    )
    .for_client(peer.ip());
    let mut session = Session::new(
        backend,
        SessionConfig {
            plaintext_auth_allowed: implicit_tls || ctx.policy.plaintext_auth,
            stls_available: !implicit_tls && ctx.policy.tls.is_some(),
            max_auth_failures: ctx.policy.max_auth_failures,
        },
    );
    if implicit_tls {
        session.tls_started();
    }
    let result = converse(&mut conn, &mut session, ctx).await;
    // Whatever ended the connection, a session without QUIT deletes nothing and gives its
    // lock back.
    session.abort().await;
    result
}

/// The connection as a RETR writes to it.
struct ConnOutput<'c>(&'c mut Connection);

impl Output for ConnOutput<'_> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self.0.buffer()
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }
}

async fn converse(
    conn: &mut Connection,
    session: &mut Session<StoreBackend>,
    ctx: &Pop3Context,
) -> std::io::Result<()> {
    conn.send(session.greeting()).await?;
    // One deadline from connecting to logging in, not one per line (as IMAP).
    conn.set_deadline(Some(Instant::now() + PREAUTH_TIMEOUT));
    let mut out = Vec::with_capacity(4096);
    let mut errors = 0u32;
    loop {
        out.clear();
        // A node that is shutting down closes the session at its next read (a session
        // without QUIT deletes nothing, RFC 1939 §6); a command already pipelined is still
        // answered.
        let read = tokio::select! {
            biased;
            () = ctx.policy.drain.draining(), if !conn.has_pipelined_input() => {
                let _ = conn.send(b"-ERR [SYS/TEMP] server shutting down, try again later\r\n").await;
                conn.close().await;
                return Ok(());
            }
            read = conn.read_line(MAX_LINE, ctx.idle_timeout) => read?,
        };
        let next = match read {
            Read::TimedOut => {
                let _ = conn.send(b"-ERR idle for too long, closing\r\n").await;
                return Ok(());
            }
            Read::Eof => return Ok(()),
            Read::TooLong => {
                out.extend_from_slice(b"-ERR line too long\r\n");
                Next::Continue
            }
            Read::Done => session.handle(conn.line(), &mut out).await,
        };
        // RETR and TOP: the message goes out in pieces, straight into the connection's
        // buffer (after any replies pipelined before it), flushed as it fills.
        let (next, sent) = match next {
            Next::Send(r) => {
                let sent = session.send_message(r, &mut ConnOutput(conn)).await?;
                (Next::Continue, Some(sent))
            }
            other => (other, None),
        };
        if session.is_authenticated() {
            conn.set_deadline(None);
        }
        let answered_ok = sent.or_else(|| {
            if out.starts_with(b"-ERR") {
                Some(false)
            } else if out.starts_with(b"+OK") {
                Some(true)
            } else {
                None
            }
        });
        match answered_ok {
            Some(false) => {
                errors += 1;
                metrics::command_answered("pop3", "err");
                metrics::command_failed("pop3");
            }
            Some(true) => metrics::command_answered("pop3", "ok"),
            None => {}
        }
        conn.queue(&out);
        if errors >= ctx.policy.max_errors && next != Next::Close {
            conn.send(b"-ERR too many errors, closing\r\n").await?;
            return Ok(());
        }
        // Replies to pipelined commands (RFC 2449) go out together.
        if next == Next::Continue {
            conn.flush_unless_pipelined().await?;
        } else {
            conn.flush().await?;
        }
        match next {
            // Send was carried out above.
            Next::Continue | Next::Send(_) => {}
            Next::Close => {
                conn.close().await;
                return Ok(());
            }
            Next::DelayThenContinue => tokio::time::sleep(ctx.policy.auth_failure_delay).await,
            Next::StartTls => {
                let Some(tls) = &ctx.policy.tls else {
                    return Ok(());
                };
                // A refused upgrade (input pipelined after STLS, CVE-2011-0411) or a failed
                // handshake ends the connection.
                if conn.start_tls(&tls.acceptor()).await.is_err() {
                    return Ok(());
                }
                session.tls_started();
            }
        }
    }
}
