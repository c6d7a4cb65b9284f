//! Mutual TLS 1.3 configurations for internal ports.
//!
//! The server requires a client certificate signed by the cluster CA (a plaintext client,
//! one without a certificate and one from another CA fail the handshake) and learns the
//! caller's [`Identity`] from it with [`peer_identity`]. The client checks the server's
//! chain against the same CA *and* that the server's certificate names the role it meant
//! to reach (`store` for the store port), so a stolen `smtp` certificate cannot pose as a
//! store node. Host names are not checked: pods are reached by changing addresses, and the
//! identity is the URI, not a DNS name.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;

use crate::identity::{Identity, Role};
use crate::pki::CertFiles;
use crate::verifier::{CertificateCheck, CheckedServerCert};

/// Why a configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or unreadable, or holds no PEM of the expected kind.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the certificates or keys.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (no usable CA).
    #[error("the CA cannot verify client certificates: {0}")]
    Verifier(String),
    /// Our own certificate names no Tern identity.
    #[error("our own certificate {path}: {source}")]
    OwnIdentity {
        /// The certificate file.
        path: String,
        /// Why.
        source: crate::IdentityError,
    },
}

/// The ring provider, which the rest of Tern's TLS uses too.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, why: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Certificates and key read from [`CertFiles`], with the identity our certificate carries.
#[derive(Debug)]
pub struct Loaded {
    /// The CA certificates to verify peers against.
    pub roots: Arc<RootCertStore>,
    /// Our chain (end entity first).
    pub chain: Vec<CertificateDer<'static>>,
    /// Our key.
    pub key: PrivateKeyDer<'static>,
    /// The identity our certificate carries.
    pub identity: Identity,
}

impl Loaded {
    /// Reads and checks the three files.
    pub fn read(files: &CertFiles) -> Result<Self, TlsError> {
        let pem = |path: &Path| fs::read(path).map_err(|e| file_error(path, e));
        let ca_pem = pem(&files.ca)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            let cert = cert.map_err(|e| file_error(&files.ca, e))?;
            roots.add(cert).map_err(TlsError::Rustls)?;
        }
        if roots.is_empty() {
            return Err(file_error(&files.ca, "no CA certificate in it"));
        }
        let chain = CertificateDer::pem_slice_iter(&pem(&files.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(&files.cert, e))?;
        let first = chain
            .first()
            .ok_or_else(|| file_error(&files.cert, "no certificate in it"))?;
        let identity = Identity::of_certificate(first).map_err(|source| TlsError::OwnIdentity {
            path: files.cert.display().to_string(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&pem(&files.key)?)
            .map_err(|e| file_error(&files.key, e))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
            identity,
        })
    }
}

/// A server configuration that requires a client certificate from the CA (TLS 1.3 only,
/// ALPN `h2` for gRPC).
pub fn server_config(loaded: &Loaded) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(loaded.roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(loaded.chain.clone(), loaded.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client configuration that presents our certificate and accepts only a server whose
/// certificate chains to the CA and names `server_role` in our trust domain.
pub fn client_config(loaded: &Loaded, server_role: Role) -> Result<ClientConfig, TlsError> {
    let verifier = role_verifier(
        loaded.roots.clone(),
        Identity::new(&loaded.identity.trust_domain, server_role),
    );
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(loaded.chain.clone(), loaded.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The identity of the peer of an established server-side connection: the first
/// certificate the client presented (already verified against the CA by the handshake).
pub fn peer_identity(
    peer_certificates: Option<&[CertificateDer<'_>]>,
) -> Result<Identity, crate::IdentityError> {
    match peer_certificates.and_then(<[_]>::first) {
        Some(cert) => Identity::of_certificate(cert),
        None => Err(crate::IdentityError::NoUri),
    }
}

/// Accepts a server whose chain leads to the cluster CA and whose identity is the one the
/// client meant to reach. The DNS name the client dialled is not part of the check.
#[derive(Debug)]
struct RoleCheck {
    roots: Arc<RootCertStore>,
    expected: Identity,
    provider: Arc<CryptoProvider>,
}

/// The verifier of a client that means to reach `expected` (signed by `roots`).
fn role_verifier(roots: Arc<RootCertStore>, expected: Identity) -> CheckedServerCert<RoleCheck> {
    let provider = provider();
    let check = RoleCheck {
        roots,
        expected,
        provider: provider.clone(),
    };
    CheckedServerCert::new(check, provider)
}

impl CertificateCheck for RoleCheck {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match Identity::of_certificate(end_entity) {
            Ok(id) if id == self.expected => Ok(()),
            Ok(_) | Err(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{ensure_dev_pki, files};
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// One handshake: Ok(the identity the server saw) or Err(why either side refused).
    async fn handshake(server: ServerConfig, client: ClientConfig) -> Result<Identity, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let id = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string());
            let _ = tls.write_all(b"x").await;
            id
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("store.invalid").unwrap();
        let client_side = async {
            let mut tls = TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            // TLS 1.3 reports a refused client certificate only on the first read.
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        }
        .await;
        let server_side = served.await.unwrap();
        client_side?;
        server_side
    }

    #[tokio::test]
    async fn mutual_tls_admits_the_cluster_and_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        ensure_dev_pki(dir.path(), "tern.test").unwrap();
        let other = tempfile::tempdir().unwrap();
        ensure_dev_pki(other.path(), "tern.test").unwrap();
        let load = |d: &Path, r| Loaded::read(&files(d, r)).unwrap();
        let store = load(dir.path(), Role::Store);
        let server = || server_config(&store).unwrap();

        // A cluster client reaching a store node: admitted, and seen as what it is.
        let smtp = load(dir.path(), Role::Smtp);
        let seen = handshake(server(), client_config(&smtp, Role::Store).unwrap()).await;
        assert_eq!(seen, Ok(Identity::new("tern.test", Role::Smtp)));

        // A client expecting another role refuses the store's certificate.
        let refused = handshake(server(), client_config(&smtp, Role::Queue).unwrap()).await;
        assert!(refused.is_err(), "{refused:?}");

        // A certificate from another CA (same trust domain) is refused by the server, and
        // that client refuses the server too.
        let stranger = load(other.path(), Role::Admin);
        let refused = handshake(server(), client_config(&stranger, Role::Store).unwrap()).await;
        assert!(refused.is_err(), "{refused:?}");

        // A client without a certificate is refused.
        let verifier = role_verifier(store.roots.clone(), Identity::new("tern.test", Role::Store));
        let anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let refused = handshake(server(), anonymous).await;
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Loaded::read(&files(dir.path(), Role::Admin)).unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }
}
