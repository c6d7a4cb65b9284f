//! How the text of a flag or an environment variable becomes a setting's value.
//!
//! A file holds typed TOML; flags and variables hold text. Each field type says, through
//! [`Value`], how its text is read, and the result is the TOML value the file would have held,
//! so that the three layers merge in one model and deserialize once. The rules are the ones the
//! services' flags followed before (clap's `value_delimiter = ','` lists, `domain=host:port`
//! maps, `true`/`false` booleans), with two kindnesses: items are trimmed and empty items
//! skipped, and an empty value unsets an optional setting instead of setting it to "".

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;

/// What a parser makes of a text: `Some(value)`, or `None` to unset an optional setting.
pub type Parsed = Result<Option<toml::Value>, String>;

/// How one field type is given as text.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The value's shape in `--help` (`N`, `A,B,...`).
    pub shape: &'static str,
    /// Reads a flag's or a variable's text; the error says why, without the key (the caller
    /// names the key and where the text came from).
    pub parse: fn(&str) -> Parsed,
    /// A bare flag (`--workers`, no value) means `true`.
    pub switch: bool,
}

/// A type a setting can have.
pub trait Value {
    /// How it is given as text.
    const KIND: Kind;
}

impl Value for String {
    const KIND: Kind = Kind {
        shape: "TEXT",
        parse: text,
        switch: false,
    };
}

impl Value for PathBuf {
    const KIND: Kind = Kind {
        shape: "PATH",
        parse: text,
        switch: false,
    };
}

impl Value for bool {
    const KIND: Kind = Kind {
        shape: "true|false",
        parse: boolean,
        switch: true,
    };
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const KIND: Kind = Kind {
                shape: "N",
                parse: integer::<$t>,
                switch: false,
            };
        }
    )*};
}
integers!(u16, u32, u64, usize);

impl Value for Vec<String> {
    const KIND: Kind = Kind {
        shape: "A,B,...",
        parse: list,
        switch: false,
    };
}

impl Value for BTreeMap<String, String> {
    const KIND: Kind = Kind {
        shape: "K=V,...",
        parse: map,
        switch: false,
    };
}

impl<T: Value> Value for Option<T> {
    const KIND: Kind = Kind {
        shape: T::KIND.shape,
        parse: optional::<T>,
        switch: T::KIND.switch,
    };
}

fn text(text: &str) -> Parsed {
    Ok(Some(toml::Value::String(text.to_owned())))
}

fn boolean(text: &str) -> Parsed {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(Some(toml::Value::Boolean(true))),
        "false" => Ok(Some(toml::Value::Boolean(false))),
        _ => Err("expected true or false".into()),
    }
}

fn integer<T>(text: &str) -> Parsed
where
    T: FromStr,
    T::Err: Display,
    i64: TryFrom<T>,
{
    let n: T = text.trim().parse().map_err(|e: T::Err| e.to_string())?;
    // TOML integers are i64; the largest u64 values cannot be written in a file either.
    let n = i64::try_from(n).map_err(|_| "number too large".to_string())?;
    Ok(Some(toml::Value::Integer(n)))
}

fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn list(text: &str) -> Parsed {
    let items = items(text).map(|s| toml::Value::String(s.to_owned()));
    Ok(Some(toml::Value::Array(items.collect())))
}

fn map(text: &str) -> Parsed {
    let mut table = toml::Table::new();
    for item in items(text) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not key=value"))?;
        table.insert(
            key.trim().to_owned(),
            toml::Value::String(value.trim().to_owned()),
        );
    }
    Ok(Some(toml::Value::Table(table)))
}

fn optional<T: Value>(text: &str) -> Parsed {
    if text.is_empty() {
        return Ok(None);
    }
    (T::KIND.parse)(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: Value>(text: &str) -> Parsed {
        (T::KIND.parse)(text)
    }

    #[test]
    fn every_kind_reads_its_text() {
        assert_eq!(
            parse::<String>("").unwrap(),
            Some(toml::Value::String(String::new())),
            "an empty listener means off, so a plain string keeps \"\""
        );
        assert_eq!(
            parse::<PathBuf>("/etc/tern/tls.crt").unwrap(),
            Some(toml::Value::String("/etc/tern/tls.crt".into()))
        );
        assert_eq!(
            parse::<bool>("false").unwrap(),
            Some(toml::Value::Boolean(false))
        );
        assert_eq!(
            parse::<bool>("True").unwrap(),
            Some(toml::Value::Boolean(true))
        );
        assert!(parse::<bool>("yes please").is_err());
        assert_eq!(
            parse::<u16>("2525").unwrap(),
            Some(toml::Value::Integer(2525))
        );
        assert!(parse::<u16>("70000").is_err());
        assert!(parse::<u64>("-1").is_err());
        assert!(parse::<u64>(&u64::MAX.to_string())
            .unwrap_err()
            .contains("too large"));
        assert_eq!(
            parse::<usize>(" 16 ").unwrap(),
            Some(toml::Value::Integer(16))
        );
        assert_eq!(
            parse::<Vec<String>>("a:1, b:2,,").unwrap(),
            Some(toml::Value::Array(vec!["a:1".into(), "b:2".into()]))
        );
        assert_eq!(
            parse::<Vec<String>>("").unwrap(),
            Some(toml::Value::Array(Vec::new()))
        );
        let map = parse::<BTreeMap<String, String>>("example.org=relay:2525, b=c")
            .unwrap()
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default();
        assert_eq!(map["example.org"].as_str(), Some("relay:2525"));
        assert_eq!(map["b"].as_str(), Some("c"));
        assert!(parse::<BTreeMap<String, String>>("example.org")
            .unwrap_err()
            .contains("key=value"));
        assert_eq!(parse::<Option<String>>("").unwrap(), None);
        assert_eq!(
            parse::<Option<u64>>("7").unwrap(),
            Some(toml::Value::Integer(7))
        );
        const { assert!(Option::<bool>::KIND.switch && !Option::<String>::KIND.switch) };
    }
}
