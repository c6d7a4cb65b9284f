//! The Backups service: a consistent copy of this node's database, for an operator to copy
//! off the node (restore: README, "Backing up and restoring the store").
//!
//! A RocksDB checkpoint holds every column family at one point (memtables are flushed and
//! the live write-ahead log is copied), so the Raft log, the vote and the state machine in it
//! agree with one another. Checkpoints are written only under the node's own data directory,
//! by a name of a few safe characters: the API never writes where a caller points it.

use tern_proto::store::v1 as pb;
use tern_proto::store::v1::backups_server::Backups;
use tonic::{Request, Response, Status};

use super::Api;

/// Backups service implementation.
pub struct BackupsApi(pub Api);

/// Whether `name` is a usable backup name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting
/// with a dot (no `..`, no hidden directories, no separators).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The backups in `dir` beyond the newest `keep`, oldest first (by modification time, then
/// name). Only directories with a valid backup name count: nothing else there is touched.
pub fn oldest_beyond(dir: &std::path::Path, keep: usize) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut backups: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| valid_name(&e.file_name().to_string_lossy()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    backups.into_iter().take(excess).map(|(_, p)| p).collect()
}

#[tonic::async_trait]
impl Backups for BackupsApi {
    async fn create(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let by = super::actor(&req);
        let name = req.into_inner().name;
        if !valid_name(&name) {
            return Err(Status::invalid_argument(
                "a backup name is 1 to 64 of A-Z a-z 0-9 . _ - (not starting with a dot)",
            ));
        }
        let node = self.0.node.clone();
        let dir = node.config.data_dir.join("backups");
        let path = dir.join(&name);
        let applied = tokio::task::spawn_blocking(move || -> Result<u64, Status> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Status::internal(format!("creating {}: {e}", dir.display())))?;
            if path.exists() {
                return Err(Status::already_exists(format!(
                    "{} exists; choose another name",
                    path.display()
                )));
            }
            // Shared with reads: a snapshot install (exclusive) cannot swap the state
            // machine out from under the checkpoint.
            let _shared = node.state.lock().read().unwrap_or_else(|p| p.into_inner());
            let applied = node
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0);
            rocksdb::checkpoint::Checkpoint::new(&node.db)
                .and_then(|c| c.create_checkpoint(&path))
                .map_err(|e| Status::internal(format!("checkpoint {}: {e}", path.display())))?;
            for old in oldest_beyond(&dir, node.config.max_backups as usize) {
                match std::fs::remove_dir_all(&old) {
                    Ok(()) => tracing::info!(path = %old.display(), "old backup removed"),
                    Err(e) => {
                        tracing::warn!(path = %old.display(), error = %e, "removing an old backup failed")
                    }
                }
            }
            Ok(applied)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let path = self.0.node.config.data_dir.join("backups").join(&name);
        tracing::info!(path = %path.display(), last_applied = applied, "backup written");
        self.0
            .note_by(
                by,
                "backup",
                format!("{} on node {}", path.display(), self.0.node.id),
            )
            .await;
        Ok(Response::new(pb::BackupResponse {
            path: path.display().to_string(),
            last_applied: applied,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{oldest_beyond, valid_name};

    #[test]
    fn names_cannot_leave_the_backup_directory() {
        for good in ["nightly-2026-11-30", "a", "b.1_x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            &"x".repeat(65),
            "é",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_the_oldest_backups_beyond_the_limit_are_chosen() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["b1", "b2", "b3"].iter().enumerate() {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1_000 + i as u64);
            std::fs::File::open(&p).unwrap().set_modified(t).unwrap();
        }
        // Not backups: a file, and a directory with a name the API never gives.
        std::fs::write(dir.path().join("notes"), b"x").unwrap();
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        assert_eq!(oldest_beyond(dir.path(), 2), vec![dir.path().join("b1")]);
        assert_eq!(
            oldest_beyond(dir.path(), 1),
            vec![dir.path().join("b1"), dir.path().join("b2")]
        );
        assert!(oldest_beyond(dir.path(), 3).is_empty());
        assert!(oldest_beyond(&dir.path().join("missing"), 1).is_empty());
    }
}
