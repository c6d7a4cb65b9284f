//! tern-smtp settings: a TOML file (`deploy/smtp.example.toml`), overridden by `TERN_*`
//! environment variables, overridden by command-line flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// Effective settings of one SMTP ingress node.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Store nodes (`host:port`), for the directory.
    pub store: Vec<String>,
    /// Queue nodes (`host:port`), for Enqueue.
    pub queue: Vec<String>,
    /// This server's name in the greeting, EHLO and Received fields.
    pub hostname: String,
    /// MX listener (port 25): mail for hosted domains, no AUTH; empty = off.
    pub mx_listen: String,
    /// Submission listener (port 587, RFC 6409): AUTH required, STARTTLS; empty = off.
    pub submission_listen: String,
    /// Submissions listener (port 465, implicit TLS, RFC 8314); empty = off.
    pub submissions_listen: String,
    /// TLS certificate chain (PEM); reloaded when the file changes.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Development only: allow AUTH on unencrypted submission connections. Refused unless
    /// the submission listener is bound to a loopback address.
    pub loopback_plaintext_auth: bool,
    /// Where `<postmaster>` (RCPT TO without a domain, RFC 5321 §4.5.1) is delivered.
    pub postmaster: String,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    pub metrics_listen: String,
    /// Written after binding: `mx=…`, `submission=…`, `submissions=…`, `metrics=…` lines.
    pub addr_file: Option<PathBuf>,
    /// Sessions in total on this node.
    pub max_connections: usize,
    /// Sessions from one client address.
    pub max_connections_per_ip: usize,
    /// Largest message in octets (advertised with SIZE).
    pub max_message_size: u64,
    /// Recipients per message before 452 (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Refused commands (5xx) before 421 and close.
    pub max_errors: u32,
    /// Wrong passwords before 421 and close.
    pub max_auth_failures: u32,
    /// Pause before answering a wrong password, in milliseconds.
    pub auth_failure_delay_ms: u64,
    /// Wait for the next command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    pub command_timeout_secs: u64,
    /// Wait for the next piece of DATA/BDAT content.
    pub data_timeout_secs: u64,
    /// How long a store request is retried across store nodes before the client is told
    /// to try again later.
    pub store_retry_secs: u64,
    /// "text" or "json".
    pub log_format: String,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            store: vec!["127.0.0.1:7101".into()],
            queue: vec!["127.0.0.1:7201".into()],
            hostname: "localhost".into(),
            mx_listen: "127.0.0.1:2525".into(),
            submission_listen: String::new(),
            submissions_listen: String::new(),
            tls_cert: None,
            tls_key: None,
            loopback_plaintext_auth: false,
            postmaster: String::new(),
            metrics_listen: "127.0.0.1:0".into(),
            addr_file: None,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            max_message_size: 25 << 20,
            max_recipients: 100,
            max_errors: 20,
            max_auth_failures: 3,
            auth_failure_delay_ms: 2_000,
            command_timeout_secs: 300,
            data_timeout_secs: 300,
            store_retry_secs: 10,
            log_format: "text".into(),
        }
    }
}

/// Command-line flags (each also read from its `TERN_*` variable).
#[derive(Debug, Parser)]
#[command(name = "tern-smtp", version, about = "Tern's SMTP ingress")]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "TERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Store nodes, comma-separated `host:port`.
    #[arg(long, env = "TERN_STORE", value_delimiter = ',')]
    pub store: Option<Vec<String>>,
    /// Queue nodes, comma-separated `host:port`.
    #[arg(long, env = "TERN_QUEUE", value_delimiter = ',')]
    pub queue: Option<Vec<String>>,
    /// Server name.
    #[arg(long, env = "TERN_HOSTNAME")]
    pub hostname: Option<String>,
    /// MX listen address ("" = off).
    #[arg(long, env = "TERN_MX_LISTEN")]
    pub mx_listen: Option<String>,
    /// Submission listen address ("" = off).
    #[arg(long, env = "TERN_SUBMISSION_LISTEN")]
    pub submission_listen: Option<String>,
    /// Submissions (implicit TLS) listen address ("" = off).
    #[arg(long, env = "TERN_SUBMISSIONS_LISTEN")]
    pub submissions_listen: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "TERN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "TERN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Allow AUTH without TLS on a loopback-only submission listener (development).
    #[arg(long, env = "TERN_LOOPBACK_PLAINTEXT_AUTH")]
    pub loopback_plaintext_auth: Option<bool>,
    /// Address `<postmaster>` is delivered to.
    #[arg(long, env = "TERN_POSTMASTER")]
    pub postmaster: Option<String>,
    /// Metrics/health HTTP listen address.
    #[arg(long, env = "TERN_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// File to write bound addresses to.
    #[arg(long, env = "TERN_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
    /// Sessions in total.
    #[arg(long, env = "TERN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Sessions per client address.
    #[arg(long, env = "TERN_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Largest message in octets.
    #[arg(long, env = "TERN_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<u64>,
    /// Recipients per message.
    #[arg(long, env = "TERN_MAX_RECIPIENTS")]
    pub max_recipients: Option<usize>,
    /// Refused commands before the connection is closed.
    #[arg(long, env = "TERN_MAX_ERRORS")]
    pub max_errors: Option<u32>,
    /// Wrong passwords before the connection is closed.
    #[arg(long, env = "TERN_MAX_AUTH_FAILURES")]
    pub max_auth_failures: Option<u32>,
    /// Pause after a wrong password, in ms.
    #[arg(long, env = "TERN_AUTH_FAILURE_DELAY_MS")]
    pub auth_failure_delay_ms: Option<u64>,
    /// Command timeout in seconds.
    #[arg(long, env = "TERN_COMMAND_TIMEOUT_SECS")]
    pub command_timeout_secs: Option<u64>,
    /// Data timeout in seconds.
    #[arg(long, env = "TERN_DATA_TIMEOUT_SECS")]
    pub data_timeout_secs: Option<u64>,
    /// Store retry window in seconds.
    #[arg(long, env = "TERN_STORE_RETRY_SECS")]
    pub store_retry_secs: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT")]
    pub log_format: Option<String>,
}

impl Args {
    /// Loads the file (if any) and applies environment and flags over it.
    pub fn into_config(self) -> anyhow::Result<SmtpConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => SmtpConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            store,
            queue,
            hostname,
            mx_listen,
            submission_listen,
            submissions_listen,
            loopback_plaintext_auth,
            postmaster,
            metrics_listen,
            max_connections,
            max_connections_per_ip,
            max_message_size,
            max_recipients,
            max_errors,
            max_auth_failures,
            auth_failure_delay_ms,
            command_timeout_secs,
            data_timeout_secs,
            store_retry_secs,
            log_format
        );
        if self.tls_cert.is_some() {
            c.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            c.tls_key = self.tls_key;
        }
        if self.addr_file.is_some() {
            c.addr_file = self.addr_file;
        }
        c.validate()?;
        Ok(c)
    }
}

impl SmtpConfig {
    /// Refuses settings that would be unsafe or cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store.is_empty() {
            anyhow::bail!("no store nodes configured (--store)");
        }
        if self.queue.is_empty() {
            anyhow::bail!("no queue nodes configured (--queue)");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together");
        }
        if !self.submissions_listen.is_empty() && self.tls_cert.is_none() {
            anyhow::bail!("the submissions listener needs tls_cert and tls_key");
        }
        // The queue takes messages up to 64 MiB; the Received, Message-ID and Date fields this
        // server adds need room too.
        if self.max_message_size > 60 << 20 {
            anyhow::bail!("max_message_size is at most 62914560 (60 MiB)");
        }
        if self.max_recipients < 100 {
            anyhow::bail!("max_recipients must be at least 100 (RFC 5321 §4.5.3.1.8)");
        }
        if self.loopback_plaintext_auth && !self.submission_listen.is_empty() {
            let addr: std::net::SocketAddr = self
                .submission_listen
                .parse()
                .with_context(|| format!("submission_listen {:?}", self.submission_listen))?;
            if !addr.ip().is_loopback() {
                anyhow::bail!(
                    "loopback_plaintext_auth is for development listeners on a loopback address, \
                     not {addr}"
                );
            }
        }
        Ok(())
    }

    /// The postmaster address: configured, or `postmaster@` the server's domain.
    pub fn postmaster_address(&self) -> String {
        if !self.postmaster.is_empty() {
            return self.postmaster.clone();
        }
        // mx.example.net → example.net; a name of two labels is the domain itself.
        let domain = match self.hostname.split_once('.') {
            Some((_, rest)) if rest.contains('.') => rest,
            _ => &self.hostname,
        };
        format!("postmaster@{domain}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_auth_only_on_loopback_and_limits() {
        let mut c = SmtpConfig {
            loopback_plaintext_auth: true,
            submission_listen: "127.0.0.1:2587".into(),
            ..Default::default()
        };
        assert!(c.validate().is_ok());
        c.submission_listen = "0.0.0.0:587".into();
        assert!(c.validate().is_err());
        let c = SmtpConfig {
            max_recipients: 50,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = SmtpConfig {
            submissions_listen: "127.0.0.1:465".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp.toml");
        std::fs::write(
            &path,
            "hostname = \"mx.example.test\"\nmax_recipients = 200\n",
        )
        .unwrap();
        let c = Args::parse_from([
            "tern-smtp",
            "--config",
            path.to_str().unwrap(),
            "--max-recipients",
            "300",
        ])
        .into_config()
        .unwrap();
        assert_eq!(c.hostname, "mx.example.test");
        assert_eq!(c.max_recipients, 300);
        assert_eq!(c.postmaster_address(), "postmaster@example.test");
    }
}
