//! tern-access settings: a TOML file, overridden by `TERN_*` environment variables,
//! overridden by command-line flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// Effective settings of one access node.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Store nodes (`host:port`); any of them serves any request.
    pub store: Vec<String>,
    /// POP3 listener (STLS offered when a certificate is configured); empty = off.
    pub pop3_listen: String,
    /// POP3S listener (implicit TLS, RFC 8314); empty = off. Needs a certificate.
    pub pop3s_listen: String,
    /// IMAP listener (STARTTLS offered when a certificate is configured); empty = off.
    pub imap_listen: String,
    /// IMAPS listener (implicit TLS, RFC 8314); empty = off. Needs a certificate.
    pub imaps_listen: String,
    /// IMAP autologout time of an authenticated session; RFC 3501 §5.4 asks for at least
    /// 30 minutes, so lower values are raised to that.
    pub imap_idle_timeout_secs: u64,
    /// Largest message APPEND accepts, in octets (the literal is refused above it).
    pub max_message_bytes: u32,
    /// TLS certificate chain (PEM); reloaded when the file changes.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Development only: allow USER/PASS and AUTH on unencrypted connections. Refused
    /// unless every plain-text listener is bound to a loopback address.
    pub loopback_plaintext_auth: bool,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    pub metrics_listen: String,
    /// Written after binding: `pop3=…`, `pop3s=…`, `imap=…`, `imaps=…`, `metrics=…` lines.
    pub addr_file: Option<PathBuf>,
    /// Sessions in total on this node.
    pub max_connections: usize,
    /// Sessions from one client address.
    pub max_connections_per_ip: usize,
    /// Idle time before a session is closed (RFC 1939 asks for at least 10 minutes).
    pub idle_timeout_secs: u64,
    /// Pause after a wrong password, in milliseconds.
    pub auth_failure_delay_ms: u64,
    /// Wrong passwords before the connection is closed.
    pub max_auth_failures: u32,
    /// Failed commands before the connection is closed.
    pub max_errors: u32,
    /// How long the POP3 maildrop lock lives without renewal; a node that dies holding it
    /// frees it after this long.
    pub lock_ttl_secs: u64,
    /// How long a store request is retried across store nodes before the client is told to
    /// try again later.
    pub store_retry_secs: u64,
    /// "text" or "json".
    pub log_format: String,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            store: vec!["127.0.0.1:7101".into()],
            pop3_listen: "127.0.0.1:2110".into(),
            pop3s_listen: String::new(),
            imap_listen: "127.0.0.1:2143".into(),
            imaps_listen: String::new(),
            imap_idle_timeout_secs: 1800,
            max_message_bytes: 25 << 20,
            tls_cert: None,
            tls_key: None,
            loopback_plaintext_auth: false,
            metrics_listen: "127.0.0.1:0".into(),
            addr_file: None,
            max_connections: 10_000,
            max_connections_per_ip: 50,
            idle_timeout_secs: 600,
            auth_failure_delay_ms: 2_000,
            max_auth_failures: 3,
            max_errors: 20,
            lock_ttl_secs: 60,
            store_retry_secs: 15,
            log_format: "text".into(),
        }
    }
}

/// Command-line flags (each also read from its `TERN_*` variable).
#[derive(Debug, Parser)]
#[command(
    name = "tern-access",
    version,
    about = "Tern's IMAP and POP3 access node"
)]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "TERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Store nodes, comma-separated `host:port`.
    #[arg(long, env = "TERN_STORE", value_delimiter = ',')]
    pub store: Option<Vec<String>>,
    /// POP3 listen address ("" = off).
    #[arg(long, env = "TERN_POP3_LISTEN")]
    pub pop3_listen: Option<String>,
    /// POP3S listen address ("" = off).
    #[arg(long, env = "TERN_POP3S_LISTEN")]
    pub pop3s_listen: Option<String>,
    /// IMAP listen address ("" = off).
    #[arg(long, env = "TERN_IMAP_LISTEN")]
    pub imap_listen: Option<String>,
    /// IMAPS listen address ("" = off).
    #[arg(long, env = "TERN_IMAPS_LISTEN")]
    pub imaps_listen: Option<String>,
    /// IMAP autologout in seconds (at least 1800).
    #[arg(long, env = "TERN_IMAP_IDLE_TIMEOUT_SECS")]
    pub imap_idle_timeout_secs: Option<u64>,
    /// Largest APPEND, in octets.
    #[arg(long, env = "TERN_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u32>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "TERN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "TERN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain-text authentication on loopback-only listeners (development).
    #[arg(long, env = "TERN_LOOPBACK_PLAINTEXT_AUTH")]
    pub loopback_plaintext_auth: Option<bool>,
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
    /// Idle timeout in seconds.
    #[arg(long, env = "TERN_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Pause after a wrong password, in ms.
    #[arg(long, env = "TERN_AUTH_FAILURE_DELAY_MS")]
    pub auth_failure_delay_ms: Option<u64>,
    /// Failed commands before the connection is closed.
    #[arg(long, env = "TERN_MAX_ERRORS")]
    pub max_errors: Option<u32>,
    /// Maildrop lock lifetime in seconds.
    #[arg(long, env = "TERN_LOCK_TTL_SECS")]
    pub lock_ttl_secs: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT")]
    pub log_format: Option<String>,
}

impl Args {
    /// Loads the file (if any) and applies environment and flags over it.
    pub fn into_config(self) -> anyhow::Result<AccessConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => AccessConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            store,
            pop3_listen,
            pop3s_listen,
            imap_listen,
            imaps_listen,
            imap_idle_timeout_secs,
            max_message_bytes,
            loopback_plaintext_auth,
            metrics_listen,
            max_connections,
            max_connections_per_ip,
            idle_timeout_secs,
            auth_failure_delay_ms,
            max_errors,
            lock_ttl_secs,
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

impl AccessConfig {
    /// Refuses settings that would be unsafe or cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store.is_empty() {
            anyhow::bail!("no store nodes configured (--store)");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together");
        }
        if !self.pop3s_listen.is_empty() && self.tls_cert.is_none() {
            anyhow::bail!("the POP3S listener needs tls_cert and tls_key");
        }
        if !self.imaps_listen.is_empty() && self.tls_cert.is_none() {
            anyhow::bail!("the IMAPS listener needs tls_cert and tls_key");
        }
        if self.loopback_plaintext_auth {
            for (what, listen) in [
                ("pop3_listen", &self.pop3_listen),
                ("imap_listen", &self.imap_listen),
            ] {
                if listen.is_empty() {
                    continue;
                }
                let addr: std::net::SocketAddr = listen
                    .parse()
                    .with_context(|| format!("{what} {listen:?}"))?;
                if !addr.ip().is_loopback() {
                    anyhow::bail!(
                        "loopback_plaintext_auth is for development listeners on a loopback address, \
                         not {addr}"
                    );
                }
            }
        }
        if self.idle_timeout_secs < 600 {
            tracing::warn!(
                idle_timeout_secs = self.idle_timeout_secs,
                "idle timeout below RFC 1939's 10 minutes"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_auth_only_on_loopback() {
        let mut c = AccessConfig {
            loopback_plaintext_auth: true,
            ..Default::default()
        };
        assert!(c.validate().is_ok());
        c.pop3_listen = "0.0.0.0:110".into();
        assert!(c.validate().is_err());
        c.pop3_listen = "127.0.0.1:110".into();
        c.imap_listen = "0.0.0.0:143".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn pop3s_needs_a_certificate_and_flags_override_file() {
        let c = AccessConfig {
            pop3s_listen: "127.0.0.1:995".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        std::fs::write(
            &path,
            "store = [\"a:1\", \"b:2\"]\npop3_listen = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        let c = Args::parse_from([
            "tern-access",
            "--config",
            path.to_str().unwrap(),
            "--pop3-listen",
            "127.0.0.1:10",
        ])
        .into_config()
        .unwrap();
        assert_eq!(c.store, vec!["a:1", "b:2"]);
        assert_eq!(c.pop3_listen, "127.0.0.1:10");
    }
}
