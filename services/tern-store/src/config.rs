//! tern-store settings: a TOML file, overridden by `TERN_*` environment variables, overridden
//! by command-line flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// Effective settings of one node.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// This node's Raft id (1, 2, 3, ...).
    pub id: u64,
    /// gRPC listen address (API and Raft). Port 0 picks a free port.
    pub listen: String,
    /// Address other nodes use to reach this one; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// Data directory (RocksDB and snapshots).
    pub data_dir: PathBuf,
    /// Initial cluster `ID=HOST:PORT,...`: the lowest id bootstraps it when uninitialized.
    pub initial_members: Option<String>,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    pub metrics_listen: String,
    /// Written after binding: `grpc=HOST:PORT` and `metrics=HOST:PORT` lines.
    pub addr_file: Option<PathBuf>,
    /// Largest message body accepted, in octets.
    pub max_message_size: u64,
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_logs: u64,
    /// How long a write may wait for a Raft majority before failing UNAVAILABLE.
    pub write_timeout_ms: u64,
    /// How long a linearizable read may wait for the leader's read index.
    pub read_timeout_ms: u64,
    /// Raft heartbeat interval.
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound (upper bound is twice this).
    pub election_timeout_ms: u64,
    /// "text" or "json".
    pub log_format: String,
    /// Days a message's recorded timeline (`ternctl trace`) is kept; 0 keeps it forever.
    pub trace_retention_days: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            id: 1,
            listen: "127.0.0.1:7101".into(),
            advertise: None,
            data_dir: PathBuf::from(".tern/store-1"),
            initial_members: None,
            metrics_listen: "127.0.0.1:0".into(),
            addr_file: None,
            max_message_size: 25 << 20,
            snapshot_logs: 10_000,
            write_timeout_ms: 10_000,
            read_timeout_ms: 5_000,
            heartbeat_ms: 250,
            election_timeout_ms: 1000,
            log_format: "text".into(),
            trace_retention_days: 14,
        }
    }
}

/// Command-line flags (each also read from its `TERN_*` variable).
#[derive(Debug, Parser)]
#[command(
    name = "tern-store",
    version,
    about = "Tern's Raft-replicated RocksDB store"
)]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "TERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Raft node id.
    #[arg(long, env = "TERN_NODE_ID")]
    pub id: Option<u64>,
    /// gRPC listen address.
    #[arg(long, env = "TERN_LISTEN")]
    pub listen: Option<String>,
    /// Address advertised to peers.
    #[arg(long, env = "TERN_ADVERTISE")]
    pub advertise: Option<String>,
    /// Data directory.
    #[arg(long, env = "TERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial members `ID=HOST:PORT,...`.
    #[arg(long, env = "TERN_INITIAL_MEMBERS")]
    pub initial_members: Option<String>,
    /// Metrics/health HTTP listen address.
    #[arg(long, env = "TERN_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// File to write bound addresses to.
    #[arg(long, env = "TERN_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
    /// Largest message in octets.
    #[arg(long, env = "TERN_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<u64>,
    /// Entries between snapshots.
    #[arg(long, env = "TERN_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// Write timeout in ms.
    #[arg(long, env = "TERN_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Read timeout in ms.
    #[arg(long, env = "TERN_READ_TIMEOUT_MS")]
    pub read_timeout_ms: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "TERN_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Days to keep message timelines (0 = forever).
    #[arg(long, env = "TERN_TRACE_RETENTION_DAYS")]
    pub trace_retention_days: Option<u64>,
}

impl Args {
    /// Loads the file (if any) and applies environment and flags over it.
    pub fn into_config(self) -> anyhow::Result<StoreConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => StoreConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            id,
            listen,
            data_dir,
            metrics_listen,
            max_message_size,
            snapshot_logs,
            write_timeout_ms,
            read_timeout_ms,
            log_format,
            trace_retention_days
        );
        if self.advertise.is_some() {
            c.advertise = self.advertise;
        }
        if self.initial_members.is_some() {
            c.initial_members = self.initial_members;
        }
        if self.addr_file.is_some() {
            c.addr_file = self.addr_file;
        }
        if c.id == 0 {
            anyhow::bail!("node id must be at least 1");
        }
        Ok(c)
    }
}

/// Parses `ID=HOST:PORT,...`.
pub fn parse_members(spec: &str) -> anyhow::Result<Vec<(u64, String)>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|part| {
            let (id, addr) = part
                .trim()
                .split_once('=')
                .with_context(|| format!("member {part:?} is not ID=HOST:PORT"))?;
            let id: u64 = id.parse().with_context(|| format!("member id {id:?}"))?;
            Ok((id, addr.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse() {
        assert_eq!(
            parse_members("1=a:1,2=b:2").unwrap(),
            vec![(1, "a:1".to_string()), (2, "b:2".to_string())]
        );
        assert!(parse_members("x=a:1").is_err());
        assert!(parse_members("1a:1").is_err());
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.toml");
        std::fs::write(&path, "id = 3\nlisten = \"127.0.0.1:9\"\n").unwrap();
        let args = Args::parse_from([
            "tern-store",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:10",
        ]);
        let c = args.into_config().unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.listen, "127.0.0.1:10");
    }
}
