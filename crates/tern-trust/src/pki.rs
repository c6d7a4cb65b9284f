//! The development PKI: one CA and one certificate per role, made once in a directory and
//! reused after (`cargo xtask up` and the tests). Production certificates come from
//! cert-manager, a user's Secret or the Helm chart; this module only makes development ones.
//!
//! Layout of the directory: `ca.crt`, `ca.key`, and `ROLE.crt` / `ROLE.key` for every
//! [`Role`]. Keys are written readable by the owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::identity::{Identity, Role};

/// Why the development PKI could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// rcgen refused to make or read a certificate or key.
    #[error("{what}: {source}")]
    Certificate {
        /// What was being made or read.
        what: String,
        /// The cause.
        source: rcgen::Error,
    },
}

/// Where one holder's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The CA certificate both sides verify against (PEM).
    pub ca: PathBuf,
    /// The holder's certificate (PEM).
    pub cert: PathBuf,
    /// The holder's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl CertFiles {
    /// The files a service's settings name (their `cluster_tls` group).
    pub fn of(settings: &impl tern_config::ClusterTlsSettings) -> Self {
        Self {
            ca: settings.cluster_ca().to_path_buf(),
            cert: settings.cluster_cert().to_path_buf(),
            key: settings.cluster_key().to_path_buf(),
        }
    }
}

/// The files of the development PKI in `dir`, for `role`.
pub fn files(dir: &Path, role: Role) -> CertFiles {
    CertFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join(format!("{role}.crt")),
        key: dir.join(format!("{role}.key")),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Certificate { what, source }
}

/// Writes `contents` to `path`, readable only by the owner when `secret`.
fn write(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))
}

/// Makes the development CA and every role's certificate in `dir` where they are missing,
/// for `trust_domain`; existing files are kept (a role certificate that is missing is made
/// with the existing CA). Returns `dir`'s files per role.
pub fn ensure_dev_pki(dir: &Path, trust_domain: &str) -> Result<Vec<(Role, CertFiles)>, PkiError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let (ca_params, ca_key) = if ca_cert_path.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_cert_path).map_err(io(&ca_cert_path))?;
        let key_pem = fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err("reading the CA key"))?;
        let params =
            CertificateParams::from_ca_cert_pem(&pem).map_err(cert_err("reading the CA"))?;
        (params, key)
    } else {
        let key = KeyPair::generate().map_err(cert_err("making the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Tern development CA ({trust_domain})"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params
            .clone()
            .self_signed(&key)
            .map_err(cert_err("making the CA"))?;
        write(&ca_cert_path, &cert.pem(), false)?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        (params, key)
    };
    // Signing needs the issuer as an rcgen certificate: the same name and key as the CA on
    // disk, so what it signs verifies against that file.
    let issuer = ca_params
        .self_signed(&ca_key)
        .map_err(cert_err("loading the CA"))?;
    let mut out = Vec::new();
    for role in Role::ALL {
        let f = files(dir, role);
        if !(f.cert.exists() && f.key.exists()) {
            let identity = Identity::new(trust_domain, role);
            let key = KeyPair::generate().map_err(cert_err(format!("making the {role} key")))?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("tern {role}"));
            let uri: rcgen::Ia5String = identity
                .uri()
                .try_into()
                .map_err(cert_err(format!("the {role} URI")))?;
            params.subject_alt_names = vec![SanType::URI(uri)];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // Store nodes are servers and clients (Raft peers); every other role could be
            // made client-only, but one shape for all keeps the files interchangeable.
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params
                .signed_by(&key, &issuer, &ca_key)
                .map_err(cert_err(format!("signing the {role} certificate")))?;
            write(&f.cert, &cert.pem(), false)?;
            write(&f.key, &key.serialize_pem(), true)?;
        }
        out.push((role, f));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn every_role_gets_a_certificate_naming_it_and_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let made = ensure_dev_pki(dir.path(), "tern.test").unwrap();
        assert_eq!(made.len(), Role::ALL.len());
        for (role, f) in &made {
            let cert = CertificateDer::from_pem_file(&f.cert).unwrap();
            assert_eq!(
                Identity::of_certificate(&cert).unwrap(),
                Identity::new("tern.test", *role)
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the CA key is private");
        }
        let ca_before = fs::read(dir.path().join("ca.crt")).unwrap();
        let smtp_before = fs::read(dir.path().join("smtp.crt")).unwrap();
        // A second run keeps what exists and remakes only what is missing.
        fs::remove_file(dir.path().join("queue.crt")).unwrap();
        ensure_dev_pki(dir.path(), "tern.test").unwrap();
        assert_eq!(fs::read(dir.path().join("ca.crt")).unwrap(), ca_before);
        assert_eq!(fs::read(dir.path().join("smtp.crt")).unwrap(), smtp_before);
        assert!(dir.path().join("queue.crt").exists());
    }
}
