//! The rustls setup for STARTTLS: opportunistic (any certificate, RFC 7435) or required
//! (verified against webpki-roots plus configured roots and the MX host name).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tern_trust::verifier::{AnyCertificate, CheckedServerCert};

use super::{ClientConfig, ClientError, TlsPolicy};

/// The rustls configuration and the name to present for a STARTTLS handshake.
pub(super) fn tls_setup(
    server_name: &str,
    peer: SocketAddr,
    config: &ClientConfig,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // MX names from DNS often end in a dot, which certificates never do.
    let host = server_name.strip_suffix('.').unwrap_or(server_name);
    let name = ServerName::try_from(host.to_owned());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    match config.tls {
        TlsPolicy::Opportunistic => {
            let name = name.unwrap_or_else(|_| ServerName::from(peer.ip()));
            let tls = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CheckedServerCert::new(
                    AnyCertificate,
                    provider,
                )))
                .with_no_client_auth();
            Ok((Arc::new(tls), name))
        }
        TlsPolicy::Required => {
            let name =
                name.map_err(|_| ClientError::Tls(format!("invalid server name {server_name:?}")))?;
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            for cert in &config.extra_roots {
                roots
                    .add(cert.clone())
                    .map_err(|e| ClientError::Tls(format!("bad extra root: {e}")))?;
            }
            let tls = builder.with_root_certificates(roots).with_no_client_auth();
            Ok((Arc::new(tls), name))
        }
    }
}
