//! The layers: defaults < file < `TERN_*` environment < flags.
//!
//! [`parse`] is the whole mechanism over given arguments and variables (the unit tests call
//! it); [`load`] feeds it the process's own and is what a service's `main` calls.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{help, Error, Key, Origin, Settings, CONFIG_ENV, ENV_PREFIX};

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed<T> {
    /// Run with these effective settings.
    Run(T),
    /// Print this text (`--help`, `--version`, `--print-config`) and exit successfully.
    Print(String),
}

/// Loads the settings from the process's arguments, environment and settings file, checked.
///
/// `--help`, `--version` and `--print-config` print their text and exit the process with
/// status 0, as a command-line tool does; every other outcome is returned.
pub fn load<T: Settings>() -> Result<T, Error> {
    let args = std::env::args_os()
        .map(|a| {
            a.into_string()
                .map_err(|a| Error::NotUtf8(format!("argument {a:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Only our prefix matters; a non-UTF-8 variable of someone else's is no concern of ours.
    let env = std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        name.starts_with(ENV_PREFIX).then_some((name, value))
    });
    let env = env
        .map(|(name, value)| match value.into_string() {
            Ok(value) => Ok((name, value)),
            Err(_) => Err(Error::NotUtf8(format!("environment variable {name}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match parse::<T>(args, env)? {
        Parsed::Run(settings) => Ok(settings),
        Parsed::Print(text) => {
            print!("{text}");
            // exit() skips destructors, so nothing else would flush what is still buffered.
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
    }
}

/// Merges the layers: `args` as the process got them (program name first), `env` the
/// environment (variables without the `TERN_` prefix are ignored).
pub fn parse<T: Settings>(
    args: impl IntoIterator<Item = String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Parsed<T>, Error> {
    let env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    let command = Command::parse::<T>(args.into_iter().skip(1))?;
    match command.print {
        Some(Print::Help) => return Ok(Parsed::Print(help::text::<T>())),
        Some(Print::Version) => {
            return Ok(Parsed::Print(format!("{} {}\n", T::PROGRAM, T::VERSION)))
        }
        Some(Print::Config) | None => {}
    }
    refuse_near_misses::<T>(&env)?;

    let file = command
        .config
        .or_else(|| env.get(CONFIG_ENV).cloned())
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let mut merged = match &file {
        Some(path) => read_file::<T>(path)?,
        None => toml::Table::new(),
    };
    let mut from_env = Layer::default();
    for key in T::KEYS {
        let name = key.env_name();
        if let Some(text) = env.get(&name) {
            from_env.add(key, text, Origin::Env(name))?;
        }
    }
    from_env.apply(&mut merged);
    let mut from_flags = Layer::default();
    for (key, text, flag) in command.values {
        from_flags.add(key, &text, Origin::Flag(flag))?;
    }
    from_flags.apply(&mut merged);

    let mut settings: T = toml::Value::Table(merged)
        .try_into()
        .map_err(Error::Merge)?;
    settings.check().map_err(Error::Invalid)?;
    match command.print {
        Some(Print::Config) => Ok(Parsed::Print(help::effective(&settings)?)),
        _ => Ok(Parsed::Run(settings)),
    }
}

/// The file as a table, after checking it against the struct: that check gives the error with
/// the line and the key (an unknown key, a wrong type) that merging could not.
fn read_file<T: Settings>(path: &Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad_file = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    toml::from_str::<T>(&text).map_err(bad_file)?;
    toml::from_str::<toml::Table>(&text).map_err(bad_file)
}

/// An unknown `TERN_*` variable within two edits of one of ours is a typo that would
/// otherwise be silently ignored; anything further away may belong to another program.
fn refuse_near_misses<T: Settings>(env: &BTreeMap<String, String>) -> Result<(), Error> {
    let known: Vec<String> = T::KEYS
        .iter()
        .map(Key::env_name)
        .chain([CONFIG_ENV.to_owned()])
        .collect();
    for name in env.keys().filter(|name| !known.contains(name)) {
        if let Some(suggestion) = closest(name, known.iter().map(String::as_str)) {
            return Err(Error::UnknownEnv {
                name: name.clone(),
                program: T::PROGRAM,
                suggestion: suggestion.to_owned(),
            });
        }
    }
    Ok(())
}

/// The candidate within two edits of `name`, the closest first.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The values one layer (the environment, or the flags) sets: `None` unsets a key.
#[derive(Default)]
struct Layer {
    values: BTreeMap<&'static str, Option<toml::Value>>,
}

impl Layer {
    /// Reads `text` for `key`. A flag given twice adds to a list or a map (as clap's
    /// repeated list flags did); any other value given twice keeps the last.
    fn add(&mut self, key: &'static Key, text: &str, origin: Origin) -> Result<(), Error> {
        let value = (key.kind.parse)(text).map_err(|reason| Error::BadValue {
            origin,
            key: key.name,
            value: text.to_owned(),
            reason,
        })?;
        let slot = self.values.entry(key.name).or_insert(None);
        *slot = match (slot.take(), value) {
            (Some(toml::Value::Array(mut old)), Some(toml::Value::Array(new))) => {
                old.extend(new);
                Some(toml::Value::Array(old))
            }
            (Some(toml::Value::Table(mut old)), Some(toml::Value::Table(new))) => {
                old.extend(new);
                Some(toml::Value::Table(old))
            }
            (_, value) => value,
        };
        Ok(())
    }

    /// Puts this layer over `merged`: a map is merged key by key into the map below (a
    /// transport given as a flag adds to the file's transports), everything else replaces.
    fn apply(self, merged: &mut toml::Table) {
        for (name, value) in self.values {
            let value = match (merged.remove(name), value) {
                (_, None) => continue,
                (Some(toml::Value::Table(mut below)), Some(toml::Value::Table(over))) => {
                    below.extend(over);
                    toml::Value::Table(below)
                }
                (_, Some(value)) => value,
            };
            merged.insert(name.to_owned(), value);
        }
    }
}

/// What `--help`, `--version` and `--print-config` ask for; when several are given, the
/// later variant wins (help over version over the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Print {
    Config,
    Version,
    Help,
}

/// The command line, read against the keys.
struct Command {
    config: Option<String>,
    /// Key, text, and the flag as spelled, in order.
    values: Vec<(&'static Key, String, String)>,
    print: Option<Print>,
}

impl Command {
    fn parse<T: Settings>(args: impl Iterator<Item = String>) -> Result<Self, Error> {
        let mut command = Command {
            config: None,
            values: Vec::new(),
            print: None,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let print = match arg.as_str() {
                "-h" | "--help" => Some(Print::Help),
                "-V" | "--version" => Some(Print::Version),
                "--print-config" => Some(Print::Config),
                _ => None,
            };
            if print.is_some() {
                command.print = command.print.max(print);
                continue;
            }
            let Some(spelled) = arg.strip_prefix("--") else {
                return Err(Error::Unexpected(arg));
            };
            let (name, inline) = match spelled.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (spelled, None),
            };
            let flag = format!("--{name}");
            if name == "config" {
                let value = inline.or_else(|| args.next());
                command.config = Some(value.ok_or(Error::MissingValue { flag })?);
                continue;
            }
            let Some(key) = T::KEYS.iter().find(|k| k.flag_name() == name) else {
                let flags: Vec<String> = T::KEYS.iter().map(Key::flag_name).collect();
                let suggestion =
                    closest(name, flags.iter().map(String::as_str)).map(|s| format!("--{s}"));
                return Err(Error::UnknownFlag { flag, suggestion });
            };
            let value = match inline {
                Some(value) => value,
                // `--workers` alone is `--workers true`; a following true/false is its value.
                None if key.kind.switch => args
                    .next_if(|next| next == "true" || next == "false")
                    .unwrap_or_else(|| "true".to_owned()),
                None => args
                    .next()
                    .ok_or(Error::MissingValue { flag: flag.clone() })?,
            };
            command.values.push((key, value, flag));
        }
        Ok(command)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    crate::settings! {
        program: "tern-demo",
        about: "The mechanism's test service",
        check: Demo::check,
    /// Settings of every kind.
    pub struct Demo {
        /// A listener; "" = off.
        #[default = "127.0.0.1:1".into()]
        pub listen: String,
        /// Run the workers.
        #[default = true]
        pub workers: bool,
        /// How many.
        ///
        /// A second paragraph.
        #[default = 1]
        pub count: u64,
        /// A port.
        #[default = 25]
        pub port: u16,
        /// Nodes, `host:port`.
        #[default = vec!["127.0.0.1:7101".into()]]
        pub store: Vec<String>,
        /// Next hops per domain.
        pub transports: BTreeMap<String, String>,
        /// An optional host.
        pub relay_host: Option<String>,
        /// An optional file.
        pub cert: Option<PathBuf>,
        /// The node id, under its historical variable.
        #[env = "TERN_NODE_ID"]
        #[default = 1]
        pub id: u64,
    }
    }

    impl Demo {
        fn check(&mut self) -> Result<(), String> {
            if self.count > 100 {
                return Err("count is at most 100".into());
            }
            Ok(())
        }
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Demo, Error> {
        let args = ["tern-demo"].iter().chain(args).map(|s| s.to_string());
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match parse::<Demo>(args, env)? {
            Parsed::Run(demo) => Ok(demo),
            Parsed::Print(text) => panic!("expected settings, got {text}"),
        }
    }

    fn print(args: &[&str]) -> String {
        let args = ["tern-demo"].iter().chain(args).map(|s| s.to_string());
        match parse::<Demo>(args, []) {
            Ok(Parsed::Print(text)) => text,
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The message of the error's source (the cause a service's report prints below it).
    fn cause(err: &Error) -> String {
        std::error::Error::source(err)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, text).expect("writing the settings file");
        let path = path.display().to_string();
        (dir, path)
    }

    #[test]
    fn precedence_is_default_file_env_flag() {
        let d = run(&[], &[]).unwrap();
        assert_eq!((d.listen.as_str(), d.count, d.port), ("127.0.0.1:1", 1, 25));
        let (_dir, path) = file("listen = \"file:1\"\ncount = 2\nport = 2\n");
        let d = run(&["--config", &path], &[]).unwrap();
        assert_eq!((d.listen.as_str(), d.count, d.port), ("file:1", 2, 2));
        let env = [
            ("TERN_CONFIG", path.as_str()),
            ("TERN_COUNT", "3"),
            ("TERN_PORT", "3"),
        ];
        let d = run(&[], &env).unwrap();
        assert_eq!((d.listen.as_str(), d.count, d.port), ("file:1", 3, 3));
        let d = run(&["--port", "4", "--listen=flag:1"], &env).unwrap();
        assert_eq!((d.listen.as_str(), d.count, d.port), ("flag:1", 3, 4));
        // --config wins over TERN_CONFIG too.
        let (_dir2, other) = file("count = 9\n");
        let d = run(&["--config", &other], &env).unwrap();
        assert_eq!((d.listen.as_str(), d.count), ("127.0.0.1:1", 3));
    }

    #[test]
    fn every_kind_from_environment_and_flags() {
        let (_dir, path) = file(
            "store = [\"f:1\"]\nrelay_host = \"relay:25\"\n\
             [transports]\n\"example.org\" = \"relay:2525\"\n",
        );
        let env = [
            ("TERN_STORE", "e:1, e:2"),
            ("TERN_WORKERS", "false"),
            ("TERN_RELAY_HOST", ""),
            ("TERN_CERT", "/etc/tern/tls.crt"),
            ("TERN_NODE_ID", "3"),
            ("TERN_LISTEN", ""),
        ];
        let d = run(
            &["--config", &path, "--transports", "b.test=h:1,c.test=h:2"],
            &env,
        )
        .unwrap();
        assert_eq!(d.store, ["e:1", "e:2"], "a list replaces the file's list");
        assert!(!d.workers);
        assert_eq!(d.relay_host, None, "an empty value unsets an optional key");
        assert_eq!(d.cert, Some(PathBuf::from("/etc/tern/tls.crt")));
        assert_eq!(d.id, 3, "the field's own variable");
        assert_eq!(d.listen, "", "an empty listener is off, not unset");
        assert_eq!(d.transports.len(), 3, "a map adds to the file's map");
        assert_eq!(d.transports["example.org"], "relay:2525");
        assert_eq!(d.transports["c.test"], "h:2");

        // A bare switch is true; a following true/false is its value.
        let d = run(&["--workers", "--count", "5"], &[("TERN_WORKERS", "false")]).unwrap();
        assert!(d.workers);
        assert_eq!(d.count, 5);
        let d = run(&["--workers", "false"], &[]).unwrap();
        assert!(!d.workers);
        // Repeated list and map flags add up; a repeated scalar keeps the last.
        let d = run(
            &[
                "--store", "a:1", "--store", "b:1", "--port", "1", "--port", "2",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(d.store, ["a:1", "b:1"]);
        assert_eq!(d.port, 2);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_them() {
        let (_dir, path) = file("max_conections = 10\n");
        let err = run(&["--config", &path], &[]).unwrap_err();
        assert!(err.to_string().contains("demo.toml"), "{err}");
        assert!(
            cause(&err).contains("unknown field `max_conections`"),
            "{err:?}"
        );

        let err = run(&["--relay-hots", "x"], &[]).unwrap_err().to_string();
        assert!(
            err.contains("--relay-hots") && err.contains("--relay-host"),
            "{err}"
        );

        let err = run(&[], &[("TERN_COUTN", "3")]).unwrap_err().to_string();
        assert!(
            err.contains("TERN_COUTN") && err.contains("TERN_COUNT"),
            "{err}"
        );

        // Other programs' variables share the prefix and are left alone.
        let d = run(
            &[],
            &[("TERN_ENDPOINT", "http://x"), ("TERN_TEST_LOG", "debug")],
        );
        assert!(d.is_ok(), "{d:?}");

        assert!(matches!(run(&["stray"], &[]), Err(Error::Unexpected(_))));
        assert!(matches!(
            run(&["--count"], &[]),
            Err(Error::MissingValue { .. })
        ));
    }

    #[test]
    fn a_bad_value_names_the_key_and_its_source() {
        let err = run(&[], &[("TERN_COUNT", "lots")]).unwrap_err().to_string();
        assert!(
            err.starts_with("environment variable TERN_COUNT: \"lots\" is not a valid count"),
            "{err}"
        );
        let err = run(&["--port", "70000"], &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("flag --port: \"70000\" is not a valid port"),
            "{err}"
        );
        let err = run(&["--transports", "example.org"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("flag --transports") && err.contains("key=value"),
            "{err}"
        );
        let (_dir, path) = file("count = \"many\"\n");
        let err = run(&["--config", &path], &[]).unwrap_err();
        assert!(err.to_string().contains("demo.toml"), "{err}");
        assert!(cause(&err).contains("count = \"many\""), "{err:?}");
        let err = run(&["--config", "/nonexistent/demo.toml"], &[]).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{err}");
        // The service's check runs on the merged result.
        let err = run(&["--count", "101"], &[]).unwrap_err();
        assert_eq!(err.to_string(), "invalid settings");
        assert_eq!(cause(&err), "count is at most 100");
    }

    #[test]
    fn help_documents_every_key() {
        let help = print(&["--help"]);
        for key in Demo::KEYS {
            assert!(help.contains(&format!("--{} <", key.flag_name())), "{help}");
            assert!(
                help.contains(&format!("[env: {}]", key.env_name())),
                "{help}"
            );
            for line in key.doc_lines().filter(|l| !l.is_empty()) {
                assert!(help.contains(line), "{line:?} missing from {help}");
            }
        }
        assert!(help.contains("--store <A,B,...>  [env: TERN_STORE] [default: 127.0.0.1:7101]"));
        assert!(help.contains("[env: TERN_NODE_ID] [default: 1]"));
        assert!(help.contains("--workers <true|false>"));
        assert!(help.starts_with("tern-demo "));
        assert!(print(&["--version"]).starts_with("tern-demo "));
    }

    #[test]
    fn print_config_loads_back_to_the_same_settings() {
        let text = print(&[
            "--print-config",
            "--store",
            "a:1,b:2",
            "--transports",
            "x.test=h:1",
        ]);
        assert!(
            text.contains("# Nodes, `host:port`.\nstore = [\"a:1\", \"b:2\"]\n"),
            "{text}"
        );
        assert!(text.contains("# relay_host is not set"), "{text}");
        let (_dir, path) = file(&text);
        let d = run(&["--config", &path], &[]).unwrap();
        assert_eq!(d.store, ["a:1", "b:2"]);
        assert_eq!(d.transports["x.test"], "h:1");
        assert_eq!(d.relay_host, None);
    }
}
