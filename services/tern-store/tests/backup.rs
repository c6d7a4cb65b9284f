//! Backing up and restoring the store as the README describes: `ternctl cluster backup`
//! writes a consistent copy of one node's database; restoring puts that copy in place of
//! every node's `db/` and starts them. The restored cluster elects a leader, has exactly what
//! was committed before the backup, and takes new writes.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tern_testkit::{append, fetch, list_all, seed_users, StoreCluster};

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_working_cluster() -> anyhow::Result<()> {
    let mut cluster =
        StoreCluster::start(Path::new(env!("CARGO_BIN_EXE_tern-store")), 3, &[]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut msgs = cluster.messages(leader, "alice@example.test").await?;
    append(
        &mut msgs,
        "alice@example.test",
        "INBOX",
        b"Subject: before\r\n\r\nkept\r\n",
        "b1",
    )
    .await?;

    // The backup, through ternctl against a follower (any node can be backed up).
    let follower = (leader + 1) % 3;
    cluster
        .wait_applied(
            follower,
            cluster.status(leader).await?.last_applied,
            Duration::from_secs(10),
        )
        .await?;
    let out = cluster
        .ternctl()?
        .args([
            "--endpoint",
            &cluster.endpoint(follower),
            "cluster",
            "backup",
            "nightly-1",
            "--json",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let path = shown["path"].as_str().context("path")?.to_string();
    assert!(
        Path::new(&path).starts_with(cluster.data_dir(follower)),
        "{path}"
    );
    assert!(shown["last_applied"].as_u64() > Some(0), "{shown}");
    // The same name twice is refused, and a name that leaves the directory too.
    for bad in ["nightly-1", "../x"] {
        let again = cluster
            .ternctl()?
            .args([
                "--endpoint",
                &cluster.endpoint(follower),
                "cluster",
                "backup",
                bad,
            ])
            .output()?;
        assert!(!again.status.success(), "backup {bad} was accepted");
    }

    // Written after the backup: gone after the restore.
    append(
        &mut msgs,
        "alice@example.test",
        "INBOX",
        b"Subject: after\r\n\r\nlost\r\n",
        "a1",
    )
    .await?;
    let saved = tempfile::tempdir()?;
    copy_dir(Path::new(&path), &saved.path().join("db"))?;

    // Restore: every node stopped, its db/ and snapshots replaced by the copy, restarted.
    for i in 0..3 {
        cluster.stop(i);
    }
    for i in 0..3 {
        let dir = cluster.data_dir(i).to_path_buf();
        for sub in ["db", "snapshots", "backups"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
        copy_dir(&saved.path().join("db"), &dir.join("db"))?;
    }
    for i in 0..3 {
        cluster.spawn(i).await?;
    }
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let mut msgs = cluster.messages(leader, "alice@example.test").await?;
    let list = list_all(&mut msgs, "alice@example.test", "INBOX").await?;
    assert_eq!(
        list.messages.len(),
        1,
        "exactly what the backup held: {list:?}"
    );
    let body = fetch(
        &mut msgs,
        "alice@example.test",
        "INBOX",
        list.messages[0].uid,
    )
    .await?;
    assert!(
        body.starts_with(b"Subject: before"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // And it goes on: a new write commits on every node.
    let r = append(
        &mut msgs,
        "alice@example.test",
        "INBOX",
        b"Subject: new\r\n\r\nx\r\n",
        "n1",
    )
    .await?;
    assert!(r.uid > list.messages[0].uid);
    let applied = cluster.status(leader).await?.last_applied;
    for i in 0..3 {
        cluster
            .wait_applied(i, applied, Duration::from_secs(20))
            .await?;
    }
    Ok(())
}
