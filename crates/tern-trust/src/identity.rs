//! A caller's identity as its certificate states it: `spiffe://TRUST-DOMAIN/tern/ROLE`.
//!
//! Why SPIFFE URIs: they are the form service meshes and cert-manager's CSI driver issue, a
//! certificate carries one without a DNS name (pods come and go; roles stay), and the trust
//! domain keeps two clusters' certificates apart even under one CA.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate holder may do, by the table in [`crate::policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A store node: Raft peers, and the forwarding of writes to the leader.
    Store,
    /// An operator (`ternctl`): the directory, membership, backups.
    Admin,
    /// The membership controller: cluster status and membership changes.
    Controller,
    /// An SMTP ingress node: resolves recipients and checks passwords.
    Smtp,
    /// A queue node: enqueues, leases and delivers.
    Queue,
    /// An IMAP/POP3 access node: reads and changes mailboxes.
    Access,
    /// A scheduled backup job: takes backups and nothing else.
    Backup,
}

impl Role {
    /// Every role, in the order the README's table lists them.
    pub const ALL: [Role; 7] = [
        Role::Store,
        Role::Admin,
        Role::Controller,
        Role::Smtp,
        Role::Queue,
        Role::Access,
        Role::Backup,
    ];

    /// The name used in URIs, file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Store => "store",
            Role::Admin => "admin",
            Role::Controller => "controller",
            Role::Smtp => "smtp",
            Role::Queue => "queue",
            Role::Access => "access",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| IdentityError::UnknownRole(s.to_string()))
    }
}

/// Why a certificate names no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate could not be parsed.
    #[error("the certificate cannot be parsed: {0}")]
    Unparsable(String),
    /// The certificate has no `spiffe://` URI name.
    #[error("the certificate carries no spiffe:// URI name")]
    NoUri,
    /// The certificate has more than one URI name: which one counts would be a guess.
    #[error("the certificate carries {0} URI names; exactly one is allowed")]
    SeveralUris(usize),
    /// The URI is not `spiffe://TRUST-DOMAIN/tern/ROLE`.
    #[error("{0:?} is not spiffe://TRUST-DOMAIN/tern/ROLE")]
    Malformed(String),
    /// The role is not one of Tern's.
    #[error("{0:?} is not a Tern role")]
    UnknownRole(String),
}

/// A trust domain and a role: what one certificate proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The cluster's trust domain (`tern.test` in development).
    pub trust_domain: String,
    /// The holder's role.
    pub role: Role,
}

impl Identity {
    /// The identity `role` in `trust_domain`.
    pub fn new(trust_domain: &str, role: Role) -> Self {
        Self {
            trust_domain: trust_domain.to_string(),
            role,
        }
    }

    /// The URI a certificate carries for this identity.
    pub fn uri(&self) -> String {
        format!("spiffe://{}/tern/{}", self.trust_domain, self.role)
    }

    /// Parses `spiffe://TRUST-DOMAIN/tern/ROLE`. The trust domain is a DNS-like name
    /// (lower-case letters, digits, `-`, `.`), as the SPIFFE ID specification requires.
    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let malformed = || IdentityError::Malformed(uri.to_string());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(malformed)?;
        let (domain, path) = rest.split_once('/').ok_or_else(malformed)?;
        let valid_domain = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_domain {
            return Err(malformed());
        }
        let role = path.strip_prefix("tern/").ok_or_else(malformed)?;
        Ok(Self {
            trust_domain: domain.to_string(),
            role: role.parse()?,
        })
    }

    /// The identity an end-entity certificate (DER) carries: its one `spiffe://` URI name.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, IdentityError> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref())
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let san = parsed
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let uris: Vec<&str> = san
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(*u),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        match uris.as_slice() {
            [] => Err(IdentityError::NoUri),
            [one] => Self::parse_uri(one),
            several => Err(IdentityError::SeveralUris(several.len())),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_for_every_role() {
        for role in Role::ALL {
            let id = Identity::new("tern.test", role);
            assert_eq!(Identity::parse_uri(&id.uri()), Ok(id.clone()));
            assert_eq!(id.uri(), format!("spiffe://tern.test/tern/{role}"));
        }
    }

    #[test]
    fn malformed_uris_and_unknown_roles_are_refused() {
        for bad in [
            "https://tern.test/tern/store",
            "spiffe://tern.test/store",
            "spiffe:///tern/store",
            "spiffe://Tern.Test/tern/store",
            "spiffe://tern.test/tern/",
            "spiffe://tern.test/tern/store/extra",
            "spiffe://tern.test/tern/root",
        ] {
            assert!(Identity::parse_uri(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Identity::parse_uri("spiffe://tern.test/tern/root"),
            Err(IdentityError::UnknownRole("root".into()))
        );
    }

    #[test]
    fn certificates_without_exactly_one_uri_name_have_no_identity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let no_uri = params.clone().self_signed(&key).unwrap();
        assert_eq!(
            Identity::of_certificate(no_uri.der()),
            Err(IdentityError::NoUri)
        );
        for uri in [
            "spiffe://tern.test/tern/smtp",
            "spiffe://tern.test/tern/admin",
        ] {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        }
        let two = params.self_signed(&key).unwrap();
        assert_eq!(
            Identity::of_certificate(two.der()),
            Err(IdentityError::SeveralUris(2))
        );
    }
}
