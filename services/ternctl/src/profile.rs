//! Where ternctl connects and with which certificate: flags, `TERNCTL_*` variables, and a
//! profile file.
//!
//! Every store port requires mutual TLS, so every invocation needs three files (the cluster
//! CA, the admin certificate and its key) besides the endpoint. Typing them on every command
//! is too much, so they can live in a profile: a small TOML file with the keys `endpoint`,
//! `ca`, `cert` and `key`, named by `--profile`/`TERNCTL_PROFILE`. `cargo xtask up` writes
//! one for the development cluster at [`DEFAULT_PROFILE`], which ternctl reads when it is run
//! from the repository with nothing else set. It is not `TERN_CONFIG`: that names a
//! service's configuration, and a shell that runs a service by hand must not make ternctl
//! read it. ternctl's own variables are `TERNCTL_*`; `TERN_ENDPOINT` is the one shared name,
//! kept from before there were profiles.
//!
//! Precedence, setting by setting: a flag or its variable (clap has merged the two), then the
//! profile named by `--profile`/`TERNCTL_PROFILE`, then [`DEFAULT_PROFILE`] in the current
//! directory, which is read only when none of `--profile`, `--ca`, `--cert`, `--key` is given
//! (so certificates given on the command line are never mixed with the development ones
//! behind the operator's back). The endpoint falls back to [`DEFAULT_ENDPOINT`].
//!
//! Relative paths in a profile are relative to the profile's directory, so the file stays
//! right wherever ternctl is run from; relative paths on the command line are relative to the
//! current directory, as usual.
//!
//! [`Profile::parse`], [`profile_to_read`] and [`merge`] are pure functions of their
//! arguments (the unit tests never touch the process environment); [`load`] adds the file
//! system.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tern_trust::pki::CertFiles;

use crate::client::normalize_endpoint;

/// The profile `cargo xtask up` writes (with its default data directory), relative to the
/// current directory.
pub const DEFAULT_PROFILE: &str = ".tern/dev/ternctl.toml";

/// Default store endpoint: node 1 of the local development cluster (`cargo xtask up`).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7101";

/// What the command line and the environment gave; `None` is "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    /// `--endpoint` / `TERN_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `--ca` / `TERNCTL_CA`.
    pub ca: Option<PathBuf>,
    /// `--cert` / `TERNCTL_CERT`.
    pub cert: Option<PathBuf>,
    /// `--key` / `TERNCTL_KEY`.
    pub key: Option<PathBuf>,
    /// `--profile` / `TERNCTL_PROFILE`.
    pub profile: Option<PathBuf>,
}

impl Given {
    /// An empty value (`TERNCTL_CERT=` left in a shell) counts as not given.
    fn cleaned(&self) -> Given {
        let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        Given {
            endpoint: self.endpoint.clone(),
            ca: path(&self.ca),
            cert: path(&self.cert),
            key: path(&self.key),
            profile: path(&self.profile),
        }
    }

    fn names_a_file(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// One of the three files of a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Ca,
    Cert,
    Key,
}

impl FileKind {
    const ALL: [FileKind; 3] = [FileKind::Ca, FileKind::Cert, FileKind::Key];

    /// The key in a profile.
    pub fn key(self) -> &'static str {
        match self {
            FileKind::Ca => "ca",
            FileKind::Cert => "cert",
            FileKind::Key => "key",
        }
    }

    /// The flag and its variable.
    pub fn origin(self) -> Origin {
        match self {
            FileKind::Ca => Origin::Flag("--ca", "TERNCTL_CA"),
            FileKind::Cert => Origin::Flag("--cert", "TERNCTL_CERT"),
            FileKind::Key => Origin::Flag("--key", "TERNCTL_KEY"),
        }
    }

    /// What the file is, in words.
    pub fn what(self) -> &'static str {
        match self {
            FileKind::Ca => "CA certificate",
            FileKind::Cert => "client certificate",
            FileKind::Key => "client key",
        }
    }
}

/// Where a setting came from, named in error messages so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A flag or its environment variable (clap does not say which).
    Flag(&'static str, &'static str),
    /// A profile file.
    Profile(PathBuf),
    /// ternctl's built-in default.
    Default,
}

const ENDPOINT_FLAG: Origin = Origin::Flag("--endpoint", "TERN_ENDPOINT");
const PROFILE_FLAG: Origin = Origin::Flag("--profile", "TERNCTL_PROFILE");

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag, env) => write!(f, "{flag}/{env}"),
            Origin::Profile(path) => write!(f, "profile {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// A profile file's settings, with relative paths already made relative to its directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The file.
    pub path: PathBuf,
    pub endpoint: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The file's syntax. Unknown keys are refused: a misspelt `cert` must not fall back to
/// another certificate silently.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileToml {
    endpoint: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Profile {
    /// Parses `text`, the contents of the profile file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ProfileError> {
        let raw: ProfileToml = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let why = e.message().trim().to_string();
            ProfileError::InvalidProfile {
                path: path.to_path_buf(),
                why: match line {
                    Some(line) => format!("line {line}: {why}"),
                    None => why,
                },
            }
        })?;
        let dir = path.parent().unwrap_or_else(|| Path::new(""));
        let resolve = |p: Option<PathBuf>| {
            p.filter(|p| !p.as_os_str().is_empty()).map(|p| {
                if p.is_absolute() {
                    p
                } else {
                    dir.join(p)
                }
            })
        };
        Ok(Self {
            path: path.to_path_buf(),
            endpoint: raw.endpoint,
            ca: resolve(raw.ca),
            cert: resolve(raw.cert),
            key: resolve(raw.key),
        })
    }

    /// Reads and parses the profile at `path`; `origin` says who named it, for the error
    /// when it does not exist.
    pub fn read(path: &Path, origin: Origin) -> Result<Self, ProfileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ProfileError::MissingProfile {
                    path: path.to_path_buf(),
                    origin,
                })
            }
            Err(source) => Err(ProfileError::UnreadableProfile {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn file(&self, kind: FileKind) -> Option<&PathBuf> {
        match kind {
            FileKind::Ca => self.ca.as_ref(),
            FileKind::Cert => self.cert.as_ref(),
            FileKind::Key => self.key.as_ref(),
        }
    }
}

/// Which profile to read, and who named it: the one `--profile`/`TERNCTL_PROFILE` names;
/// else [`DEFAULT_PROFILE`] when `default_exists` and no certificate file is given by flag.
pub fn profile_to_read(given: &Given, default_exists: bool) -> Option<(PathBuf, Origin)> {
    let given = given.cleaned();
    if let Some(path) = &given.profile {
        return Some((path.clone(), PROFILE_FLAG));
    }
    if default_exists && !given.names_a_file() {
        return Some((PathBuf::from(DEFAULT_PROFILE), Origin::Default));
    }
    None
}

/// Everything needed to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The URL for tonic, `http://HOST:PORT` (the TLS is done by ternctl's connector).
    pub endpoint: Sourced<String>,
    pub ca: Sourced<PathBuf>,
    pub cert: Sourced<PathBuf>,
    pub key: Sourced<PathBuf>,
}

impl Settings {
    /// The files, as tern-proto's TLS wants them.
    pub fn files(&self) -> CertFiles {
        CertFiles {
            ca: self.ca.value.clone(),
            cert: self.cert.value.clone(),
            key: self.key.value.clone(),
        }
    }

    fn file(&self, kind: FileKind) -> &Sourced<PathBuf> {
        match kind {
            FileKind::Ca => &self.ca,
            FileKind::Cert => &self.cert,
            FileKind::Key => &self.key,
        }
    }

    /// The three files and where they came from, for error messages.
    pub fn describe_files(&self) -> String {
        let (ca, cert, key) = (
            self.ca.value.display(),
            self.cert.value.display(),
            self.key.value.display(),
        );
        let one_origin = self.cert.origin == self.ca.origin && self.key.origin == self.ca.origin;
        match &self.ca.origin {
            Origin::Profile(path) if one_origin => format!(
                "CA {ca}, certificate {cert}, key {key} (from profile {})",
                path.display()
            ),
            Origin::Flag(..) if self.file_origins_are_flags() => {
                format!("CA {ca}, certificate {cert}, key {key} (from --ca/--cert/--key)")
            }
            _ => format!(
                "CA {ca} ({}), certificate {cert} ({}), key {key} ({})",
                self.ca.origin, self.cert.origin, self.key.origin
            ),
        }
    }

    fn file_origins_are_flags(&self) -> bool {
        [&self.ca, &self.cert, &self.key]
            .iter()
            .all(|s| matches!(s.origin, Origin::Flag(..)))
    }
}

/// Combines what was given with the profile that was read (if any), by the precedence in
/// the module docs.
pub fn merge(given: &Given, profile: Option<&Profile>) -> Result<Settings, ProfileError> {
    let given = given.cleaned();
    let endpoint = match (&given.endpoint, profile) {
        (Some(e), _) => Sourced {
            value: e.clone(),
            origin: ENDPOINT_FLAG,
        },
        (
            None,
            Some(Profile {
                endpoint: Some(e),
                path,
                ..
            }),
        ) => Sourced {
            value: e.clone(),
            origin: Origin::Profile(path.clone()),
        },
        (None, _) => Sourced {
            value: DEFAULT_ENDPOINT.to_string(),
            origin: Origin::Default,
        },
    };
    let url = normalize_endpoint(&endpoint.value).map_err(|why| ProfileError::Endpoint {
        value: endpoint.value.clone(),
        origin: endpoint.origin.clone(),
        why,
    })?;
    let endpoint = Sourced {
        value: url,
        origin: endpoint.origin,
    };

    if !given.names_a_file() && profile.is_none() {
        return Err(ProfileError::NoCertificate);
    }
    let pick = |kind: FileKind| -> Option<Sourced<PathBuf>> {
        let flag = match kind {
            FileKind::Ca => &given.ca,
            FileKind::Cert => &given.cert,
            FileKind::Key => &given.key,
        };
        if let Some(path) = flag {
            return Some(Sourced {
                value: path.clone(),
                origin: kind.origin(),
            });
        }
        let profile = profile?;
        profile.file(kind).map(|path| Sourced {
            value: path.clone(),
            origin: Origin::Profile(profile.path.clone()),
        })
    };
    match (
        pick(FileKind::Ca),
        pick(FileKind::Cert),
        pick(FileKind::Key),
    ) {
        (Some(ca), Some(cert), Some(key)) => Ok(Settings {
            endpoint,
            ca,
            cert,
            key,
        }),
        _ => Err(ProfileError::Incomplete {
            missing: FileKind::ALL
                .into_iter()
                .filter(|&k| pick(k).is_none())
                .collect(),
            profile: profile.map(|p| p.path.clone()),
        }),
    }
}

/// Checks that the three files exist, so the error names the one that does not and where
/// it was named. (What is wrong inside a file that exists is the TLS loader's to say.)
pub fn check_files(settings: &Settings) -> Result<(), ProfileError> {
    for kind in FileKind::ALL {
        let file = settings.file(kind);
        if let Err(e) = std::fs::metadata(&file.value) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(ProfileError::MissingFile {
                    what: kind.what(),
                    path: file.value.clone(),
                    origin: file.origin.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The settings for this invocation: reads the profile that applies (looking for
/// [`DEFAULT_PROFILE`] in the current directory), merges, and checks that the files exist.
pub fn load(given: &Given) -> Result<Settings, ProfileError> {
    let default_exists = Path::new(DEFAULT_PROFILE).is_file();
    let profile = match profile_to_read(given, default_exists) {
        Some((path, origin)) => Some(Profile::read(&path, origin)?),
        None => None,
    };
    let settings = merge(given, profile.as_ref())?;
    check_files(&settings)?;
    Ok(settings)
}

/// Why ternctl cannot tell where to connect or with which certificate. Exits with status 2,
/// like a usage error: the command line, the environment or a profile must change.
#[derive(Debug)]
pub enum ProfileError {
    /// No certificate file is given and there is no profile to read.
    NoCertificate,
    /// Some of the three files are given, not all.
    Incomplete {
        missing: Vec<FileKind>,
        /// The profile that was read, if any.
        profile: Option<PathBuf>,
    },
    /// The profile named does not exist.
    MissingProfile { path: PathBuf, origin: Origin },
    /// The profile exists but cannot be read.
    UnreadableProfile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The profile is not valid TOML or has keys ternctl does not know.
    InvalidProfile { path: PathBuf, why: String },
    /// The endpoint is not one ternctl can use.
    Endpoint {
        value: String,
        origin: Origin,
        why: String,
    },
    /// A certificate or key file does not exist.
    MissingFile {
        what: &'static str,
        path: PathBuf,
        origin: Origin,
    },
    /// The files exist but do not make a usable client certificate (not PEM, no identity,
    /// a key that does not match).
    Tls {
        /// [`Settings::describe_files`].
        files: String,
        source: tern_trust::tls::TlsError,
    },
}

/// The exact words of [`ProfileError::NoCertificate`].
pub const NO_CERTIFICATE: &str = "no client certificate: pass --ca/--cert/--key or --profile, \
     or run from a directory with .tern/dev/ternctl.toml (cargo xtask up writes it)";

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::NoCertificate => f.write_str(NO_CERTIFICATE),
            ProfileError::Incomplete { missing, profile } => {
                let what: Vec<String> =
                    missing.iter().map(|k| format!("no {}", k.what())).collect();
                let flags: Vec<String> = missing.iter().map(|k| k.origin().to_string()).collect();
                match profile {
                    Some(path) => {
                        let keys: Vec<&str> = missing.iter().map(|k| k.key()).collect();
                        write!(
                            f,
                            "{}: profile {} sets no {} and {} is not given",
                            what.join(" and "),
                            path.display(),
                            keys.join(" or "),
                            flags.join(" or ")
                        )
                    }
                    None => write!(
                        f,
                        "{}: pass {} too, or use --profile (--ca, --cert and --key go together)",
                        what.join(" and "),
                        flags.join(" and ")
                    ),
                }
            }
            ProfileError::MissingProfile { path, origin } => {
                write!(f, "profile {} ({origin}) does not exist", path.display())
            }
            ProfileError::UnreadableProfile { path, source } => {
                write!(f, "cannot read profile {}: {source}", path.display())
            }
            ProfileError::InvalidProfile { path, why } => {
                write!(f, "profile {}: {why}", path.display())
            }
            ProfileError::Endpoint { value, origin, why } => {
                write!(f, "endpoint {value:?} ({origin}): {why}")
            }
            ProfileError::MissingFile { what, path, origin } => {
                write!(f, "{what} {} ({origin}) does not exist", path.display())
            }
            ProfileError::Tls { files, source } => {
                write!(f, "cannot use the client certificate: {source} ({files})")
            }
        }
    }
}

impl std::error::Error for ProfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProfileError::UnreadableProfile { source, .. } => Some(source),
            ProfileError::Tls { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given() -> Given {
        Given::default()
    }

    fn flags(ca: &str, cert: &str, key: &str) -> Given {
        Given {
            ca: Some(ca.into()),
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..Given::default()
        }
    }

    const DEV: &str = "endpoint = \"127.0.0.1:7102\"\n\
                       ca = \"tls/ca.crt\"\n\
                       cert = \"tls/admin.crt\"\n\
                       key = \"tls/admin.key\"\n";

    fn dev_profile() -> Profile {
        Profile::parse(DEV, Path::new(DEFAULT_PROFILE)).expect("parses")
    }

    #[test]
    fn relative_paths_are_relative_to_the_profile() {
        let p = dev_profile();
        assert_eq!(p.endpoint.as_deref(), Some("127.0.0.1:7102"));
        assert_eq!(p.ca, Some(PathBuf::from(".tern/dev/tls/ca.crt")));
        assert_eq!(p.cert, Some(PathBuf::from(".tern/dev/tls/admin.crt")));
        assert_eq!(p.key, Some(PathBuf::from(".tern/dev/tls/admin.key")));

        let p = Profile::parse(
            "ca = \"/etc/tern/ca.crt\"\ncert = \"admin.crt\"\n",
            Path::new("/home/op/tern/prod.toml"),
        )
        .expect("parses");
        assert_eq!(p.ca, Some(PathBuf::from("/etc/tern/ca.crt")));
        assert_eq!(p.cert, Some(PathBuf::from("/home/op/tern/admin.crt")));
        assert_eq!(p.key, None);
        assert_eq!(p.endpoint, None);

        // A profile in the current directory: paths stay relative to it.
        let p = Profile::parse("key = \"k.pem\"", Path::new("ternctl.toml")).expect("parses");
        assert_eq!(p.key, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_file_and_line() {
        let path = Path::new("/x/ternctl.toml");
        let err = Profile::parse("ca = \"a\"\ncertificate = \"b\"\n", path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("profile /x/ternctl.toml: line 2: "),
            "{text}"
        );
        assert!(text.contains("certificate"), "{text}");
        assert!(!text.contains('\n'), "{text}");

        let err = Profile::parse("endpoint = 7101\n", path).unwrap_err();
        assert!(
            err.to_string().starts_with("profile /x/ternctl.toml: "),
            "{err}"
        );
        let err = Profile::parse("ca = \n", path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("profile /x/ternctl.toml: line "),
            "{err}"
        );
    }

    #[test]
    fn the_named_profile_wins_then_the_default_when_nothing_is_given() {
        let named = Given {
            profile: Some("prod.toml".into()),
            ..given()
        };
        assert_eq!(
            profile_to_read(&named, true),
            Some((PathBuf::from("prod.toml"), PROFILE_FLAG))
        );
        assert_eq!(
            profile_to_read(&given(), true),
            Some((PathBuf::from(DEFAULT_PROFILE), Origin::Default))
        );
        assert_eq!(profile_to_read(&given(), false), None);
        // A certificate flag means "not the development profile".
        let cert_only = Given {
            cert: Some("x.crt".into()),
            ..given()
        };
        assert_eq!(profile_to_read(&cert_only, true), None);
        // An endpoint alone still uses the development certificates.
        let endpoint_only = Given {
            endpoint: Some("127.0.0.1:7103".into()),
            ..given()
        };
        assert!(profile_to_read(&endpoint_only, true).is_some());
        // Empty variables count as unset.
        let empty = Given {
            profile: Some(PathBuf::new()),
            cert: Some(PathBuf::new()),
            ..given()
        };
        assert_eq!(
            profile_to_read(&empty, true),
            Some((PathBuf::from(DEFAULT_PROFILE), Origin::Default))
        );
    }

    #[test]
    fn flags_override_the_profile_setting_by_setting() {
        let profile = dev_profile();
        let s = merge(&given(), Some(&profile)).expect("complete");
        assert_eq!(s.endpoint.value, "http://127.0.0.1:7102");
        assert_eq!(s.endpoint.origin, Origin::Profile(DEFAULT_PROFILE.into()));
        assert_eq!(s.cert.value, PathBuf::from(".tern/dev/tls/admin.crt"));
        assert_eq!(
            s.describe_files(),
            "CA .tern/dev/tls/ca.crt, certificate .tern/dev/tls/admin.crt, \
             key .tern/dev/tls/admin.key (from profile .tern/dev/ternctl.toml)"
        );

        let g = Given {
            endpoint: Some("https://10.0.0.1:7100".into()),
            cert: Some("other.crt".into()),
            key: Some("other.key".into()),
            ..given()
        };
        let s = merge(&g, Some(&profile)).expect("complete");
        assert_eq!(s.endpoint.value, "http://10.0.0.1:7100");
        assert_eq!(s.endpoint.origin, ENDPOINT_FLAG);
        assert_eq!(s.ca.value, PathBuf::from(".tern/dev/tls/ca.crt"));
        assert_eq!(s.cert.value, PathBuf::from("other.crt"));
        assert_eq!(s.cert.origin, FileKind::Cert.origin());
        assert_eq!(s.key.value, PathBuf::from("other.key"));
        assert_eq!(
            s.files(),
            CertFiles {
                ca: ".tern/dev/tls/ca.crt".into(),
                cert: "other.crt".into(),
                key: "other.key".into(),
            }
        );
        assert_eq!(
            s.describe_files(),
            "CA .tern/dev/tls/ca.crt (profile .tern/dev/ternctl.toml), \
             certificate other.crt (--cert/TERNCTL_CERT), key other.key (--key/TERNCTL_KEY)"
        );
    }

    #[test]
    fn flags_alone_and_the_default_endpoint() {
        let s = merge(&flags("ca.crt", "a.crt", "a.key"), None).expect("complete");
        assert_eq!(s.endpoint.value, DEFAULT_ENDPOINT);
        assert_eq!(s.endpoint.origin, Origin::Default);
        assert_eq!(
            s.describe_files(),
            "CA ca.crt, certificate a.crt, key a.key (from --ca/--cert/--key)"
        );
        // A profile without an endpoint leaves the default.
        let p = Profile::parse(
            "ca = \"c\"\ncert = \"a\"\nkey = \"k\"\n",
            Path::new("p.toml"),
        )
        .expect("parses");
        let s = merge(&given(), Some(&p)).expect("complete");
        assert_eq!(s.endpoint.value, DEFAULT_ENDPOINT);
    }

    #[test]
    fn nothing_given_is_the_no_certificate_error() {
        let err = merge(&given(), None).unwrap_err();
        assert!(matches!(err, ProfileError::NoCertificate));
        assert_eq!(
            err.to_string(),
            "no client certificate: pass --ca/--cert/--key or --profile, or run from a \
             directory with .tern/dev/ternctl.toml (cargo xtask up writes it)"
        );
        // An endpoint is not a certificate.
        let g = Given {
            endpoint: Some("127.0.0.1:7101".into()),
            ..given()
        };
        assert!(matches!(merge(&g, None), Err(ProfileError::NoCertificate)));
    }

    #[test]
    fn incomplete_settings_name_what_is_missing() {
        let g = Given {
            cert: Some("a.crt".into()),
            ..given()
        };
        let err = merge(&g, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "no CA certificate and no client key: pass --ca/TERNCTL_CA and --key/TERNCTL_KEY \
             too, or use --profile (--ca, --cert and --key go together)"
        );
        let p = Profile::parse("ca = \"c\"\ncert = \"a\"\n", Path::new("/p/prod.toml"))
            .expect("parses");
        let err = merge(&given(), Some(&p)).unwrap_err().to_string();
        assert_eq!(
            err,
            "no client key: profile /p/prod.toml sets no key and --key/TERNCTL_KEY is not given"
        );
        // The flag fills the gap.
        let g = Given {
            key: Some("k".into()),
            ..given()
        };
        assert!(merge(&g, Some(&p)).is_ok());
    }

    #[test]
    fn bad_endpoints_name_where_they_came_from() {
        let p = Profile {
            path: "/p/prod.toml".into(),
            endpoint: Some("ftp://x:1".into()),
            ..dev_profile()
        };
        let err = merge(&given(), Some(&p)).unwrap_err().to_string();
        assert!(
            err.starts_with("endpoint \"ftp://x:1\" (profile /p/prod.toml): unsupported scheme"),
            "{err}"
        );
        let g = Given {
            endpoint: Some(" ".into()),
            ..given()
        };
        let err = merge(&g, Some(&p)).unwrap_err().to_string();
        assert!(err.contains("(--endpoint/TERN_ENDPOINT)"), "{err}");
    }

    #[test]
    fn missing_files_are_named_with_their_origin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        let err = Profile::read(&missing, PROFILE_FLAG).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "profile {} (--profile/TERNCTL_PROFILE) does not exist",
                missing.display()
            )
        );

        let profile_path = dir.path().join("ternctl.toml");
        std::fs::write(&profile_path, DEV).expect("write profile");
        std::fs::create_dir(dir.path().join("tls")).expect("mkdir");
        std::fs::write(dir.path().join("tls/ca.crt"), "x").expect("write");
        let profile = Profile::read(&profile_path, PROFILE_FLAG).expect("reads");
        let s = merge(&given(), Some(&profile)).expect("complete");
        let err = check_files(&s).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "client certificate {} (profile {}) does not exist",
                dir.path().join("tls/admin.crt").display(),
                profile_path.display()
            )
        );

        std::fs::write(dir.path().join("tls/admin.crt"), "x").expect("write");
        std::fs::write(dir.path().join("tls/admin.key"), "x").expect("write");
        check_files(&s).expect("all three exist");
    }
}
