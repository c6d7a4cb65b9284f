//! TLS server settings from PEM files, reloaded when the files change so a renewed
//! certificate (cert-manager, certbot) takes effect without a restart, plus the self-signed
//! certificate `cargo xtask up` uses for development.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tern_trust::reload::Reloading;
use tokio_rustls::TlsAcceptor;

/// A certificate chain and key read from files, reloaded when either file changes (the
/// rule is [`tern_trust::reload`]'s, shared with the internal mutual-TLS ports).
pub struct ReloadingTls(Reloading<TlsAcceptor>);

/// Builds rustls server settings (TLS 1.2 and 1.3, ring provider) from PEM files.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading certificates from {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading the private key in {}", key_path.display()))?;
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")
}

impl ReloadingTls {
    /// Loads the files now; an error here is a configuration error the service reports at
    /// start-up.
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Self> {
        let (cert, key) = (cert_path.to_path_buf(), key_path.to_path_buf());
        let paths = vec![cert.clone(), key.clone()];
        let reloading = Reloading::new(paths, move || {
            load_server_config(&cert, &key).map(|c| TlsAcceptor::from(Arc::new(c)))
        })
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Self(reloading))
    }

    /// [`Self::load`] when both files are configured, else no TLS (the settings' check has
    /// already refused one without the other).
    pub fn load_optional(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Arc::new(Self::load(cert, key)?))),
            _ => Ok(None),
        }
    }

    /// The acceptor for a new handshake, with the files as they are now (see
    /// [`Reloading::current`]).
    pub fn acceptor(&self) -> TlsAcceptor {
        (*self.0.current()).clone()
    }
}

/// Writes a self-signed certificate for `names` to `dir/cert.pem` and `dir/key.pem` unless
/// both exist already; returns their paths. For development only: clients must be told to
/// trust it (or not to verify).
pub fn ensure_dev_certificate(dir: &Path, names: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let generated =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .context("generating a self-signed certificate")?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tern_trust::reload::RECHECK;

    #[test]
    fn dev_certificate_loads_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_dev_certificate(dir.path(), &["localhost"]).unwrap();
        let first = std::fs::read(&cert).unwrap();
        load_server_config(&cert, &key).unwrap();
        ensure_dev_certificate(dir.path(), &["localhost"]).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
    }

    #[test]
    fn a_changed_certificate_is_picked_up_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_dev_certificate(dir.path(), &["old"]).unwrap();
        let tls = ReloadingTls::load(&cert, &key).unwrap();
        let first = tls.acceptor();
        assert!(Arc::ptr_eq(first.config(), tls.acceptor().config()));
        // A renewal writes new files (new modification times).
        std::thread::sleep(Duration::from_millis(1100));
        let renewed = tempfile::tempdir().unwrap();
        let (c2, k2) = ensure_dev_certificate(renewed.path(), &["new"]).unwrap();
        std::fs::copy(&c2, &cert).unwrap();
        std::fs::copy(&k2, &key).unwrap();
        std::thread::sleep(RECHECK);
        let second = tls.acceptor();
        assert!(!Arc::ptr_eq(first.config(), second.config()), "reloaded");
        // A half-written renewal (garbage) keeps the working certificate.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&cert, b"not a certificate").unwrap();
        std::thread::sleep(RECHECK);
        assert!(Arc::ptr_eq(second.config(), tls.acceptor().config()));
    }

    #[test]
    fn mismatched_or_missing_files_are_errors() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (cert_a, _) = ensure_dev_certificate(a.path(), &["a"]).unwrap();
        let (_, key_b) = ensure_dev_certificate(b.path(), &["b"]).unwrap();
        assert!(load_server_config(&cert_a, &key_b).is_err());
        assert!(load_server_config(&a.path().join("none.pem"), &key_b).is_err());
    }
}
