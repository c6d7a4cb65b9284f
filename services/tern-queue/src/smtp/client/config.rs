//! How the client behaves: the STARTTLS policy and the deadlines (RFC 5321 §4.5.3.2).

use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// When to encrypt with STARTTLS (RFC 3207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Encrypt when the server offers STARTTLS, without verifying its certificate (RFC 7435);
    /// plain text otherwise. What public MX delivery needs: it protects against passive
    /// eavesdropping and never makes mail undeliverable.
    #[default]
    Opportunistic,
    /// Encrypt and verify the certificate chain and the host name (webpki-roots plus
    /// [`ClientConfig::extra_roots`]); a server without STARTTLS or with a certificate that
    /// does not verify is a temporary failure. For relays and domains with a TLS policy.
    Required,
}

/// How the client behaves; shared by all the connections of a worker.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our host name for EHLO/HELO: must be the worker's public FQDN, as receivers check it.
    pub helo_name: String,
    /// When to use STARTTLS.
    pub tls: TlsPolicy,
    /// Trust anchors accepted besides webpki-roots under [`TlsPolicy::Required`] (a private CA
    /// of a smarthost, or the self-signed CA of a test).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Deadline for the TCP connection (default 30 s).
    pub connect_timeout: Duration,
    /// Deadline for the greeting and the replies to EHLO, STARTTLS (and the TLS handshake),
    /// MAIL, RCPT, RSET, NOOP: RFC 5321 §4.5.3.2 asks for 5 minutes.
    pub command_timeout: Duration,
    /// Deadline for the reply to DATA (the "354"): RFC 5321 §4.5.3.2.4, 2 minutes.
    pub data_init_timeout: Duration,
    /// Deadline for writing each block of message data: RFC 5321 §4.5.3.2.5, 3 minutes.
    pub data_block_timeout: Duration,
    /// Deadline for the reply after the final "." (the server may be filtering or storing the
    /// message): RFC 5321 §4.5.3.2.6, 10 minutes.
    pub data_end_timeout: Duration,
}

impl Default for ClientConfig {
    /// RFC 5321 §4.5.3.2 timeouts, opportunistic TLS, and "localhost" as HELO name, which a
    /// deployment must replace with the worker's FQDN.
    fn default() -> Self {
        ClientConfig {
            helo_name: "localhost".to_owned(),
            tls: TlsPolicy::Opportunistic,
            extra_roots: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5 * 60),
            data_init_timeout: Duration::from_secs(2 * 60),
            data_block_timeout: Duration::from_secs(3 * 60),
            data_end_timeout: Duration::from_secs(10 * 60),
        }
    }
}
