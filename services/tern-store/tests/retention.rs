//! Nothing grows forever (issue 16, item 8), on real store processes: delivery ids are
//! forgotten after the retention period, and a data directory on a small filesystem that
//! fills refuses writes that add data with a clear error, then accepts them again once space
//! is freed, without a restart; a follower whose disk fills falls behind instead of
//! stopping, and catches up once space returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tern_proto::store::v1 as pb;
use tern_testkit::{append, seed_users, StoreCluster};

const ALICE: &str = "alice@example.test";

/// A delivery id is recognized while it is kept and forgotten after two retention periods:
/// the same id delivers a second copy once the leader has pruned it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_ids_are_forgotten_after_the_retention() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(
        Path::new(env!("CARGO_BIN_EXE_tern-store")),
        1,
        &["--record-retention-secs", "1"],
    )
    .await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut msgs = cluster.messages(leader, ALICE).await?;
    let body = b"Subject: once\r\n\r\nx\r\n";
    let first = append(&mut msgs, ALICE, "INBOX", body, "retained-1").await?;
    // At once, the id is known: the retry is the same message.
    let again = append(&mut msgs, ALICE, "INBOX", body, "retained-1").await?;
    assert_eq!(
        again.uid, first.uid,
        "a retry inside the retention is recognized"
    );
    // Two epochs later (1 s each, a tick of a quarter of that) it has been pruned.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let later = append(&mut msgs, ALICE, "INBOX", body, "retained-1").await?;
        if later.uid != first.uid {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the delivery id was still known after 30 s with a 1 s retention"
        );
    }
    Ok(())
}

/// Runs tern-store with its `db/` directory on a tmpfs of `size` made in a mount namespace
/// of its own (so the test needs no privileges on the host's mounts).
fn tmpfs_wrapper(dir: &Path, size: &str) -> anyhow::Result<PathBuf> {
    let script = dir.join("tern-store-on-tmpfs");
    let text = format!(
        r#"#!/bin/sh
# Finds --data-dir among the store's arguments, mounts a {size} tmpfs on its db/ in a new
# mount namespace, and runs the store there (exec all the way: the pid is the store's).
dd=""; prev=""
for a in "$@"; do [ "$prev" = "--data-dir" ] && dd="$a"; prev="$a"; done
mkdir -p "$dd/db"
exec unshare --user --map-root-user --mount sh -c 'mount -t tmpfs -o size={size} tmpfs "$1/db" && shift && exec "$@"' sh "$dd" "{bin}" "$@"
"#,
        bin = env!("CARGO_BIN_EXE_tern-store"),
    );
    std::fs::write(&script, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// The store's view of node `i`'s `db/` directory, through its own mount namespace.
fn db_dir(cluster: &StoreCluster, i: usize) -> anyhow::Result<PathBuf> {
    let pid = cluster.nodes[i].pid().context("store pid")?;
    Ok(PathBuf::from(format!("/proc/{pid}/root"))
        .join(cluster.data_dir(i).strip_prefix("/")?)
        .join("db"))
}

/// Fills `db` until `left` bytes are free; returns the filler file.
fn fill(db: &Path, left: u64) -> anyhow::Result<PathBuf> {
    let free = tern_store::disk::free_bytes(db)?;
    anyhow::ensure!(
        free < 300 << 20,
        "db/ is not on the small tmpfs ({free} bytes free)"
    );
    let filler = db.join("filler");
    let mut f = std::fs::File::create(&filler)?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..(free.saturating_sub(left) >> 20) {
        f.write_all(&chunk)?;
    }
    f.sync_all()?;
    Ok(filler)
}

/// A follower whose disk fills while the leader's has room: it refuses the log below its
/// margin (and says why in its log) while the majority goes on committing, and catches up,
/// in the same process, once space is freed. Before, it appended until RocksDB failed on the
/// full disk, and its Raft stopped for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_full_disk_falls_behind_and_catches_up() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let wrapper = tmpfs_wrapper(scratch.path(), "256m")?;
    let cluster = StoreCluster::start(&wrapper, 3, &["--min-free-mb", "64"]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    let pid = cluster.nodes[follower].pid().context("follower pid")?;
    // 40 MiB left, 64 MiB kept free: the follower is below its margin.
    let filler = fill(&db_dir(&cluster, follower)?, 40 << 20)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut msgs = cluster.messages(leader, ALICE).await?;
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    body.resize(4 << 20, b'x');
    // 48 MiB of messages: more than the follower has left.
    for n in 0..12 {
        append(&mut msgs, ALICE, "INBOX", &body, &format!("f{n}"))
            .await
            .with_context(|| format!("append {n}: the majority should still commit"))?;
    }
    let target = cluster.status(leader).await?.last_applied;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let behind = cluster.status(follower).await?.last_applied;
    anyhow::ensure!(
        behind < target,
        "the follower applied {behind} of {target} on a full disk"
    );
    assert!(
        std::fs::read_to_string(cluster.data_dir(follower).join("log"))?.contains("disk space low"),
        "the follower's log says why it falls behind"
    );
    std::fs::remove_file(&filler)?;
    cluster
        .wait_applied(follower, target, Duration::from_secs(30))
        .await?;
    assert_eq!(
        cluster.nodes[follower].pid(),
        Some(pid),
        "the follower did not restart"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_and_recovers_when_space_is_freed() -> anyhow::Result<()>
{
    let scratch = tempfile::tempdir()?;
    let wrapper = tmpfs_wrapper(scratch.path(), "256m")?;
    let cluster = StoreCluster::start(&wrapper, 1, &["--min-free-mb", "64"]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut msgs = cluster.messages(leader, ALICE).await?;
    append(
        &mut msgs,
        ALICE,
        "INBOX",
        b"Subject: a\r\n\r\nroom\r\n",
        "d1",
    )
    .await?;

    let pid = cluster.nodes[0].pid().context("store pid")?;
    // Fill it up to 32 MiB from the end: below the 64 MiB margin.
    let filler = fill(&db_dir(&cluster, 0)?, 32 << 20)?;

    // Within a few samples, a delivery is refused: UNAVAILABLE, naming the cause.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        match append(
            &mut msgs,
            ALICE,
            "INBOX",
            b"Subject: b\r\n\r\nfull\r\n",
            "d2",
        )
        .await
        {
            Err(s) => break s,
            Ok(_) => {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "writes still accepted on a full disk"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("low on disk space")
            && refused.message().contains("min_free_mb"),
        "{}",
        refused.message()
    );
    // A write that adds nothing still goes through, so a user can clean up: marking the
    // first message \Deleted (then an expunge would free its space).
    msgs.store_flags(pb::StoreFlagsRequest {
        account: ALICE.into(),
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet {
            ranges: vec![pb::UidRange { first: 1, last: 1 }],
        }),
        mode: pb::store_flags_request::Mode::Add as i32,
        flags: vec!["\\Deleted".into()],
        unchanged_since: 0,
    })
    .await
    .context("a flag change while the disk is low")?;

    // Space returns: writes are accepted again, by the same process.
    std::fs::remove_file(&filler)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match append(
            &mut msgs,
            ALICE,
            "INBOX",
            b"Subject: c\r\n\r\nback\r\n",
            "d3",
        )
        .await
        {
            Ok(_) => break,
            Err(s) => {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "writes still refused 15 s after space was freed: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(
        cluster.nodes[0].pid(),
        Some(pid),
        "the node did not restart"
    );
    Ok(())
}
