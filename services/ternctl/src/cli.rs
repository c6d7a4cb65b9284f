//! Command-line grammar.
//!
//! Kept apart from the code that talks to the store so the grammar can be checked in unit tests
//! (`Cli::command().debug_assert()`) without a network. `--endpoint` and `--json` are `global`
//! because the architecture contract promises they work before or after the subcommand; the
//! certificate flags are global for the same reason. Their values are only collected here:
//! [`crate::profile`] decides what they mean together with a profile file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operator CLI for Tern: domains, users, aliases, mailing lists, the delivery queue and the
/// store cluster.
///
/// Talks gRPC over mutual TLS to any tern-store node, with the admin certificate; followers
/// forward writes to the Raft leader. The certificate comes from --ca/--cert/--key, from the
/// profile --profile names (a TOML file with endpoint, ca, cert and key; relative paths are
/// relative to the file), or, with neither, from .tern/dev/ternctl.toml in the current
/// directory, which `cargo xtask up` writes. Exit status: 0 on success, 1 when the store
/// refused or could not be reached, 2 for usage and configuration errors.
#[derive(Debug, Parser)]
#[command(name = "ternctl", version, propagate_version = true)]
pub struct Cli {
    /// tern-store gRPC endpoint (any node): HOST:PORT, http://HOST:PORT or https://HOST:PORT,
    /// all mutual TLS. Default: the profile's endpoint, else http://127.0.0.1:7101.
    #[arg(long, global = true, env = "TERN_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// Print machine-readable JSON on stdout instead of aligned columns.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The client certificate. Flags and variables win over the profile, setting by setting.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// The cluster CA certificate (PEM) the store's certificate must be signed by.
    #[arg(long, global = true, env = "TERNCTL_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Our client certificate (PEM), naming spiffe://TRUST-DOMAIN/tern/admin.
    #[arg(long, global = true, env = "TERNCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// The private key of --cert (PEM).
    #[arg(long, global = true, env = "TERNCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// A profile: TOML with endpoint, ca, cert and key. Default: .tern/dev/ternctl.toml in
    /// the current directory, when it exists and none of --ca/--cert/--key is given.
    #[arg(long, global = true, env = "TERNCTL_PROFILE", value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hosted domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Mailbox accounts.
    #[command(subcommand)]
    User(UserCmd),
    /// Aliases: an address that forwards to one or more targets.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Mailing lists: an address that fans out to its members.
    #[command(subcommand)]
    List(ListCmd),
    /// Store cluster membership and Raft state.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The delivery queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Show the recorded timeline of one message: every hop from SMTP acceptance through the
    /// queue and the store commits to its retrieval over IMAP or POP3.
    ///
    /// The store records the timeline with the changes themselves, so it works without any
    /// tracing backend, also after delivery has completed; it names the trace id to look up
    /// in one (the same id the Received header and the logs carry).
    Trace {
        /// A queue id, a trace id (32 hex digits) or a Message-ID (with or without <>).
        id: String,
    },
    /// Show the audit log of operators' changes, newest first: when, who (the caller's
    /// certificate identity and address), what, and to which domain, user or node. The
    /// store keeps the newest 100,000 records.
    Audit {
        /// Records to show (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only records older than this sequence number (to page back).
        #[arg(long, default_value_t = 0)]
        before: u64,
    },
    /// Make a development cluster PKI in DIR, once: a CA (`ca.crt`, `ca.key`) and one
    /// certificate and key per role (`store.crt`, `store.key`, `admin.crt`, ...), each
    /// naming `spiffe://TRUST-DOMAIN/tern/ROLE`. Files that exist are kept. For development
    /// and tests (`cargo xtask up` runs it); production certificates come from your CA.
    DevPki {
        /// Where the files go.
        dir: std::path::PathBuf,
        /// The trust domain the certificates name.
        #[arg(long, default_value = "tern.test")]
        trust_domain: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Host a new domain.
    Add {
        /// Domain name, e.g. example.test.
        name: String,
    },
    /// List hosted domains.
    #[command(visible_alias = "ls")]
    List,
    /// Stop hosting a domain.
    #[command(visible_alias = "rm")]
    Remove {
        /// Domain name.
        name: String,
    },
}

/// `--password-stdin` is a required flag rather than an implicit behaviour so that the command
/// line says where the secret comes from, and so that passwords never appear in argv (visible
/// in `ps` and shell history).
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input (required).
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an account.
    Add {
        /// Email address of the account, e.g. alice@example.test.
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Quota in bytes; K, M, G and T suffixes (powers of 1024) are accepted. 0 = unlimited.
        #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "0")]
        quota: u64,
    },
    /// List accounts, optionally of one domain.
    #[command(visible_alias = "ls")]
    List {
        /// Only accounts of this domain.
        domain: Option<String>,
    },
    /// Delete an account and its mail.
    #[command(visible_alias = "rm")]
    Remove {
        /// Email address of the account.
        address: String,
    },
    /// Set a new password.
    Passwd {
        /// Email address of the account.
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Create an alias FROM that forwards to every TO.
    Add {
        /// The alias address.
        from: String,
        /// Target addresses (local or remote).
        #[arg(required = true, num_args = 1.., value_name = "TO")]
        to: Vec<String>,
    },
    /// List aliases, optionally of one domain.
    #[command(visible_alias = "ls")]
    List {
        /// Only aliases of this domain.
        domain: Option<String>,
    },
    /// Remove an alias.
    #[command(visible_alias = "rm")]
    Remove {
        /// The alias address.
        from: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ListCmd {
    /// Add members to a mailing list (the list is created on its first member).
    Add {
        /// The list address.
        list: String,
        /// Member addresses.
        #[arg(required = true, num_args = 1.., value_name = "MEMBER")]
        members: Vec<String>,
    },
    /// Remove members from a list, or the whole list when no member is named.
    #[command(visible_alias = "rm")]
    Remove {
        /// The list address.
        list: String,
        /// Members to remove; none = remove the list itself.
        #[arg(value_name = "MEMBER")]
        members: Vec<String>,
    },
    /// Show every mailing list and its members, optionally of one domain.
    #[command(visible_aliases = ["ls", "show-all"])]
    List {
        /// Only lists of this domain.
        domain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Raft state of the answering node and every member.
    Status,
    /// Add a store node: it joins as a learner, catches up, then becomes a voter.
    AddNode {
        /// Raft node id (unique, nonzero).
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// The node's gRPC address, HOST:PORT.
        addr: String,
        /// Keep the node a non-voting learner.
        #[arg(long)]
        learner_only: bool,
    },
    /// Remove a store node from the cluster.
    RemoveNode {
        /// Raft node id.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
    },
    /// Write a consistent copy of the answering node's database to DATA_DIR/backups/NAME on
    /// that node (copy it off from there; see the README on restoring).
    Backup {
        /// Backup name: 1 to 64 of A-Z a-z 0-9 . _ -
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages.
    #[command(visible_alias = "ls")]
    List {
        /// At most this many entries.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
    },
    /// Show one entry: recipients with state, attempts and last reply, and the event timeline.
    Show {
        /// Queue entry id.
        id: String,
    },
    /// Make an entry due now (and drop its lease).
    Retry {
        /// Queue entry id.
        id: String,
    },
    /// Delete an entry without delivering it further.
    #[command(visible_alias = "rm")]
    Delete {
        /// Queue entry id.
        id: String,
    },
}

/// Parses a byte count with an optional binary suffix: `1048576`, `512K`, `100M`, `2G`, `1T`
/// (`KiB`/`KB`/`B` spellings too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("{s:?} is not a size (e.g. 1048576, 512M, 2G)"));
    }
    let n: u64 = num.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => return Err(format!("unknown size suffix {other:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from([
            "ternctl",
            "cluster",
            "status",
            "--json",
            "--endpoint",
            "http://10.0.0.1:7100",
        ])
        .expect("parses");
        assert!(cli.json);
        assert_eq!(cli.endpoint.as_deref(), Some("http://10.0.0.1:7100"));
        assert!(matches!(cli.command, Command::Cluster(ClusterCmd::Status)));
    }

    #[test]
    fn certificate_flags_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "ternctl",
            "--ca",
            "tls/ca.crt",
            "domain",
            "list",
            "--cert",
            "tls/admin.crt",
            "--key",
            "tls/admin.key",
            "--profile",
            "prod.toml",
        ])
        .expect("parses");
        assert_eq!(cli.tls.ca, Some(PathBuf::from("tls/ca.crt")));
        assert_eq!(cli.tls.cert, Some(PathBuf::from("tls/admin.crt")));
        assert_eq!(cli.tls.key, Some(PathBuf::from("tls/admin.key")));
        assert_eq!(cli.tls.profile, Some(PathBuf::from("prod.toml")));
        assert!(matches!(cli.command, Command::Domain(DomainCmd::List)));
    }

    #[test]
    fn global_flags_before_subcommand() {
        let cli = Cli::try_parse_from(["ternctl", "--json", "domain", "list"]).expect("parses");
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Domain(DomainCmd::List)));
    }

    #[test]
    fn user_add_requires_password_stdin() {
        let err = Cli::try_parse_from(["ternctl", "user", "add", "a@example.test"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let cli = Cli::try_parse_from([
            "ternctl",
            "user",
            "add",
            "a@example.test",
            "--password-stdin",
            "--quota",
            "2G",
        ])
        .expect("parses");
        match cli.command {
            Command::User(UserCmd::Add { quota, .. }) => assert_eq!(quota, 2 << 30),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn list_remove_without_members_means_whole_list() {
        let cli =
            Cli::try_parse_from(["ternctl", "list", "remove", "team@example.test"]).expect("ok");
        match cli.command {
            Command::List(ListCmd::Remove { members, .. }) => assert!(members.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn show_all_is_an_alias_of_list_list() {
        let cli = Cli::try_parse_from(["ternctl", "list", "show-all", "example.test"]).expect("ok");
        assert!(matches!(
            cli.command,
            Command::List(ListCmd::List { domain: Some(_) })
        ));
    }

    #[test]
    fn alias_add_needs_a_target() {
        assert!(Cli::try_parse_from(["ternctl", "alias", "add", "a@example.test"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000T").is_err());
    }
}
