//! The directory cache of SMTP nodes (issue 19): a known recipient is answered from the
//! cache, kept current by the store's directory feed; an unknown one is always asked of the
//! store, so a user added a moment ago is never refused; a removed user is refused as soon
//! as the feed says so. Real tern-store (3 nodes), tern-queue and tern-smtp processes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::directory_client::DirectoryClient;
use tern_testkit::platform::http_get;
use tern_testkit::Platform;
use tern_trust::identity::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An SMTP session that sends one line at a time and reads the reply's code.
struct Session(BufReader<TcpStream>);

impl Session {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let mut s = Session(BufReader::new(TcpStream::connect(addr).await?));
        let greeting = s.read_code().await?;
        anyhow::ensure!(greeting == 220, "greeting {greeting}");
        anyhow::ensure!(s.cmd("EHLO client.remote.example").await? == 250);
        Ok(s)
    }

    async fn read_code(&mut self) -> anyhow::Result<u16> {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.0.read_line(&mut line))
                .await
                .context("reply timed out")??;
            anyhow::ensure!(n > 0, "connection closed");
            if line.as_bytes().get(3) == Some(&b' ') {
                return line[..3].parse().context("reply code");
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> anyhow::Result<u16> {
        self.0
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.read_code().await
    }

    /// The code RCPT TO `address` gets in a fresh transaction.
    async fn rcpt(&mut self, address: &str) -> anyhow::Result<u16> {
        anyhow::ensure!(self.cmd("RSET").await? == 250);
        anyhow::ensure!(self.cmd("MAIL FROM:<someone@remote.example>").await? == 250);
        self.cmd(&format!("RCPT TO:<{address}>")).await
    }
}

/// The next message of a directory feed, within 10 s.
async fn next(
    stream: &mut tonic::Streaming<pb::DirectoryChange>,
) -> anyhow::Result<pb::DirectoryChange> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .context("no feed message within 10 s")??
        .context("the feed ended")
}

/// tern-smtp's count of directory cache lookups with `result` (hit or miss).
async fn lookups(p: &Platform, result: &str) -> anyhow::Result<u64> {
    let (status, body) = http_get(&p.smtp().metrics, "/metrics").await?;
    anyhow::ensure!(status == 200, "metrics answered {status}");
    let wanted = format!("tern_directory_cache_lookups_total{{result=\"{result}\"}} ");
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn known_recipients_come_from_the_cache_and_directory_changes_reach_it() -> anyhow::Result<()>
{
    let p = Platform::builder()
        .users(&["alice"])
        .smtp(&[])
        .start()
        .await?;
    let leader = p.cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut dir = p.cluster.directory(leader).await?;
    let mut s = Session::open(&p.smtp().mx).await?;

    // The cache answers once its feed is connected: a repeated RCPT for alice becomes hits.
    let deadline = Instant::now() + Duration::from_secs(15);
    while lookups(&p, "hit").await? == 0 {
        anyhow::ensure!(s.rcpt("alice@example.test").await? == 250);
        if Instant::now() > deadline {
            bail!("no cache hit within 15 s\n{}", p.smtp().log_text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits = lookups(&p, "hit").await?;
    let misses = lookups(&p, "miss").await?;
    for _ in 0..20 {
        assert_eq!(s.rcpt("ALICE@example.test").await?, 250);
    }
    assert_eq!(
        lookups(&p, "hit").await? - hits,
        20,
        "every RCPT from the cache"
    );
    assert_eq!(lookups(&p, "miss").await?, misses, "no store read");

    // Unknown recipients are never cached: a user added a moment ago is accepted at once.
    for round in 0..5 {
        let address = format!("new{round}@example.test");
        assert_eq!(s.rcpt(&address).await?, 550, "{address} before it exists");
        dir.add_user(pb::AddUserRequest {
            address: address.clone(),
            password: "pw-new".into(),
            quota_bytes: 0,
        })
        .await?;
        assert_eq!(s.rcpt(&address).await?, 250, "{address} just added");
    }

    // A removal reaches the cache through the feed: refused soon after, never accepted
    // again once refused.
    for round in 0..5 {
        let address = format!("new{round}@example.test");
        // Until it is answered from the cache (the first read after the add may have raced
        // the add's own feed change, and then was not kept).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let hits = lookups(&p, "hit").await?;
            assert_eq!(s.rcpt(&address).await?, 250, "{address}");
            if lookups(&p, "hit").await? > hits {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{address} never cached");
        }
        dir.remove_user(pb::RemoveUserRequest {
            address: address.clone(),
        })
        .await?;
        let removed = Instant::now();
        loop {
            match s.rcpt(&address).await? {
                550 => break,
                250 if removed.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                code => bail!(
                    "{address} removed {:?} ago, RCPT still {code}",
                    removed.elapsed()
                ),
            }
        }
        assert_eq!(s.rcpt(&address).await?, 550, "{address} stays refused");
    }
    assert_eq!(s.rcpt("alice@example.test").await?, 250);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_feed_names_changes_and_resumes_on_another_node() -> anyhow::Result<()> {
    let p = Platform::builder().users(&["alice"]).start().await?;
    let leader = p.cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut dir = p.cluster.directory(leader).await?;
    let feed = |i: usize, after: u64| {
        let cluster = &p.cluster;
        async move {
            let mut client = DirectoryClient::new(cluster.channel(i, Role::Smtp).await?);
            let stream = client
                .watch_directory(pb::WatchDirectoryRequest { after_index: after })
                .await?
                .into_inner();
            anyhow::Ok(stream)
        }
    };
    // A reader with nothing seen starts with a reset.
    let mut live = feed(leader, 0).await?;
    let first = next(&mut live).await?;
    assert!(first.reset && first.names.is_empty(), "{first:?}");
    dir.add_user(pb::AddUserRequest {
        address: "Dora@Example.test".into(),
        password: "pw-dora".into(),
        quota_bytes: 0,
    })
    .await?;
    let added = next(&mut live).await?;
    assert_eq!(added.names, ["dora@example.test"]);
    assert!(added.index > first.index);
    dir.add_domain(pb::AddDomainRequest {
        name: "other.test".into(),
    })
    .await?;
    let domain = next(&mut live).await?;
    assert_eq!(domain.names, ["other.test"]);

    // A reader that saw the user resumes on a follower: its first message names the domains
    // of what came after (the domain) and asks for no reset.
    let follower = (leader + 1) % p.cluster.nodes.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    let resumed = loop {
        let mut stream = feed(follower, added.index).await?;
        let first = next(&mut stream).await?;
        if first.names.iter().any(|n| n == "other.test") || Instant::now() > deadline {
            break first;
        }
        // The follower had not applied the domain yet: it comes live, after the first.
        if let Ok(Ok(Some(c))) =
            tokio::time::timeout(Duration::from_secs(2), stream.message()).await
        {
            if c.names.iter().any(|n| n == "other.test") {
                break pb::DirectoryChange {
                    reset: first.reset,
                    ..c
                };
            }
        }
    };
    assert!(!resumed.reset, "{resumed:?}");
    assert_eq!(resumed.names, ["other.test"], "{resumed:?}");

    // A resume point older than a node's memory (here: from before it restarted) is a
    // reset: the changes in between are not known there.
    drop(live);
    let mut p = p;
    p.cluster.kill(follower);
    p.cluster.spawn(follower).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let attempt = async {
            let mut client = DirectoryClient::new(p.cluster.channel(follower, Role::Smtp).await?);
            let mut stream = client
                .watch_directory(pb::WatchDirectoryRequest {
                    after_index: added.index,
                })
                .await?
                .into_inner();
            anyhow::Ok(stream.message().await?)
        };
        match attempt.await {
            Ok(Some(first)) => break first,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => bail!("the restarted node's feed: {other:?}"),
        }
    };
    assert!(first.reset, "{first:?}");
    Ok(())
}
