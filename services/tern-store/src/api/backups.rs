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
    use super::valid_name;

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
}
