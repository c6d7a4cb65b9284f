//! `tern-controller pki`: the cluster certificates of the Helm chart's `generated` mode
//! (`clusterTls.mode: generated`), made once and kept as Kubernetes Secrets.
//!
//! The chart runs it as a pre-install/pre-upgrade hook Job. It makes a CA and one
//! certificate per role (a URI SAN `spiffe://TRUST-DOMAIN/tern/ROLE`, [`tern_trust::pki`]'s
//! shapes) and stores each in a `kubernetes.io/tls` Secret with the keys the services read:
//! `ca.crt`, `tls.crt`, `tls.key`. The CA goes into a Secret of its own (`tls.crt` and
//! `tls.key` are the CA's, plus `ca.crt`): the shape a cert-manager CA Issuer reads, so an
//! installation can move to cert-manager with the same CA.
//!
//! The rule is **create what is missing, never overwrite**: a Secret that exists is kept as
//! it is, so upgrades keep every certificate and the CA key never leaves the Secret it was
//! put in. Deleting a role's Secret and upgrading makes a new certificate for that role with
//! the kept CA (the kubelet updates the mounted files; the services reload them). What the
//! command refuses, rather than making a cluster whose members cannot talk to each other:
//! role Secrets without the CA Secret (the CA that signed them is gone), a role Secret whose
//! certificate names another identity (another trust domain, say) or whose `ca.crt` is not
//! the kept CA. Deleting those Secrets (or all of them, to start over) and upgrading again
//! resolves each.
//!
//! [`plan`] is the whole decision over the Secrets that exist (a pure function of them and
//! the files in a scratch directory; unit-tested); [`run`] reads the Secrets, calls it and
//! creates what it returns, CA first, so an interrupted run leaves at worst a CA without all
//! of its role Secrets, which the next run completes. Its RBAC is `get` of those Secrets by
//! name and `create` of Secrets; it never updates, patches or deletes one.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Client;
use tern_trust::pki::{ensure_dev_pki, CertFiles};
use tern_trust::tls::Loaded;
use tern_trust::{Identity, Role};

/// The Secret type of every Secret made here.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Key of the CA certificate in every Secret.
pub const CA_KEY: &str = "ca.crt";
/// Key of the holder's certificate.
pub const CERT_KEY: &str = "tls.crt";
/// Key of the holder's private key.
pub const KEY_KEY: &str = "tls.key";
/// Label set on every Secret made here (besides `--label`s).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tern-controller");

/// What to make, from the flags of `tern-controller pki`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiSettings {
    /// Namespace of the Secrets.
    pub namespace: String,
    /// The trust domain every certificate names.
    pub trust_domain: String,
    /// The CA's Secret.
    pub ca_secret: String,
    /// Each role's Secret.
    pub secrets: Vec<(Role, String)>,
    /// Labels of every Secret made.
    pub labels: BTreeMap<String, String>,
}

impl PkiSettings {
    /// Refuses settings that would make unusable certificates or ambiguous Secrets.
    pub fn validate(&self) -> anyhow::Result<()> {
        let probe = Identity::new(&self.trust_domain, Role::Store);
        Identity::parse_uri(&probe.uri()).with_context(|| {
            format!(
                "trust domain {:?}: lower-case letters, digits, '-' and '.' only",
                self.trust_domain
            )
        })?;
        if self.secrets.is_empty() {
            bail!("no --secret ROLE=NAME given: nothing to make");
        }
        let mut names = vec![self.ca_secret.as_str()];
        for (i, (role, name)) in self.secrets.iter().enumerate() {
            if self.secrets[..i].iter().any(|(r, _)| r == role) {
                bail!("role {role} is given twice");
            }
            names.push(name);
        }
        for name in &names {
            if !valid_secret_name(name) {
                bail!("{name:?} is not a valid Secret name (a DNS subdomain)");
            }
        }
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            bail!("two Secrets (the CA's or a role's) have the same name");
        }
        Ok(())
    }
}

/// Whether `name` is a Kubernetes object name (an RFC 1123 DNS subdomain).
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The three PEM documents of one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPems {
    /// `ca.crt`.
    pub ca: Vec<u8>,
    /// `tls.crt`.
    pub cert: Vec<u8>,
    /// `tls.key`.
    pub key: Vec<u8>,
}

impl TlsPems {
    /// Reads `ca`, `cert` and `key` files.
    pub fn read(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
        Ok(Self {
            ca: read(ca)?,
            cert: read(cert)?,
            key: read(key)?,
        })
    }

    /// The PEMs of a Secret, naming the missing key.
    pub fn of_secret(secret: &Secret) -> anyhow::Result<Self> {
        let name = secret.metadata.name.as_deref().unwrap_or("?");
        let data = secret.data.as_ref();
        let get = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|b| b.0.clone())
                .filter(|b| !b.is_empty())
                .with_context(|| format!("Secret {name} has no {key}"))
        };
        Ok(Self {
            ca: get(CA_KEY)?,
            cert: get(CERT_KEY)?,
            key: get(KEY_KEY)?,
        })
    }
}

/// A `kubernetes.io/tls` Secret holding `pems`.
pub fn tls_secret(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    pems: &TlsPems,
) -> Secret {
    let mut labels = labels.clone();
    labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
    let data = BTreeMap::from([
        (CA_KEY.to_owned(), ByteString(pems.ca.clone())),
        (CERT_KEY.to_owned(), ByteString(pems.cert.clone())),
        (KEY_KEY.to_owned(), ByteString(pems.key.clone())),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_SECRET_TYPE.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// PEM text compared without the whitespace around it (a Secret written by hand may end
/// with or without a newline).
fn same_pem(a: &[u8], b: &[u8]) -> bool {
    a.trim_ascii() == b.trim_ascii()
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// The identity the certificate in `pems` names, checked as a service would load it
/// (certificate, key and CA all readable).
fn identity_of(pems: &TlsPems, scratch: &Path, label: &str) -> anyhow::Result<Identity> {
    let dir = scratch.join(label);
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = CertFiles {
        ca: dir.join(CA_KEY),
        cert: dir.join(CERT_KEY),
        key: dir.join(KEY_KEY),
    };
    write_private(&files.ca, &pems.ca)?;
    write_private(&files.cert, &pems.cert)?;
    write_private(&files.key, &pems.key)?;
    Ok(Loaded::read(&files)?.identity)
}

/// The Secrets to create, CA first, given the ones that exist (`existing`, by name).
/// `scratch` is an empty directory for the key material (the chart gives the Job a memory
/// volume for it). Errors on the cases the module docs list.
pub fn plan(
    settings: &PkiSettings,
    existing: &BTreeMap<String, Secret>,
    scratch: &Path,
) -> anyhow::Result<Vec<Secret>> {
    settings.validate()?;
    let pki_dir = scratch.join("pki");
    fs::create_dir(&pki_dir).with_context(|| format!("creating {}", pki_dir.display()))?;
    let ca = existing.get(&settings.ca_secret);
    let present: Vec<&str> = settings
        .secrets
        .iter()
        .filter(|(_, name)| existing.contains_key(name))
        .map(|(_, name)| name.as_str())
        .collect();
    if let Some(ca) = ca {
        // The CA's Secret: tls.crt and tls.key are the CA's own. ensure_dev_pki signs the
        // missing certificates with it.
        let pems = TlsPems::of_secret(ca)?;
        write_private(&pki_dir.join("ca.crt"), &pems.cert)?;
        write_private(&pki_dir.join("ca.key"), &pems.key)?;
    } else if !present.is_empty() {
        bail!(
            "the CA Secret {} is missing but {} exist: the CA that signed them is gone. \
             Restore {}, or delete those Secrets to have every certificate made again",
            settings.ca_secret,
            present.join(", "),
            settings.ca_secret
        );
    }
    let made = ensure_dev_pki(&pki_dir, &settings.trust_domain)
        .context("making the CA and the role certificates")?;
    let ca_pem = fs::read(pki_dir.join("ca.crt")).context("reading the CA certificate")?;

    // Every kept role Secret must fit the others: same CA, its own role, this trust domain.
    for (role, name) in &settings.secrets {
        let Some(secret) = existing.get(name) else {
            continue;
        };
        let pems = TlsPems::of_secret(secret)?;
        if !same_pem(&pems.ca, &ca_pem) {
            bail!(
                "Secret {name}: its ca.crt is not the CA in {}; delete {name} to have it made \
                 again with that CA",
                settings.ca_secret
            );
        }
        let want = Identity::new(&settings.trust_domain, *role);
        let found = identity_of(&pems, scratch, &format!("existing-{role}"))
            .with_context(|| format!("Secret {name}"))?;
        if found != want {
            bail!(
                "Secret {name} holds a certificate for {found}, not {want} (was the trust \
                 domain changed?); delete it to have it made again"
            );
        }
    }

    let mut out = Vec::new();
    if ca.is_none() {
        let key = fs::read(pki_dir.join("ca.key")).context("reading the CA key")?;
        out.push(tls_secret(
            &settings.ca_secret,
            &settings.namespace,
            &settings.labels,
            &TlsPems {
                ca: ca_pem.clone(),
                cert: ca_pem.clone(),
                key,
            },
        ));
    }
    for (role, name) in &settings.secrets {
        if existing.contains_key(name) {
            continue;
        }
        let files = made
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, f)| f)
            .with_context(|| format!("no certificate was made for role {role}"))?;
        let pems = TlsPems::read(&files.ca, &files.cert, &files.key)?;
        out.push(tls_secret(
            name,
            &settings.namespace,
            &settings.labels,
            &pems,
        ));
    }
    Ok(out)
}

/// What [`run`] did with each Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It existed and was kept as it is.
    Kept,
    /// It was created.
    Created,
}

/// Reads the CA and role Secrets, makes what is missing and creates it; returns what
/// happened to each Secret, the CA's first.
pub async fn run(client: Client, settings: &PkiSettings) -> anyhow::Result<Vec<(String, Outcome)>> {
    settings.validate()?;
    let api: Api<Secret> = Api::namespaced(client, &settings.namespace);
    let names: Vec<&str> = std::iter::once(settings.ca_secret.as_str())
        .chain(settings.secrets.iter().map(|(_, n)| n.as_str()))
        .collect();
    let mut existing = BTreeMap::new();
    for name in &names {
        let found = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading Secret {}/{name}", settings.namespace))?;
        if let Some(secret) = found {
            existing.insert((*name).to_owned(), secret);
        }
    }
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    let to_create = plan(settings, &existing, scratch.path())?;
    for secret in &to_create {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        match api.create(&PostParams::default(), secret).await {
            Ok(_) => tracing::info!(secret = name, "created"),
            // Another run made it meanwhile; which of the two certificates is in it is not
            // known here, so stop and let the next run (the Job retries) check what exists.
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                bail!("Secret {name} was created by someone else while this run made it; run again")
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating Secret {}/{name}", settings.namespace))
            }
        }
    }
    let created = |name: &str| {
        to_create
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(name))
    };
    Ok(names
        .iter()
        .map(|&n| {
            let outcome = if created(n) {
                Outcome::Created
            } else {
                Outcome::Kept
            };
            (n.to_owned(), outcome)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, UnixTime};

    fn settings(trust_domain: &str) -> PkiSettings {
        PkiSettings {
            namespace: "mail".into(),
            trust_domain: trust_domain.into(),
            ca_secret: "tern-cluster-ca".into(),
            secrets: Role::ALL
                .iter()
                .map(|r| (*r, format!("tern-{r}-cluster-tls")))
                .collect(),
            labels: BTreeMap::from([("app.kubernetes.io/instance".into(), "tern".into())]),
        }
    }

    fn by_name(secrets: Vec<Secret>) -> BTreeMap<String, Secret> {
        secrets
            .into_iter()
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), s))
            .collect()
    }

    /// Whether `cert_pem` is signed by the CA in `ca_pem`, as a Tern server checks a client.
    fn signed_by(ca_pem: &[u8], cert_pem: &[u8]) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let cert = CertificateDer::from_pem_slice(cert_pem).expect("certificate PEM");
        verifier
            .verify_client_cert(&cert, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn secrets_have_the_tls_shape_and_labels() {
        let pems = TlsPems {
            ca: b"ca".to_vec(),
            cert: b"cert".to_vec(),
            key: b"key".to_vec(),
        };
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let s = tls_secret("tern-store-cluster-tls", "mail", &labels, &pems);
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(s.metadata.name.as_deref(), Some("tern-store-cluster-tls"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("mail"));
        let l = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            l.get("app.kubernetes.io/managed-by").map(String::as_str),
            Some("tern-controller")
        );
        let data = s.data.clone().unwrap_or_default();
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ca.crt", "tls.crt", "tls.key"]
        );
        assert_eq!(TlsPems::of_secret(&s).unwrap(), pems);
        let mut missing = s;
        missing.data.as_mut().unwrap().remove("tls.key");
        let err = TlsPems::of_secret(&missing).unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
    }

    #[test]
    fn first_run_makes_the_ca_and_every_role() {
        let scratch = tempfile::tempdir().unwrap();
        let s = settings("tern.cluster");
        let made = plan(&s, &BTreeMap::new(), scratch.path()).unwrap();
        assert_eq!(made.len(), 1 + Role::ALL.len());
        assert_eq!(made[0].metadata.name.as_deref(), Some("tern-cluster-ca"));
        let ca = TlsPems::of_secret(&made[0]).unwrap();
        assert_eq!(ca.ca, ca.cert, "the CA Secret's tls.crt is the CA itself");
        for (secret, role) in made[1..].iter().zip(Role::ALL) {
            assert_eq!(
                secret.metadata.name.as_deref(),
                Some(format!("tern-{role}-cluster-tls").as_str())
            );
            let pems = TlsPems::of_secret(secret).unwrap();
            assert_eq!(pems.ca, ca.cert);
            assert!(signed_by(&ca.cert, &pems.cert), "{role}");
            let dir = tempfile::tempdir().unwrap();
            assert_eq!(
                identity_of(&pems, dir.path(), "x").unwrap(),
                Identity::new("tern.cluster", role)
            );
        }
    }

    #[test]
    fn later_runs_keep_what_exists_and_sign_the_missing_with_the_kept_ca() {
        let s = settings("tern.cluster");
        let first =
            by_name(plan(&s, &BTreeMap::new(), tempfile::tempdir().unwrap().path()).unwrap());
        // Everything exists: nothing to do.
        let again = plan(&s, &first, tempfile::tempdir().unwrap().path()).unwrap();
        assert!(again.is_empty(), "{again:?}");
        // The queue's Secret was deleted (to renew it): only it is made, with the same CA.
        let mut without_queue = first.clone();
        without_queue.remove("tern-queue-cluster-tls");
        let made = plan(&s, &without_queue, tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(made.len(), 1);
        assert_eq!(
            made[0].metadata.name.as_deref(),
            Some("tern-queue-cluster-tls")
        );
        let ca = TlsPems::of_secret(&first["tern-cluster-ca"]).unwrap();
        let queue = TlsPems::of_secret(&made[0]).unwrap();
        assert!(same_pem(&queue.ca, &ca.cert));
        assert!(signed_by(&ca.cert, &queue.cert));
        assert_ne!(
            queue.cert,
            TlsPems::of_secret(&first["tern-queue-cluster-tls"])
                .unwrap()
                .cert,
            "a new certificate"
        );
    }

    #[test]
    fn refuses_role_secrets_without_their_ca() {
        let s = settings("tern.cluster");
        let mut first =
            by_name(plan(&s, &BTreeMap::new(), tempfile::tempdir().unwrap().path()).unwrap());
        first.remove("tern-cluster-ca");
        let err = plan(&s, &first, tempfile::tempdir().unwrap().path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tern-cluster-ca is missing"), "{err}");
    }

    #[test]
    fn refuses_another_trust_domain_or_ca() {
        let old = by_name(
            plan(
                &settings("old.example"),
                &BTreeMap::new(),
                tempfile::tempdir().unwrap().path(),
            )
            .unwrap(),
        );
        let err = plan(
            &settings("tern.cluster"),
            &old,
            tempfile::tempdir().unwrap().path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("spiffe://old.example/tern/"), "{err}");

        // A role Secret from another installation's CA.
        let s = settings("tern.cluster");
        let mut mine =
            by_name(plan(&s, &BTreeMap::new(), tempfile::tempdir().unwrap().path()).unwrap());
        let theirs =
            by_name(plan(&s, &BTreeMap::new(), tempfile::tempdir().unwrap().path()).unwrap());
        mine.insert(
            "tern-smtp-cluster-tls".into(),
            theirs["tern-smtp-cluster-tls"].clone(),
        );
        let err = plan(&s, &mine, tempfile::tempdir().unwrap().path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("tern-smtp-cluster-tls: its ca.crt"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        assert!(settings("tern.cluster").validate().is_ok());
        assert!(settings("Tern.Cluster").validate().is_err());
        assert!(settings("").validate().is_err());
        let mut twice = settings("tern.cluster");
        twice.secrets.push((Role::Store, "another".into()));
        assert!(twice.validate().is_err());
        let mut clash = settings("tern.cluster");
        clash.ca_secret = "tern-store-cluster-tls".into();
        assert!(clash.validate().is_err());
        let mut bad_name = settings("tern.cluster");
        bad_name.secrets[0].1 = "Tern_Store".into();
        assert!(bad_name.validate().is_err());
        let mut none = settings("tern.cluster");
        none.secrets.clear();
        assert!(none.validate().is_err());
        assert!(valid_secret_name("tern-store-cluster-tls"));
        assert!(valid_secret_name("a.b-c"));
        assert!(!valid_secret_name("-a"));
        assert!(!valid_secret_name("a..b"));
    }
}
