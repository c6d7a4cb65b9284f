//! Free space on the data directory's filesystem, and the refusal of writes that would add
//! data when it runs low.
//!
//! RocksDB on a full disk fails its writes and flushes and stops in a background-error state
//! (a Raft log append that fails takes the node down). Like Postfix's `queue_minfree` and
//! etcd's space quota, the node keeps a margin instead: below `min_free_mb`, writes that add
//! data are refused as UNAVAILABLE (clients say "try again later", nothing is lost, a sender
//! retries), while removals, expunges and queue progress still go through so that space can
//! be freed. When space returns, writes are accepted again with no restart.
//!
//! Each node checks its own disk for the writes it receives, and the leader for every batch
//! forwarded to it. A follower below the margin refuses AppendEntries that carry entries
//! (heartbeats still pass, so it starts no election): it falls behind while the leader
//! keeps sending, and catches up once space returns, as a slow follower does.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::command::Command;
use crate::error::AppError;
use crate::node::Node;

/// How often the free space is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The last sampled free space and the margin to keep.
#[derive(Debug)]
pub struct FreeSpace {
    /// Bytes available to the store's user; `u64::MAX` until the first sample.
    free: AtomicU64,
    /// The margin in bytes; 0 never refuses.
    min: u64,
}

impl FreeSpace {
    /// Keeps `min_bytes` free.
    pub fn new(min_bytes: u64) -> Self {
        Self {
            free: AtomicU64::new(u64::MAX),
            min: min_bytes,
        }
    }

    /// Records a sample; returns whether the low/normal state changed.
    pub fn record(&self, free: u64) -> bool {
        let was = self.free.swap(free, Ordering::Relaxed);
        (was < self.min) != (free < self.min)
    }

    /// The error for a write that adds data while space is low, naming the node.
    pub fn refusal(&self, node: u64) -> Option<AppError> {
        let free = self.free.load(Ordering::Relaxed);
        (free < self.min).then(|| {
            AppError::unavailable(format!(
                "store node {node} is low on disk space: {} MiB free, below min_free_mb {}; \
                 writes that add data are refused until space is freed",
                free >> 20,
                self.min >> 20
            ))
        })
    }

    /// [`Self::refusal`] if any of `commands` adds data.
    pub fn check<'c>(
        &self,
        node: u64,
        mut commands: impl Iterator<Item = &'c Command>,
    ) -> Result<(), AppError> {
        match self.refusal(node) {
            Some(e) if commands.any(Command::adds_data) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Samples the data directory's free space until the process ends, logging each change
/// between low and normal.
pub async fn watch_free_space(node: Arc<Node>) {
    loop {
        // The database directory is what fills (it may be a mount of its own).
        let dir = node.config.data_dir.join("db");
        match tokio::task::spawn_blocking(move || free_bytes(&dir)).await {
            Ok(Ok(free)) => {
                if node.free_space.record(free) {
                    if node.free_space.refusal(node.id).is_some() {
                        tracing::error!(
                            free_mib = free >> 20,
                            min_free_mb = node.config.min_free_mb,
                            "disk space low: refusing writes that add data, and log entries from the leader"
                        );
                    } else {
                        tracing::warn!(
                            free_mib = free >> 20,
                            "disk space recovered: accepting writes again"
                        );
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the data directory's free space"),
            Err(_) => {}
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver() -> Command {
        Command::Deliver {
            targets: vec![],
            body: b"x".to_vec(),
            internal_date: 0,
        }
    }

    #[test]
    fn below_the_margin_only_writes_that_add_data_are_refused() {
        let space = FreeSpace::new(100 << 20);
        assert!(
            space.check(1, [deliver()].iter()).is_ok(),
            "unknown counts as room"
        );
        assert!(space.record(10 << 20), "entering the low state is a change");
        let refused = space.check(1, [deliver()].iter()).unwrap_err();
        assert_eq!(refused.kind, crate::error::ErrorKind::Unavailable);
        assert!(
            refused.message.contains("10 MiB free"),
            "{}",
            refused.message
        );
        let expunge = Command::Expunge {
            account: "a".into(),
            mailbox: "INBOX".into(),
            uids: None,
            force: false,
        };
        assert!(space.check(1, [expunge.clone()].iter()).is_ok());
        assert!(space.check(1, [expunge, deliver()].iter()).is_err());
        assert!(!space.record(20 << 20), "still low");
        assert!(space.record(200 << 20), "leaving the low state is a change");
        assert!(space.check(1, [deliver()].iter()).is_ok());
        assert!(FreeSpace::new(0).check(1, [deliver()].iter()).is_ok());
    }

    #[test]
    fn free_bytes_reads_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }
}
