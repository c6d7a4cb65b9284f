//! tern-queue settings: a TOML file, overridden by `TERN_*` environment variables,
//! overridden by command-line flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// Effective settings of one queue node (API and workers).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Store nodes (`host:port`).
    pub store: Vec<String>,
    /// gRPC listen address of the Enqueue API ("" = workers only).
    pub listen: String,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    pub metrics_listen: String,
    /// Written after binding: `grpc=…` and `metrics=…` lines.
    pub addr_file: Option<PathBuf>,
    /// Run delivery workers in this process.
    pub workers: bool,
    /// This worker's name in leases (defaults to host name + port).
    pub worker_id: Option<String>,
    /// Entries delivered at once by this process.
    pub concurrency: usize,
    /// How long a lease lasts without renewal: a dead worker's entries are taken over after
    /// this.
    pub lease_secs: u64,
    /// How often an idle worker asks the store for due entries, in milliseconds.
    pub poll_ms: u64,
    /// First retry after this many seconds (Postfix: 300).
    pub first_retry_secs: u64,
    /// Longest pause between attempts (Postfix: 4000).
    pub max_retry_secs: u64,
    /// Give up and bounce after this long in the queue (Postfix: 5 days).
    pub max_lifetime_secs: u64,
    /// Name in EHLO, Received and DSNs.
    pub hostname: String,
    /// DNS servers for MX lookups (`ip:port`); empty = the system's.
    pub dns_servers: Vec<String>,
    /// Port of remote SMTP servers (25; tests use others).
    pub remote_port: u16,
    /// Send all remote mail through this host (`host:port`) instead of MX lookups.
    pub relay_host: Option<String>,
    /// Per-domain next hop (`domain = "host:port"`), overriding MX and the relay host.
    pub transports: BTreeMap<String, String>,
    /// Domains whose mail must go over verified TLS (else it is deferred).
    pub tls_required_domains: Vec<String>,
    /// Extra trusted CA certificates (PEM) for verified TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Concurrent connections to one destination host.
    pub max_connections_per_destination: usize,
    /// Seconds an idle connection is kept for reuse.
    pub connection_idle_secs: u64,
    /// "text" or "json".
    pub log_format: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            store: vec!["127.0.0.1:7101".into()],
            listen: "127.0.0.1:7201".into(),
            metrics_listen: "127.0.0.1:0".into(),
            addr_file: None,
            workers: true,
            worker_id: None,
            concurrency: 16,
            lease_secs: 60,
            poll_ms: 500,
            first_retry_secs: 300,
            max_retry_secs: 4000,
            max_lifetime_secs: 5 * 24 * 3600,
            hostname: "localhost".into(),
            dns_servers: Vec::new(),
            remote_port: 25,
            relay_host: None,
            transports: BTreeMap::new(),
            tls_required_domains: Vec::new(),
            tls_ca_file: None,
            max_connections_per_destination: 4,
            connection_idle_secs: 30,
            log_format: "text".into(),
        }
    }
}

/// Command-line flags (each also read from its `TERN_*` variable).
#[derive(Debug, Parser)]
#[command(
    name = "tern-queue",
    version,
    about = "Tern's queue and delivery service"
)]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "TERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Store nodes, comma-separated `host:port`.
    #[arg(long, env = "TERN_STORE", value_delimiter = ',')]
    pub store: Option<Vec<String>>,
    /// gRPC listen address ("" = no API).
    #[arg(long, env = "TERN_LISTEN")]
    pub listen: Option<String>,
    /// Metrics/health HTTP listen address.
    #[arg(long, env = "TERN_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// File to write bound addresses to.
    #[arg(long, env = "TERN_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
    /// Run delivery workers (true/false).
    #[arg(long, env = "TERN_WORKERS")]
    pub workers: Option<bool>,
    /// Worker name in leases.
    #[arg(long, env = "TERN_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Entries delivered at once.
    #[arg(long, env = "TERN_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Lease lifetime in seconds.
    #[arg(long, env = "TERN_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// Idle poll interval in milliseconds.
    #[arg(long, env = "TERN_POLL_MS")]
    pub poll_ms: Option<u64>,
    /// First retry delay in seconds.
    #[arg(long, env = "TERN_FIRST_RETRY_SECS")]
    pub first_retry_secs: Option<u64>,
    /// Longest retry delay in seconds.
    #[arg(long, env = "TERN_MAX_RETRY_SECS")]
    pub max_retry_secs: Option<u64>,
    /// Queue lifetime in seconds.
    #[arg(long, env = "TERN_MAX_LIFETIME_SECS")]
    pub max_lifetime_secs: Option<u64>,
    /// Host name for EHLO, Received and DSNs.
    #[arg(long, env = "TERN_HOSTNAME")]
    pub hostname: Option<String>,
    /// DNS servers, comma-separated `ip:port`.
    #[arg(long, env = "TERN_DNS_SERVERS", value_delimiter = ',')]
    pub dns_servers: Option<Vec<String>>,
    /// Remote SMTP port.
    #[arg(long, env = "TERN_REMOTE_PORT")]
    pub remote_port: Option<u16>,
    /// Relay host `host:port` for all remote mail.
    #[arg(long, env = "TERN_RELAY_HOST")]
    pub relay_host: Option<String>,
    /// Per-domain transports, comma-separated `domain=host:port`.
    #[arg(long, env = "TERN_TRANSPORTS", value_delimiter = ',')]
    pub transports: Option<Vec<String>>,
    /// Domains that require verified TLS, comma-separated.
    #[arg(long, env = "TERN_TLS_REQUIRED_DOMAINS", value_delimiter = ',')]
    pub tls_required_domains: Option<Vec<String>>,
    /// Extra trusted CA certificates (PEM).
    #[arg(long, env = "TERN_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Concurrent connections per destination.
    #[arg(long, env = "TERN_MAX_CONNECTIONS_PER_DESTINATION")]
    pub max_connections_per_destination: Option<usize>,
    /// Log format: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT")]
    pub log_format: Option<String>,
}

impl Args {
    /// Loads the file (if any) and applies environment and flags over it.
    pub fn into_config(self) -> anyhow::Result<QueueConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => QueueConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            store,
            listen,
            metrics_listen,
            workers,
            concurrency,
            lease_secs,
            poll_ms,
            first_retry_secs,
            max_retry_secs,
            max_lifetime_secs,
            hostname,
            dns_servers,
            remote_port,
            tls_required_domains,
            max_connections_per_destination,
            log_format
        );
        macro_rules! set_opt {
            ($($f:ident),*) => { $( if self.$f.is_some() { c.$f = self.$f; } )* };
        }
        set_opt!(addr_file, worker_id, relay_host, tls_ca_file);
        if let Some(list) = self.transports {
            for item in list.iter().filter(|s| !s.trim().is_empty()) {
                let (domain, hop) = item
                    .split_once('=')
                    .with_context(|| format!("transport {item:?} is not domain=host:port"))?;
                c.transports
                    .insert(domain.trim().to_ascii_lowercase(), hop.trim().to_string());
            }
        }
        c.validate()?;
        Ok(c)
    }
}

impl QueueConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store.is_empty() {
            anyhow::bail!("no store nodes configured (--store)");
        }
        if self.concurrency == 0 || self.max_connections_per_destination == 0 {
            anyhow::bail!("concurrency and max_connections_per_destination must be at least 1");
        }
        if self.first_retry_secs == 0 || self.max_retry_secs < self.first_retry_secs {
            anyhow::bail!("retry delays must satisfy 0 < first_retry_secs <= max_retry_secs");
        }
        if self.lease_secs < 2 {
            anyhow::bail!("lease_secs must be at least 2");
        }
        for ns in &self.dns_servers {
            ns.parse::<std::net::SocketAddr>()
                .with_context(|| format!("DNS server {ns:?} is not ip:port"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.toml");
        std::fs::write(
            &path,
            "store = [\"a:1\"]\nfirst_retry_secs = 60\n[transports]\n\"example.org\" = \"relay:2525\"\n",
        )
        .unwrap();
        let c = Args::parse_from([
            "tern-queue",
            "--config",
            path.to_str().unwrap(),
            "--transports",
            "Example.NET=10.0.0.1:25",
            "--first-retry-secs",
            "5",
        ])
        .into_config()
        .unwrap();
        assert_eq!(c.first_retry_secs, 5);
        assert_eq!(c.transports["example.org"], "relay:2525");
        assert_eq!(c.transports["example.net"], "10.0.0.1:25");
    }

    #[test]
    fn nonsense_is_refused() {
        let c = QueueConfig {
            first_retry_secs: 10,
            max_retry_secs: 5,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = QueueConfig {
            dns_servers: vec!["not-an-address".into()],
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
