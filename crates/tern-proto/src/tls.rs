//! Mutual TLS on every internal gRPC connection: the one way a Tern process dials another
//! ([`ClusterTls::channel`]) and the one way it accepts ([`ClusterTls::incoming`]).
//!
//! There is no plaintext mode. Each process holds a certificate from the cluster CA naming
//! its role (`tern_trust`); a server admits only clients with such a certificate and tells
//! the handlers who called ([`Peer`], then [`crate::authz`] decides by method); a client
//! admits only a server whose certificate names the role it meant to reach. The files are
//! re-read when they change ([`tern_trust::reload`]): new connections use the new
//! certificates, established ones keep theirs until they close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tern_trust::pki::CertFiles;
use tern_trust::reload::Reloading;
use tern_trust::tls::{client_config, peer_identity, server_config, Loaded, TlsError};
use tern_trust::{Identity, Role};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::client::{CONNECTION_WINDOW, STREAM_WINDOW};

/// How long a peer may take to complete the TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once on one listener; further connections wait in the kernel's
/// backlog. Bounds what a flood of half-open handshakes can cost.
pub const MAX_HANDSHAKES: usize = 256;

/// The layers of [`ClusterTls::server`].
pub type AuthorizeStack =
    tower::layer::util::Stack<crate::authz::Authorize, tower::layer::util::Identity>;

/// The configurations made from one reading of the files.
struct Configs {
    server: Arc<ServerConfig>,
    /// One client configuration per role a server may have.
    clients: Vec<(Role, Arc<ClientConfig>)>,
}

impl Configs {
    fn read(files: &CertFiles, expected: Option<&Identity>) -> Result<Self, TlsError> {
        let loaded = Loaded::read(files)?;
        if let Some(expected) = expected {
            if &loaded.identity != expected {
                return Err(TlsError::File {
                    path: files.cert.display().to_string(),
                    why: format!(
                        "now names {}, but this process runs as {expected}",
                        loaded.identity
                    ),
                });
            }
        }
        let clients = Role::ALL
            .iter()
            .map(|&role| Ok((role, Arc::new(client_config(&loaded, role)?))))
            .collect::<Result<_, TlsError>>()?;
        Ok(Self {
            server: Arc::new(server_config(&loaded)?),
            clients,
        })
    }
}

/// This process's certificate, key and cluster CA, reloaded when the files change.
pub struct ClusterTls {
    identity: Identity,
    configs: Reloading<Configs>,
}

impl ClusterTls {
    /// Reads `files` and checks them; the identity the certificate names is this process's
    /// for as long as it runs (a renewed certificate naming another role is refused).
    pub fn load(files: &CertFiles) -> Result<Arc<Self>, TlsError> {
        let identity = Loaded::read(files)?.identity;
        let paths: Vec<PathBuf> = vec![files.ca.clone(), files.cert.clone(), files.key.clone()];
        let (files, expected) = (files.clone(), identity.clone());
        let configs = Reloading::new(paths, move || Configs::read(&files, Some(&expected)))?;
        Ok(Arc::new(Self { identity, configs }))
    }

    /// [`ClusterTls::load`], refusing a certificate of another role than `role` (a service
    /// started with another service's certificate would be refused by every peer anyway,
    /// with a less helpful message).
    pub fn load_as(files: &CertFiles, role: Role) -> Result<Arc<Self>, TlsError> {
        let tls = Self::load(files)?;
        if tls.identity.role != role {
            return Err(TlsError::File {
                path: files.cert.display().to_string(),
                why: format!("names {}, but this is a {role} process", tls.identity),
            });
        }
        Ok(tls)
    }

    /// Who this process is, by its certificate.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        self.configs.current().server.clone()
    }

    fn client_config(&self, server_role: Role) -> Arc<ClientConfig> {
        let configs = self.configs.current();
        let found = configs.clients.iter().find(|(r, _)| *r == server_role);
        // Every role has a configuration (Configs::read makes one per Role::ALL).
        found.map_or_else(|| configs.clients[0].1.clone(), |(_, c)| c.clone())
    }

    /// A channel to `addr` (`host:port`) whose connections are made when first needed and
    /// accept only a server holding `server_role`'s certificate.
    pub fn channel(
        self: &Arc<Self>,
        addr: &str,
        server_role: Role,
    ) -> Result<Channel, tonic::transport::Error> {
        Ok(endpoint(addr)?.connect_with_connector_lazy(self.connector(server_role)))
    }

    /// What makes the connections of a channel, for callers with endpoint settings of their
    /// own (`Endpoint::connect_with_connector` connects eagerly, as ternctl does).
    pub fn connector(self: &Arc<Self>, server_role: Role) -> Connector {
        Connector {
            tls: self.clone(),
            server_role,
        }
    }

    /// The gRPC server builder every internal port starts from: traced requests, windows
    /// large enough for message bodies, and [`crate::authz::Authorize`] in front of every
    /// service. Serve it with [`ClusterTls::incoming`].
    pub fn server(&self) -> tonic::transport::Server<AuthorizeStack> {
        tonic::transport::Server::builder()
            .trace_fn(tern_telemetry::grpc::server_span)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .layer(crate::authz::Authorize::new(&self.identity.trust_domain))
    }

    /// Accepts connections on `listener`, completes each handshake on a task of its own
    /// (at most [`MAX_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]) and yields the
    /// established ones, for `Server::serve_with_incoming`. A client that fails the handshake
    /// (plaintext, no certificate, another CA) is dropped and logged at debug level. Stops
    /// when the returned stream is dropped.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<io::Result<PeerStream>> {
        let (tx, rx) = mpsc::channel(16);
        let tls = self.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, addr) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accepting an internal connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let identity =
                                peer_identity(stream.get_ref().1.peer_certificates()).ok();
                            let peer = Peer { addr, identity };
                            let _ = tx.send(Ok(PeerStream { stream, peer })).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %addr, error = %e, "internal TLS handshake refused")
                        }
                        Err(_) => tracing::debug!(peer = %addr, "internal TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// The settings every internal gRPC connection shares: quick connect failure (the store
/// client moves on to the next node), HTTP/2 keep-alives that notice a dead peer, and
/// windows large enough for message bodies.
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW))
}

/// Who is at the other end of an accepted internal connection; tonic puts it in every
/// request's extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The identity its certificate names; `None` when the CA signed a certificate that
    /// names no Tern identity (every call is then denied).
    pub identity: Option<Identity>,
}

/// An accepted, authenticated internal connection.
pub struct PeerStream {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Peer,
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Dials `host:port` and completes a mutual-TLS handshake that admits only a server of
/// `server_role`. The name in the URI is not checked against the certificate: pods change
/// addresses, and the identity is the certificate's URI.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<ClusterTls>,
    server_role: Role,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.client_config(self.server_role);
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: no host"))
            })?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            // Only the certificate's identity is checked; any syntactically valid name will do
            // for the handshake (SNI is not sent for IP addresses).
            let name = ServerName::try_from(host).unwrap_or_else(|_| {
                ServerName::try_from("tern.invalid").expect("a valid DNS name")
            });
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
