//! Why settings could not be loaded; every error names the key and where it came from.
//!
//! An error that wraps another keeps it as its `source` and leaves it out of its own message,
//! so that `anyhow`'s report in a service's `main` prints each cause once.

use std::fmt;
use std::path::PathBuf;

use crate::BoxError;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The settings file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as spelled (`--max-connections`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "settings file {}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Settings that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings file cannot be read.
    #[error("reading settings file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The settings file is not valid TOML for this service (the message names the key and
    /// the line: unknown keys, wrong types).
    #[error("settings file {}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A flag's or variable's text is not a value of its key's type.
    #[error("{origin}: {value:?} is not a valid {key}: {reason}")]
    BadValue {
        origin: Origin,
        key: &'static str,
        value: String,
        reason: String,
    },
    /// A flag this service does not have.
    #[error("unknown flag {flag}{}; see --help", hint(.suggestion))]
    UnknownFlag {
        flag: String,
        suggestion: Option<String>,
    },
    /// A `TERN_*` variable that is a near miss of one of this service's settings.
    #[error(
        "environment variable {name} is not a setting of {program} (did you mean {suggestion}?)"
    )]
    UnknownEnv {
        name: String,
        program: &'static str,
        suggestion: String,
    },
    /// A flag that needs a value came last.
    #[error("flag {flag} needs a value")]
    MissingValue { flag: String },
    /// An argument that is not a flag.
    #[error("unexpected argument {0:?}; settings are given as --key value (see --help)")]
    Unexpected(String),
    /// An argument or variable that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(String),
    /// The merged layers do not deserialize (a value that passed its own parser but not the
    /// struct; kept as an error rather than trusted away).
    #[error("merging the settings")]
    Merge(#[source] toml::de::Error),
    /// The service's own check refused the effective settings.
    #[error("invalid settings")]
    Invalid(#[source] BoxError),
    /// The effective settings cannot be printed as TOML (`--print-config`).
    #[error("printing the settings")]
    Print(#[source] toml::ser::Error),
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}
