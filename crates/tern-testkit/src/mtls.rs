//! Probes of an internal gRPC port as an outsider would try it: a plaintext HTTP/2 client,
//! a TLS client without a certificate or with one from another CA, and raw calls of any
//! method path with any role's certificate. The tests of issue 15 use them on the store's
//! and the queue's ports.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tern_trust::pki::CertFiles;
use tern_trust::tls::Loaded;
use tern_trust::verifier::{AnyCertificate, CheckedServerCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// The HTTP/2 connection preface and an empty SETTINGS frame: what a gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Whether a server that answers an HTTP/2 preface with its own SETTINGS frame (the start
/// of every HTTP/2 connection) does so on `stream` within two seconds.
async fn answers_http2<S>(mut stream: S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if stream.write_all(H2_PREFACE).await.is_err() || stream.flush().await.is_err() {
        return false;
    }
    let mut header = [0u8; 9];
    match tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut header)).await {
        // Frame type 4 is SETTINGS.
        Ok(Ok(_)) => header[3] == 4,
        _ => false,
    }
}

/// Whether `addr` speaks HTTP/2 to a plaintext client.
pub async fn plaintext_admitted(addr: &str) -> anyhow::Result<bool> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(answers_http2(tcp).await)
}

/// Whether `addr` completes a TLS 1.3 handshake and then speaks HTTP/2 to a client that
/// presents `cert` (or no certificate). The client accepts any server certificate: the
/// question is only whether the server admits the client.
pub async fn tls_admitted(addr: &str, cert: Option<&CertFiles>) -> anyhow::Result<bool> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CheckedServerCert::new(
            AnyCertificate,
            provider,
        )));
    let mut config = match cert {
        Some(files) => {
            let loaded = Loaded::read(files)?;
            builder.with_client_auth_cert(loaded.chain, loaded.key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let name = ServerName::try_from("tern.invalid")?;
    match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        // TLS 1.3 lets the client finish before the server has judged its certificate; the
        // server's verdict shows in whether HTTP/2 follows.
        Ok(tls) => Ok(answers_http2(tls).await),
        Err(_) => Ok(false),
    }
}

/// What a call of a method path got: past authorization or refused by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Anything but PERMISSION_DENIED: the call reached the service (which may well have
    /// refused the empty request, or still be streaming).
    Reached,
    /// PERMISSION_DENIED, with its message.
    Denied(String),
}

/// Calls `path` (`/package.Service/Method`) on `channel` with one empty request message,
/// whatever the method's shape (a one-message stream fits unary and streaming methods).
pub async fn call_raw(channel: Channel, path: &str) -> anyhow::Result<Outcome> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.context("channel not ready")?;
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path.to_string())?;
    let request = tonic::Request::new(futures::stream::iter([()]));
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let call = async {
        let mut response = grpc.streaming(request, path, codec).await?.into_inner();
        response.message().await.map(|_| ())
    };
    Ok(
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Err(_) => Outcome::Reached,
            Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
                Outcome::Denied(status.message().to_string())
            }
            Ok(_) => Outcome::Reached,
        },
    )
}
