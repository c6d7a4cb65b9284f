//! tern-queue settings: declared once here; the file < `TERN_*` environment < flags layering,
//! the flags and `--help` come from [`tern_config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;

tern_config::settings! {
    program: "tern-queue",
    about: "Tern's queue and delivery service",
    check: QueueConfig::normalize,
    groups: [cluster_tls],
/// Effective settings of one queue node (API and workers).
pub struct QueueConfig {
    /// Store nodes (`host:port`).
    #[default = vec!["127.0.0.1:7101".into()]]
    pub store: Vec<String>,
    /// gRPC listen address of the Enqueue API ("" = workers only).
    #[default = "127.0.0.1:7201".into()]
    pub listen: String,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[default = "127.0.0.1:0".into()]
    pub metrics_listen: String,
    /// Written after binding: `grpc=…` and `metrics=…` lines.
    pub addr_file: Option<PathBuf>,
    /// Run delivery workers in this process.
    #[default = true]
    pub workers: bool,
    /// This worker's name in leases (defaults to host name + port).
    pub worker_id: Option<String>,
    /// Entries delivered at once by this process.
    #[default = 16]
    pub concurrency: usize,
    /// How long a lease lasts without renewal: a dead worker's entries are taken over after
    /// this.
    #[default = 60]
    pub lease_secs: u64,
    /// On SIGTERM, how long delivery attempts in flight may take to finish and record
    /// their outcome before the process exits (the chart's terminationGracePeriodSeconds
    /// is this plus a margin). An attempt cut after that is retried once its lease expires.
    #[default = 30]
    pub drain_secs: u64,
    /// How often an idle worker asks the store for due entries, in milliseconds.
    #[default = 500]
    pub poll_ms: u64,
    /// First retry after this many seconds (Postfix: 300).
    #[default = 300]
    pub first_retry_secs: u64,
    /// Longest pause between attempts (Postfix: 4000).
    #[default = 4000]
    pub max_retry_secs: u64,
    /// Give up and bounce after this long in the queue (Postfix: 5 days).
    #[default = 5 * 24 * 3600]
    pub max_lifetime_secs: u64,
    /// Name in EHLO, Received and DSNs.
    #[default = "localhost".into()]
    pub hostname: String,
    /// DNS servers for MX lookups (`ip:port`); empty = the system's.
    pub dns_servers: Vec<String>,
    /// Port of remote SMTP servers (25; tests use others).
    #[default = 25]
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
    #[default = 4]
    pub max_connections_per_destination: usize,
    /// Seconds an idle connection is kept for reuse.
    #[default = 30]
    pub connection_idle_secs: u64,
    /// Known recipients (users, aliases, lists) kept for routing in this node's directory
    /// cache, which the store's directory feed keeps current; unknown ones are always asked
    /// of the store. 0 turns the cache off.
    #[default = 100_000]
    pub directory_cache_entries: usize,
    /// Longest a cached recipient is used (the bound on staleness while the feed's store
    /// node is cut off).
    #[default = 60]
    pub directory_cache_ttl_secs: u64,
    /// Octets (MiB) of messages this node holds in memory at once while handing them to the
    /// store: an Enqueue that would go over waits (and stops reading its stream, so HTTP/2
    /// flow control holds the sender back) for up to `enqueue_wait_ms`, then fails
    /// UNAVAILABLE ("try again later"). A message larger than all of it waits for all of it.
    /// At least 1.
    #[default = 256]
    pub enqueue_memory_mb: u64,
    /// How long an Enqueue waits for room in `enqueue_memory_mb`.
    #[default = 10_000]
    pub enqueue_wait_ms: u64,
    /// "text" or "json".
    #[default = "text".into()]
    pub log_format: String,
}
}

impl QueueConfig {
    /// Lower-cases the transports' domains (the worker looks a recipient's domain up in lower
    /// case, and domain names are case-insensitive), then validates.
    fn normalize(&mut self) -> anyhow::Result<()> {
        self.transports = std::mem::take(&mut self.transports)
            .into_iter()
            .map(|(domain, hop)| (domain.to_ascii_lowercase(), hop))
            .collect();
        self.validate()
    }

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
        if self.enqueue_memory_mb == 0 || self.enqueue_memory_mb > 1 << 20 {
            anyhow::bail!("enqueue_memory_mb must be from 1 to 1048576");
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
        let args = [
            "tern-queue",
            "--config",
            path.to_str().unwrap(),
            "--transports",
            "Example.NET=10.0.0.1:25",
            "--first-retry-secs",
            "5",
        ];
        let env = [("TERN_TRANSPORTS".to_string(), "b.test=h:1".to_string())];
        let parsed = tern_config::parse::<QueueConfig>(args.map(String::from), env);
        let Ok(tern_config::Parsed::Run(c)) = parsed else {
            panic!("settings expected: {parsed:?}");
        };
        // Each layer's map adds to the one below, and the domains end up in lower case.
        assert_eq!(c.transports["b.test"], "h:1");
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
