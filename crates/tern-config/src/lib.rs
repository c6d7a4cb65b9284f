//! One configuration mechanism for every Tern service.
//!
//! Every setting of a service is one field of one struct, declared inside [`settings!`] with a
//! doc comment and its default. From that one declaration come, by one rule for all services:
//!
//! - the TOML file key (`max_connections`), read from `--config FILE` or `TERN_CONFIG`;
//! - the environment variable `TERN_<KEY>` (`TERN_MAX_CONNECTIONS`), unless the field names
//!   another one with `#[env = "..."]` (tern-store's `id` is `TERN_NODE_ID`);
//! - the flag `--<key-with-dashes>` (`--max-connections VALUE` or `--max-connections=VALUE`);
//! - the entry in `--help` (the doc comment, the variable and the default) and in
//!   `--print-config` (the effective settings as a commented TOML file).
//!
//! Precedence: defaults < file < environment < flags. A list replaces the list below it; a map
//! (tern-queue's `transports`) is merged into the map below it, key by key, as the services did
//! before this crate. Flags and variables spell values as text ([`value`] has the rules: lists
//! comma-separated, maps `key=value,key=value`, booleans `true`/`false`, an empty value unsets
//! an optional setting). After merging, the service's own check runs (validation and
//! normalisation), once, on the effective settings.
//!
//! Mistakes are errors that name the key and where it came from: an unknown key in the file
//! (serde's `deny_unknown_fields`), an unknown flag (with the closest flag), a `TERN_*` variable
//! that is a near miss of a setting (`TERN_MAX_CONECTIONS`), a value that does not parse
//! (`environment variable TERN_POLL_MS: "soon" is not a valid poll_ms: ...`). Other `TERN_*`
//! variables are left alone, because the prefix is shared: ternctl reads `TERN_ENDPOINT` in the
//! store's pods, and the tests' `TERN_TEST_LOG` reaches every service they start.
//!
//! **Why our own small crate and not `figment`.** figment (MIT/Apache-2.0, builds on our
//! toolchain) layers a TOML file and a prefixed environment well, but it covers only half of
//! the job: it has no flag provider and no help text, so the flag layer, `--help` and the
//! mapping from field names to flags would still be ours; its environment provider parses
//! values as TOML-like literals, so `TERN_STORE=a:7100,b:7100` would not be a list and
//! `TERN_TRANSPORTS=example.org=relay:25` not a map without custom mapping per key; and with
//! `deny_unknown_fields` it would refuse the shared `TERN_ENDPOINT` unless every service kept
//! an allow-list. It would also bring `pear` and a proc-macro crate into every service. What
//! remains here is a declarative macro, a value parser per field type and about 300 lines of
//! layering, all unit-tested below.
//!
//! Dependencies: `serde` (the settings struct is deserialized from the merged layers and
//! serialized for defaults and `--print-config`), `toml` (the file format, and the value model
//! the layers are merged in), `thiserror` for [`Error`], `strsim` for the closest-name hints
//! (already in the build through clap).

mod error;
pub mod groups;
mod help;
mod layers;
pub mod value;

pub use error::{Error, Origin};
pub use groups::ClusterTlsSettings;
pub use layers::{load, parse, Parsed};
pub use value::{Kind, Value};

/// The error a service's check returns (its `anyhow::Error` converts into it with `?`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Prefix of every setting's environment variable.
pub const ENV_PREFIX: &str = "TERN_";

/// Environment variable naming the settings file (as the `--config` flag does).
pub const CONFIG_ENV: &str = "TERN_CONFIG";

/// One setting, as [`settings!`] describes it.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The field and TOML key (`max_connections`).
    pub name: &'static str,
    /// An environment variable other than `TERN_<NAME>`, kept for compatibility.
    pub env: Option<&'static str>,
    /// The field's doc comment, one `#[doc]` line per line.
    pub doc: &'static str,
    /// How flag and environment text becomes a value of the field's type.
    pub kind: Kind,
}

impl Key {
    /// The environment variable: `TERN_MAX_CONNECTIONS`, or the field's own.
    pub fn env_name(&self) -> String {
        match self.env {
            Some(name) => name.to_owned(),
            None => format!("{ENV_PREFIX}{}", self.name.to_ascii_uppercase()),
        }
    }

    /// The flag without its dashes: `max-connections`.
    pub fn flag_name(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The doc comment as plain lines (rustdoc keeps the space after `///`).
    pub fn doc_lines(&self) -> impl Iterator<Item = &'static str> {
        self.doc
            .lines()
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
    }
}

/// A service's settings struct, as declared with [`settings!`].
pub trait Settings: Default + serde::Serialize + serde::de::DeserializeOwned {
    /// The binary's name, for `--help` and `--version`.
    const PROGRAM: &'static str;
    /// One line on what the binary is.
    const ABOUT: &'static str;
    /// The binary's version.
    const VERSION: &'static str;
    /// Every setting, in declaration order.
    const KEYS: &'static [Key];

    /// Validates (and normalises) the effective settings, once, after all layers are merged.
    fn check(&mut self) -> Result<(), BoxError>;
}

/// Declares a service's settings struct once and implements [`Settings`] for it.
///
/// ```
/// tern_config::settings! {
///     program: "tern-example",
///     about: "An example service",
///     check: Example::check,
/// /// Effective settings of the example.
/// pub struct Example {
///     /// Store nodes (`host:port`).
///     #[default = vec!["127.0.0.1:7101".into()]]
///     pub store: Vec<String>,
///     /// The Raft id; its variable predates the naming rule.
///     #[env = "TERN_NODE_ID"]
///     #[default = 1]
///     pub id: u64,
///     /// Where to write the bound addresses (no default: `None`).
///     pub addr_file: Option<std::path::PathBuf>,
/// }
/// }
///
/// impl Example {
///     fn check(&mut self) -> Result<(), std::io::Error> {
///         Ok(())
///     }
/// }
///
/// let parsed = tern_config::parse::<Example>(
///     ["tern-example", "--store", "a:1,b:2"].map(String::from),
///     [("TERN_NODE_ID".to_string(), "3".to_string())],
/// );
/// match parsed {
///     Ok(tern_config::Parsed::Run(example)) => assert_eq!((example.store.len(), example.id), (2, 3)),
///     other => panic!("{other:?}"),
/// }
/// ```
///
/// The struct gets `Debug`, `Clone`, serde's `Deserialize` and `Serialize` (the invoking crate
/// depends on `serde`), `#[serde(default, deny_unknown_fields)]`, and `Default` from each
/// field's `#[default = ...]` (or its type's default when it has none: `None`, `""`, empty,
/// `false`). Every field needs a doc comment (it is the key's documentation); the attributes
/// come in the order doc, `env`, `default`. An optional `groups: [cluster_tls]` after `check`
/// appends groups of settings that several services share ([`groups`] has them). `check` names a function
/// taking `&mut` the struct (a `&self` method works too) and returning a `Result` whose error
/// converts into [`BoxError`]. The declaration stays unindented inside the macro so that it
/// reads, and is read by the chart's schema check, as the plain struct it expands to.
#[macro_export]
macro_rules! settings {
    (
        program: $program:literal,
        about: $about:literal,
        check: $check:path,
        groups: [$($group:ident),* $(,)?],
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $(#[env = $env:literal])?
                $(#[default = $default:expr])?
                pub $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $crate::__settings_with_groups! {
            [$($group)*] $name
            [program: $program, about: $about, check: $check, $(#[doc = $sdoc])*]
            {$(
                $(#[doc = $doc])+
                $(#[env = $env])?
                $(#[default = $default])?
                pub $field: $ty,
            )*}
            {}
        }
    };
    (
        program: $program:literal,
        about: $about:literal,
        check: $check:path,
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $(#[env = $env:literal])?
                $(#[default = $default:expr])?
                pub $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, ::serde::Deserialize, ::serde::Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $crate::__default_value!($($default)?),)*
                }
            }
        }

        impl $crate::Settings for $name {
            const PROGRAM: &'static str = $program;
            const ABOUT: &'static str = $about;
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const KEYS: &'static [$crate::Key] = &[$(
                $crate::Key {
                    name: stringify!($field),
                    env: $crate::__env_override!($($env)?),
                    doc: concat!($($doc, "\n"),+),
                    kind: <$ty as $crate::Value>::KIND,
                },
            )*];

            fn check(&mut self) -> ::std::result::Result<(), $crate::BoxError> {
                $check(self).map_err(::std::convert::Into::into)
            }
        }
    };
}

/// A field's `#[default = ...]`, else its type's default (a helper of [`settings!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __default_value {
    () => {
        ::std::default::Default::default()
    };
    ($default:expr) => {
        $default
    };
}

/// `Some(name)` for a field with `#[env = "..."]`, else `None` (a helper of [`settings!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __env_override {
    () => {
        None
    };
    ($env:literal) => {
        Some($env)
    };
}
