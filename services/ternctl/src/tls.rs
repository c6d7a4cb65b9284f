//! Telling who refused whom when the mutual-TLS handshake with a store node fails.
//!
//! Two certificates are checked on every connection, and the fix depends on which one was
//! refused: ours (signed by another cluster's CA, expired, missing) or the store's (not
//! signed by our CA file, or not a `store` certificate, so the endpoint is not a store
//! node). The raw error says neither in words, and it arrives in two places:
//!
//! - We refuse the store's certificate during our side of the handshake, so the connect
//!   fails with rustls's error inside an `io::Error`.
//! - The store refuses ours only after our side is done (TLS 1.3 finishes the client first),
//!   so the connect succeeds and the first request fails: with rustls's "received fatal
//!   alert" when the store's alert is read, or just "connection reset"/"closed" when the
//!   socket is gone first. hyper and h2 keep only the text of the error there, so the text is
//!   read too, not only the types.
//!
//! [`classify`] finds which case an error chain is; [`TlsRefused`] says it with the files
//! that were used. A gRPC status that the store *sent* is never classified (its message may
//! quote another node's TLS trouble, which is not ours): only errors our own transport made.

use std::error::Error;
use std::fmt;
use std::io;

use tern_trust::{Identity, Role};
use tonic::{Code, Status};

use crate::client::Link;

/// Which side of the handshake said no, and rustls's words for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The store refused our certificate with a TLS alert.
    ByStore { rustls: String, hint: &'static str },
    /// The store closed the connection without a word, which is how a refused client
    /// certificate looks when the alert is lost to the closed socket.
    Closed { cause: String },
    /// We refused the store's certificate.
    ByUs { rustls: String, hint: &'static str },
    /// The other end does not speak TLS.
    NotTls { rustls: String },
    /// Any other TLS failure.
    Other { rustls: String },
}

/// What a TLS alert from the store most likely means for our certificate.
fn alert_hint(alert: &str) -> &'static str {
    match alert {
        "UnknownCA" => {
            "it is not signed by the CA that store trusts (a certificate of another cluster?)"
        }
        "CertificateExpired" => "it has expired or is not valid yet (or a clock is wrong)",
        "CertificateRequired" => "the store received no certificate from us",
        "CertificateRevoked" => "it has been revoked",
        "BadCertificate" | "UnsupportedCertificate" | "CertificateUnknown" => {
            "the store cannot use it as a client certificate of its cluster"
        }
        "DecryptError" => {
            "the handshake signature did not verify (does the key match the certificate?)"
        }
        "AccessDenied" => "the store does not admit it",
        _ => "the store ended the handshake",
    }
}

/// What our verifier's verdict on the store's certificate means.
fn certificate_hint(err: &rustls::CertificateError) -> &'static str {
    use rustls::CertificateError as E;
    match err {
        E::UnknownIssuer => {
            "it is not signed by our CA file (is the endpoint in another cluster, or --ca another \
             cluster's CA?)"
        }
        // tern-trust's verifier: the chain is good, but the certificate does not name the
        // store role of our trust domain.
        E::ApplicationVerificationFailure => {
            "it does not name the store role of our trust domain (is the endpoint a store \
             node's gRPC port?)"
        }
        E::Expired | E::ExpiredContext { .. } | E::NotValidYet | E::NotValidYetContext { .. } => {
            "it has expired or is not valid yet (or a clock is wrong)"
        }
        E::Revoked => "it has been revoked",
        E::BadSignature => "its signature does not verify against our CA file",
        _ => "it failed verification against our CA file",
    }
}

fn from_rustls(err: &rustls::Error) -> Refusal {
    let text = err.to_string();
    match err {
        rustls::Error::AlertReceived(alert) => Refusal::ByStore {
            rustls: text,
            hint: alert_hint(&format!("{alert:?}")),
        },
        rustls::Error::InvalidCertificate(cert) => Refusal::ByUs {
            rustls: text,
            hint: certificate_hint(cert),
        },
        rustls::Error::NoCertificatesPresented => Refusal::ByUs {
            rustls: text,
            hint: "the store presented no certificate",
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => Refusal::NotTls { rustls: text },
        _ => Refusal::Other { rustls: text },
    }
}

/// The same verdicts from the text alone, where hyper or h2 dropped the type.
fn from_text(text: &str) -> Option<Refusal> {
    const ALERT: &str = "received fatal alert: ";
    if let Some(at) = text.find(ALERT) {
        let rest = &text[at + ALERT.len()..];
        let alert: String = rest
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        return Some(Refusal::ByStore {
            rustls: format!("{ALERT}{alert}"),
            hint: alert_hint(&alert),
        });
    }
    if let Some(at) = text.find("invalid peer certificate: ") {
        return Some(Refusal::ByUs {
            rustls: text[at..].to_string(),
            hint: "it failed verification against our CA file",
        });
    }
    if let Some(at) = text.find("received corrupt message") {
        return Some(Refusal::NotTls {
            rustls: text[at..].to_string(),
        });
    }
    None
}

/// rustls's error where the chain still has it: as a link, or inside an `io::Error` (whose
/// `source()` skips the error it wraps, so the chain alone never reaches it).
fn rustls_error<'a>(link: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = link.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    link.downcast_ref::<io::Error>()
        .and_then(|e| e.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether a link says the connection was closed or reset under us.
fn closed(link: &(dyn Error + 'static)) -> bool {
    if let Some(e) = link.downcast_ref::<io::Error>() {
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ) {
            return true;
        }
    }
    let text = link.to_string().to_ascii_lowercase();
    [
        "connection reset",
        "broken pipe",
        "connection closed",
        "unexpected eof",
        "unexpected end of file",
        "handshake eof",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Which TLS failure the error chain `links` (outermost first) is, if it is one.
pub fn classify(links: &[&(dyn Error + 'static)]) -> Option<Refusal> {
    if let Some(r) = links.iter().find_map(|l| rustls_error(*l)) {
        return Some(from_rustls(r));
    }
    if let Some(r) = links.iter().find_map(|l| from_text(&l.to_string())) {
        return Some(r);
    }
    links.iter().find(|l| closed(**l)).map(|l| Refusal::Closed {
        cause: l.to_string(),
    })
}

/// A TLS failure with a store node, in words: who refused, why, and which files we used.
#[derive(Debug)]
pub struct TlsRefused {
    pub url: String,
    pub refusal: Refusal,
    /// The files and where they came from ([`crate::profile::Settings::describe_files`]).
    pub files: String,
    /// Who our certificate says we are.
    pub identity: Identity,
}

impl TlsRefused {
    pub fn new(link: &Link, refusal: Refusal) -> Self {
        Self {
            url: link.url.clone(),
            refusal,
            files: link.files.clone(),
            identity: link.identity.clone(),
        }
    }
}

impl fmt::Display for TlsRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (url, files, us) = (&self.url, &self.files, &self.identity);
        match &self.refusal {
            Refusal::ByStore { rustls, hint } => write!(
                f,
                "tern-store at {url} refused our client certificate: {hint} ({rustls}); \
                 we presented {us} from {files}"
            ),
            Refusal::Closed { cause } => write!(
                f,
                "tern-store at {url} closed the connection without answering ({cause}); \
                 a store does that when it refuses our client certificate, or the endpoint is \
                 not a tern-store TLS port; we presented {us} from {files}"
            ),
            Refusal::ByUs { rustls, hint } => write!(
                f,
                "we refused the certificate of tern-store at {url}: {hint} ({rustls}); \
                 we expect {} signed by our CA; our files: {files}",
                Identity::new(&us.trust_domain, Role::Store)
            ),
            Refusal::NotTls { rustls } => write!(
                f,
                "tern-store at {url} does not answer in TLS ({rustls}): is it a store node's \
                 gRPC port, of a release with mutual TLS?"
            ),
            Refusal::Other { rustls } => write!(
                f,
                "the TLS handshake with tern-store at {url} failed ({rustls}); our files: {files}"
            ),
        }
    }
}

impl Error for TlsRefused {}

/// Explains `err`, a failed request on the connection `link`, when our own transport made it:
/// a TLS refusal becomes a [`TlsRefused`]; PERMISSION_DENIED gets the certificate we
/// presented in front. Anything else is returned as it is.
pub fn explain(err: anyhow::Error, link: &Link) -> anyhow::Error {
    enum Verdict {
        Denied,
        Refused(Refusal),
        AsItIs,
    }
    let verdict = {
        let links: Vec<&(dyn Error + 'static)> = err.chain().collect();
        let status_at = links.iter().position(|l| l.is::<Status>());
        match status_at {
            None => Verdict::AsItIs,
            Some(at) => {
                let denied = links[at]
                    .downcast_ref::<Status>()
                    .is_some_and(|s| s.code() == Code::PermissionDenied);
                if denied {
                    Verdict::Denied
                } else {
                    // A status the store sent has no source; one our transport made has
                    // the cause below it.
                    classify(&links[at + 1..]).map_or(Verdict::AsItIs, Verdict::Refused)
                }
            }
        }
    };
    match verdict {
        Verdict::Denied => {
            let context = format!(
                "our certificate {} names {}",
                link.cert.display(),
                link.identity
            );
            err.context(context)
        }
        Verdict::Refused(refusal) => anyhow::Error::new(TlsRefused::new(link, refusal)),
        Verdict::AsItIs => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn link() -> Link {
        Link {
            url: "http://127.0.0.1:7101".into(),
            files: "CA ca.crt, certificate admin.crt, key admin.key (from --ca/--cert/--key)"
                .into(),
            cert: PathBuf::from("admin.crt"),
            identity: Identity::new("tern.test", Role::Admin),
        }
    }

    fn one(e: &(dyn Error + 'static)) -> Option<Refusal> {
        classify(&[e])
    }

    fn io_rustls(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn our_verdict_on_the_store_is_read_from_the_io_error() {
        let e = io_rustls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ));
        let r = one(&e).expect("a refusal");
        assert!(matches!(r, Refusal::ByUs { .. }), "{r:?}");
        let text = TlsRefused::new(&link(), r).to_string();
        assert!(text.starts_with("we refused the certificate of tern-store at http://127.0.0.1:7101: it does not name the store role"), "{text}");
        assert!(text.contains("spiffe://tern.test/tern/store"), "{text}");
        assert!(text.contains("admin.crt"), "{text}");

        let e = io_rustls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let text = TlsRefused::new(&link(), one(&e).expect("a refusal")).to_string();
        assert!(text.contains("not signed by our CA file"), "{text}");
        assert!(
            text.contains("invalid peer certificate: UnknownIssuer"),
            "{text}"
        );
    }

    #[test]
    fn the_stores_alert_is_read_from_the_type_or_the_text() {
        let e = io_rustls(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        let r = one(&e).expect("a refusal");
        assert_eq!(
            r,
            Refusal::ByStore {
                rustls: "received fatal alert: UnknownCA".into(),
                hint: alert_hint("UnknownCA"),
            }
        );
        // h2 keeps only the text.
        let e = io::Error::other("connection error: received fatal alert: CertificateRequired");
        let r = one(&e).expect("a refusal");
        assert_eq!(
            r,
            Refusal::ByStore {
                rustls: "received fatal alert: CertificateRequired".into(),
                hint: "the store received no certificate from us",
            }
        );
        let text = TlsRefused::new(&link(), r).to_string();
        assert!(
            text.starts_with(
                "tern-store at http://127.0.0.1:7101 refused our client certificate: "
            ),
            "{text}"
        );
        assert!(text.contains("spiffe://tern.test/tern/admin"), "{text}");
    }

    #[test]
    fn a_reset_is_reported_as_a_possible_refusal_and_other_errors_are_not_tls() {
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "Connection reset by peer");
        assert!(matches!(one(&e), Some(Refusal::Closed { .. })));
        let e = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(one(&e), None);
        let e = io::Error::other("received corrupt message of type InvalidContentType");
        assert!(matches!(one(&e), Some(Refusal::NotTls { .. })));
    }

    #[test]
    fn statuses_the_store_sent_are_left_alone() {
        // No source: the store said it, about something else (a peer's TLS, say).
        let err = anyhow::Error::new(Status::unavailable(
            "forwarding to the leader: received fatal alert: UnknownCA",
        ));
        let out = explain(err, &link());
        assert!(out.downcast_ref::<TlsRefused>().is_none());
        assert!(out.downcast_ref::<Status>().is_some());
    }

    #[test]
    fn transport_statuses_are_explained() {
        let mut status = Status::unknown("transport error");
        status.set_source(std::sync::Arc::new(io_rustls(
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        )));
        let out = explain(anyhow::Error::new(status), &link());
        let refused = out.downcast_ref::<TlsRefused>().expect("explained");
        assert!(matches!(refused.refusal, Refusal::ByStore { .. }));
    }

    #[test]
    fn permission_denied_names_our_certificate() {
        let err = anyhow::Error::new(Status::permission_denied("Admin/AddNode: role smtp"));
        let out = explain(err, &link());
        assert_eq!(
            crate::error::describe(&out),
            "our certificate admin.crt names spiffe://tern.test/tern/admin: permission denied: Admin/AddNode: role smtp"
        );
    }
}
