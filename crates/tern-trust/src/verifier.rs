//! A rustls server-certificate verifier whose certificate decision is ours and whose
//! handshake-signature checks are rustls's own.
//!
//! Every custom verifier must also verify the TLS 1.2 and 1.3 handshake signatures and name
//! the schemes it supports; that part is the same whatever decides the certificate (the
//! cluster's role check, the opportunistic "any certificate" of outbound SMTP), so it is
//! written once here and the deciding part is a [`CertificateCheck`].

use std::fmt::Debug;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Decides whether a server's certificate is acceptable.
pub trait CertificateCheck: Debug + Send + Sync {
    /// `Ok` accepts the certificate; an error fails the handshake with it.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error>;
}

/// Accepts any certificate: opportunistic TLS (RFC 7435). The handshake signatures are
/// still checked, so the session is encrypted to whoever holds the key of the certificate
/// presented.
#[derive(Debug)]
pub struct AnyCertificate;

impl CertificateCheck for AnyCertificate {
    fn check(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// A [`ServerCertVerifier`] made of a [`CertificateCheck`] and the provider's signature
/// algorithms.
#[derive(Debug)]
pub struct CheckedServerCert<C> {
    check: C,
    provider: Arc<CryptoProvider>,
}

impl<C: CertificateCheck> CheckedServerCert<C> {
    /// Certificates decided by `check`; handshake signatures verified with `provider`'s
    /// algorithms.
    pub fn new(check: C, provider: Arc<CryptoProvider>) -> Self {
        Self { check, provider }
    }
}

impl<C: CertificateCheck> ServerCertVerifier for CheckedServerCert<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check.check(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
