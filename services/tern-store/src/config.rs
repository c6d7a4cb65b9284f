//! tern-store settings: declared once here; the file < `TERN_*` environment < flags layering,
//! the flags and `--help` come from [`tern_config`].

use std::path::PathBuf;

use anyhow::Context;

tern_config::settings! {
    program: "tern-store",
    about: "Tern's Raft-replicated RocksDB store",
    check: StoreConfig::validate,
    groups: [cluster_tls],
/// Effective settings of one node.
pub struct StoreConfig {
    /// This node's Raft id (1, 2, 3, ...).
    #[env = "TERN_NODE_ID"]
    #[default = 1]
    pub id: u64,
    /// gRPC listen address (API and Raft). Port 0 picks a free port.
    #[default = "127.0.0.1:7101".into()]
    pub listen: String,
    /// Address other nodes use to reach this one; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// Data directory (RocksDB and snapshots).
    #[default = PathBuf::from(".tern/store-1")]
    pub data_dir: PathBuf,
    /// Initial cluster `ID=HOST:PORT,...`: the lowest id bootstraps it when uninitialized.
    pub initial_members: Option<String>,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[default = "127.0.0.1:0".into()]
    pub metrics_listen: String,
    /// Written after binding: `grpc=HOST:PORT` and `metrics=HOST:PORT` lines.
    pub addr_file: Option<PathBuf>,
    /// Largest message body accepted, in octets.
    #[default = 25 << 20]
    pub max_message_size: u64,
    /// Build a snapshot (and compact the log) after this many entries.
    #[default = 10_000]
    pub snapshot_logs: u64,
    /// How long a write may wait for a Raft majority before failing UNAVAILABLE.
    #[default = 10_000]
    pub write_timeout_ms: u64,
    /// How long a linearizable read may wait for the leader's read index.
    #[default = 5_000]
    pub read_timeout_ms: u64,
    /// Raft heartbeat interval.
    #[default = 250]
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound.
    #[default = 1000]
    pub election_timeout_ms: u64,
    /// Raft election timeout upper bound; one and a half times `election_timeout_ms` when
    /// unset. openraft also makes it the leader lease (a follower refuses to vote while it
    /// heard from a leader within it) and doubles it as the pause of a candidate refused for
    /// a shorter log, so it bounds how fast a cluster elects after its leader dies: with
    /// twice the lower bound, five nodes whose leader was killed every few seconds took up
    /// to 14 s to serve again (README, "Proof under faults").
    pub election_timeout_max_ms: Option<u64>,
    /// "text" or "json".
    #[default = "text".into()]
    pub log_format: String,
    /// Days a message's recorded timeline (`ternctl trace`) is kept; 0 keeps it forever.
    #[default = 14]
    pub trace_retention_days: u64,
    /// How long delivery ids, enqueue ids and change-feed entries are kept: at least this
    /// long and at most twice as long (the leader begins a retention epoch every period and
    /// prunes what is two epochs old). A retried delivery or enqueue is recognized within
    /// it; an IMAP session that falls further behind its mailbox's feed is closed. 1 s (for
    /// tests) to 365 days.
    #[default = 3 * 24 * 3600]
    pub record_retention_secs: u64,
    /// Free space (MiB) the data directory's filesystem must keep: below it, writes that add
    /// data (deliveries, enqueues, new users, mailboxes, copies) are refused with
    /// UNAVAILABLE, which clients turn into "try again later", while removals, expunges and
    /// queue progress still go through so that space can be freed. 0 never refuses.
    #[default = 256]
    pub min_free_mb: u64,
    /// Backups kept under `data_dir/backups`: writing one more removes the oldest.
    #[default = 7]
    pub max_backups: u64,
    /// Lifetime of a session token (what an access node shows to read one account's mail);
    /// access nodes renew it at half-life while the session lasts. 2 s to 12 h.
    #[default = 900]
    pub session_ttl_secs: u64,
    /// How long a successful password check is remembered on this node (a keyed digest,
    /// never the password; a changed password misses at once), so that a client logging in
    /// again costs no argon2id run; 0 turns it off. Failed checks are never remembered.
    #[default = 300]
    pub credential_cache_secs: u64,
    /// Successful checks remembered at most (about 100 bytes each; at most
    /// [`MAX_CREDENTIAL_CACHE_ENTRIES`]).
    #[default = 100_000]
    pub credential_cache_entries: u64,
    /// Threads that run argon2id password checks and hashing (their own pool, never the
    /// blocking pool the Raft log uses); each holds `argon2_memory_kib` while it works.
    #[default = 2]
    pub password_workers: u64,
    /// Password checks that may wait for a thread; more fail at once with "try again later".
    #[default = 64]
    pub password_queue: u64,
    /// Longest a password check may wait for a thread before it fails with "try again later".
    #[default = 2_000]
    pub password_max_wait_ms: u64,
    /// argon2id memory cost of new hashes, KiB (OWASP's guidance: 19456, with 2 passes).
    #[default = 19_456]
    pub argon2_memory_kib: u64,
    /// argon2id passes (time cost) of new hashes.
    #[default = 2]
    pub argon2_passes: u64,
    /// Failed logins for one account from one client network (/24 of IPv4, /64 of IPv6),
    /// counted on each store node, before checks for it from there are refused unrun ("try
    /// again later"); the count drains at this many per window. Per network, so that
    /// nobody can lock an owner out from elsewhere.
    #[default = 10]
    pub login_failures_per_account: u64,
    /// Failed logins per client network (/24 of IPv4, /64 of IPv6) before checks from it
    /// are refused unrun.
    #[default = 50]
    pub login_failures_per_network: u64,
    /// The window in which the failure counts above drain.
    #[default = 60]
    pub login_failure_window_secs: u64,
    /// Deliver an accepted message to its recipients that are local users in the same
    /// Raft command that accepts it (one replicated write instead of four). Off by default
    /// because a node of a version without it cannot apply that command: turn it on once
    /// every store node runs this version or later (new clusters: from the start; the chart
    /// does for new installs).
    #[default = false]
    pub deliver_on_accept: bool,
}
}

/// The largest `max_message_size` allowed: one message rides in one log entry, and every
/// Raft message between nodes is bounded by it ([`crate::network::MAX_RAFT_MESSAGE`]).
pub const MAX_MESSAGE_LIMIT: u64 = 64 << 20;

impl StoreConfig {
    /// The election timeout's upper bound in milliseconds.
    pub fn election_timeout_max(&self) -> u64 {
        self.election_timeout_max_ms
            .unwrap_or(self.election_timeout_ms.saturating_mul(3) / 2)
    }

    /// The argon2id pool the settings describe.
    pub fn password_pool(&self) -> crate::password::PoolConfig {
        crate::password::PoolConfig {
            workers: self.password_workers as usize,
            queue: self.password_queue as usize,
            max_wait: std::time::Duration::from_millis(self.password_max_wait_ms),
            memory_kib: self.argon2_memory_kib as u32,
            passes: self.argon2_passes as u32,
        }
    }

    /// Failed-login counting as the settings describe it.
    pub fn login_throttle(&self) -> crate::login_throttle::LoginThrottle {
        use crate::login_throttle::{Limit, LoginThrottle};
        let window = std::time::Duration::from_secs(self.login_failure_window_secs);
        let limit = |n: u64| Limit {
            failures: u32::try_from(n).unwrap_or(u32::MAX),
            window,
        };
        // One client network may have a sixteenth of the pool (threads and queue) running
        // or waiting: a flood from a few networks leaves room for everyone else.
        let share = (self.password_workers + self.password_queue) / 16;
        LoginThrottle::new(
            limit(self.login_failures_per_account),
            limit(self.login_failures_per_network),
            u32::try_from(share).unwrap_or(u32::MAX),
        )
    }

    /// Refuses settings that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.id == 0 {
            anyhow::bail!("node id must be at least 1");
        }
        let max_ttl = crate::session::MAX_TTL_MS as u64 / 1000;
        if !(2..=max_ttl).contains(&self.session_ttl_secs) {
            anyhow::bail!(
                "session_ttl_secs must be from 2 to {max_ttl}, not {}",
                self.session_ttl_secs
            );
        }
        if !(1..=64).contains(&self.password_workers)
            || !(1..=100_000).contains(&self.password_queue)
        {
            anyhow::bail!("password_workers must be 1 to 64 and password_queue 1 to 100000");
        }
        if !(8..=4 * 1024 * 1024).contains(&self.argon2_memory_kib)
            || !(1..=100).contains(&self.argon2_passes)
        {
            anyhow::bail!("argon2_memory_kib must be 8 to 4194304 and argon2_passes 1 to 100");
        }
        if self.max_message_size > MAX_MESSAGE_LIMIT {
            anyhow::bail!(
                "max_message_size is at most {MAX_MESSAGE_LIMIT} (one Raft payload carries one message)"
            );
        }
        if !(1..=365 * 24 * 3600).contains(&self.record_retention_secs) {
            anyhow::bail!("record_retention_secs must be from 1 to 31536000");
        }
        if self.credential_cache_entries > MAX_CREDENTIAL_CACHE_ENTRIES
            || self.credential_cache_secs > 24 * 3600
        {
            anyhow::bail!(
                "credential_cache_entries is at most {MAX_CREDENTIAL_CACHE_ENTRIES} and credential_cache_secs at most 86400"
            );
        }
        if self.election_timeout_max() <= self.election_timeout_ms
            || self.heartbeat_ms == 0
            || self.heartbeat_ms >= self.election_timeout_ms
        {
            anyhow::bail!(
                "election_timeout_max_ms must exceed election_timeout_ms, which must exceed heartbeat_ms (at least 1)"
            );
        }
        if self.max_backups == 0 {
            anyhow::bail!("max_backups must be at least 1");
        }
        if self.login_failures_per_account == 0
            || self.login_failures_per_network == 0
            || self.login_failure_window_secs == 0
        {
            anyhow::bail!("the login failure limits and their window must be at least 1");
        }
        Ok(())
    }
}

/// The most credential cache entries a node may be told to keep (about 1 GB of memory).
pub const MAX_CREDENTIAL_CACHE_ENTRIES: u64 = 10_000_000;

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
    fn the_node_id_keeps_its_variable() {
        let args = ["tern-store", "--listen", "127.0.0.1:10"].map(String::from);
        let env = [("TERN_NODE_ID".to_string(), "3".to_string())];
        let parsed = tern_config::parse::<StoreConfig>(args, env);
        let Ok(tern_config::Parsed::Run(c)) = parsed else {
            panic!("settings expected: {parsed:?}");
        };
        assert_eq!((c.id, c.listen.as_str()), (3, "127.0.0.1:10"));
        let zero =
            tern_config::parse::<StoreConfig>(["tern-store", "--id", "0"].map(String::from), []);
        assert!(
            matches!(zero, Err(tern_config::Error::Invalid(_))),
            "{zero:?}"
        );
    }
}
