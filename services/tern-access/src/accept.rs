//! The accept loop both protocols share: accept, apply the connection limits (refusing with
//! the protocol's own error line), count the session, and run it in its own task and span;
//! and the policy both protocols' listeners share ([`ListenerPolicy`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_net::connection::Connection;
use tern_net::limit::ConnectionLimiter;
use tern_net::tls::ReloadingTls;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::metrics;

/// What the POP3 and IMAP listeners of a node share: TLS, the connection limits and how a
/// session's login and failures are policed. Each protocol keeps its own idle time-out.
#[derive(Clone)]
pub struct ListenerPolicy {
    /// Certificate for STARTTLS/STLS and implicit TLS, if configured.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Limits shared by all of this node's POP3 and IMAP listeners.
    pub limiter: ConnectionLimiter,
    /// Plain-text authentication allowed (development, loopback-only listeners).
    pub plaintext_auth: bool,
    /// Pause after a wrong password.
    pub auth_failure_delay: Duration,
    /// Wrong passwords before closing.
    pub max_auth_failures: u32,
    /// Failed commands (POP3 -ERR, IMAP BAD) before closing.
    pub max_errors: u32,
    /// The write and TLS handshake time-outs of every connection.
    pub timeouts: tern_net::connection::Timeouts,
    /// Set on SIGTERM: IMAP sessions get `* BYE`, POP3 sessions a closing `-ERR`, at their
    /// next read.
    pub drain: tern_net::drain::Drain,
}

impl ListenerPolicy {
    /// The connection for an accepted socket: TLS at once on an implicit-TLS listener,
    /// plain otherwise. `None` for an implicit-TLS listener without a certificate (the
    /// settings' check refuses that; a connection there is closed unanswered).
    pub(crate) async fn open(
        &self,
        tcp: TcpStream,
        implicit_tls: bool,
    ) -> std::io::Result<Option<Connection>> {
        if !implicit_tls {
            return Ok(Some(Connection::new(tcp, self.timeouts)));
        }
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        Connection::accept_tls(tcp, &tls.acceptor(), self.timeouts)
            .await
            .map(Some)
    }
}

/// Accepts connections until the task is dropped. `protocol` names metrics and spans;
/// `refusal` starts the line a refused plain-text client gets (the limiter says why);
/// `session` runs one connection.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    policy: &ListenerPolicy,
    protocol: &'static str,
    implicit_tls: bool,
    refusal: &'static str,
    session: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let (tcp, peer) = tern_net::listen::accept_retrying(&listener).await;
        let (limiter, drain, session) = (
            policy.limiter.clone(),
            policy.drain.clone(),
            session.clone(),
        );
        let span = tracing::info_span!("session", protocol, peer = %peer, tls = implicit_tls);
        tokio::spawn(
            async move {
                let slot = match limiter.try_acquire(peer.ip()) {
                    Ok(s) => s,
                    Err(refused) => {
                        metrics::refused(protocol);
                        let mut tcp = tcp;
                        if !implicit_tls {
                            let line = format!("{refusal} {refused}\r\n");
                            let _ = tcp.write_all(line.as_bytes()).await;
                        }
                        return;
                    }
                };
                let _open = metrics::SessionGauge::open(protocol);
                let _draining = drain.session();
                if let Err(e) = session(tcp, peer).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}
