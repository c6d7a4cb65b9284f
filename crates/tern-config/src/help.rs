//! The one place every key is documented, generated from the settings struct: `--help` (each
//! flag with its variable, default and doc comment) and `--print-config` (the effective
//! settings as a TOML file, each key under its doc comment).

use std::fmt::Write as _;

use crate::{Error, Settings, CONFIG_ENV};

/// How the layers combine, said once for `--help` and `--print-config`.
const PRECEDENCE: &str = "\
Every setting is a key of the TOML settings file (--config FILE or TERN_CONFIG), an
environment variable TERN_<KEY> and a flag --<key-with-dashes>: flags win over the
environment, which wins over the file. Lists are comma-separated (a,b); maps are
key=value,key=value and add to the file's map; an empty value unsets an optional setting.";

/// The `--help` text.
pub(crate) fn text<T: Settings>() -> String {
    let defaults = table(&T::default());
    let mut out = format!(
        "{program} {version}\n{about}\n\nUsage: {program} [--config FILE] [--KEY VALUE]...\n\n\
         {PRECEDENCE}\n\nOptions:\n",
        program = T::PROGRAM,
        version = T::VERSION,
        about = T::ABOUT,
    );
    entry(
        &mut out,
        "--config <FILE>",
        &format!("[env: {CONFIG_ENV}]"),
        ["TOML settings file; every key below may be set in it."],
    );
    for key in T::KEYS {
        let default = match defaults.as_ref().and_then(|d| d.get(key.name)) {
            Some(value) => format!(" [default: {}]", as_flag(value)),
            None => String::new(),
        };
        entry(
            &mut out,
            &format!("--{} <{}>", key.flag_name(), key.kind.shape),
            &format!("[env: {}]{default}", key.env_name()),
            key.doc_lines(),
        );
    }
    entry(
        &mut out,
        "--print-config",
        "",
        ["Print the effective settings as a TOML file, each key with its documentation, and exit."],
    );
    entry(&mut out, "-h, --help", "", ["Print this help."]);
    entry(&mut out, "-V, --version", "", ["Print the version."]);
    out
}

/// The effective settings as a TOML file that loads back to the same settings.
pub(crate) fn effective<T: Settings>(settings: &T) -> Result<String, Error> {
    let values = toml::Table::try_from(settings).map_err(Error::Print)?;
    let mut out = format!(
        "# {} {}: effective settings.\n{}\n",
        T::PROGRAM,
        T::VERSION,
        comment(PRECEDENCE.lines())
    );
    for key in T::KEYS {
        out.push('\n');
        out.push_str(&comment(key.doc_lines()));
        match values.get(key.name) {
            Some(value) => {
                let _ = writeln!(out, "{} = {value}", key.name);
            }
            None => {
                let _ = writeln!(out, "# {} is not set", key.name);
            }
        }
    }
    Ok(out)
}

/// The settings as a TOML table (`None` fields are left out), or `None` if they do not
/// serialize, in which case help shows no defaults rather than failing.
fn table<T: Settings>(settings: &T) -> Option<toml::Table> {
    toml::Table::try_from(settings).ok()
}

/// One `--help` entry: the flag, its annotations, and its doc lines indented below.
fn entry<'a>(out: &mut String, flag: &str, notes: &str, doc: impl IntoIterator<Item = &'a str>) {
    let _ = writeln!(out, "  {flag}  {notes}");
    for line in doc {
        let _ = writeln!(out, "          {line}");
    }
}

fn comment<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    lines.into_iter().map(|l| format!("# {l}\n")).collect()
}

/// A value as it would be written after its flag.
fn as_flag(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) if s.is_empty() => "\"\"".into(),
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(as_flag).collect::<Vec<_>>().join(","),
        toml::Value::Table(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", as_flag(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}
