//! Delivery at acceptance (issue 19): a message's recipients that are local users are
//! delivered by the same replicated write that accepts it; only what is left (remote
//! recipients here) becomes a queue entry for a worker. Counted with the store's
//! `tern_store_applied_commands_total` by kind, on a one-node cluster (every command is
//! applied there once).

use std::time::Duration;

use tern_testkit::platform::http_get;

mod delivery_kit;
use delivery_kit::*;

/// The count of applied commands of `kind` in a scrape.
fn applied(scrape: &str, kind: &str) -> u64 {
    let wanted = format!("tern_store_applied_commands_total{{kind=\"{kind}\"}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn scrape(p: &tern_testkit::Platform) -> anyhow::Result<String> {
    let (status, body) = http_get(&p.cluster.nodes[0].metrics, "/metrics").await?;
    anyhow::ensure!(status == 200, "metrics answered {status}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_local_users_and_a_remote_one_cost_one_accept_and_one_queue_entry(
) -> anyhow::Result<()> {
    let peer = Peer::start(Script::default()).await?;
    let dns = dns_for(&peer).await?;
    let args = remote_args(&dns, &peer);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = platform(1, &args).await?;
    let before = scrape(&p).await?;
    let to = [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
        "far@remote.example",
    ];
    enqueue(&p, "sender@example.test", &to, &message(1)).await?;
    // As soon as the message is accepted, the three local users have it...
    for user in ["alice", "bob", "carol"] {
        assert_eq!(inbox(&p, 0, user).await?.len(), 1, "{user}");
    }
    // ...and at most one entry is left (a worker may have finished it already), in which
    // every local recipient is already delivered.
    let entries = queue_entries(&p, 0).await?;
    assert!(entries.len() <= 1, "{entries:?}");
    for r in entries.iter().flat_map(|e| &e.recipients) {
        let delivered = r.state == tern_proto::store::v1::queue_recipient::State::Delivered as i32;
        assert!(delivered || r.address == "far@remote.example", "{r:?}");
    }
    drained(&p, 0, Duration::from_secs(30)).await?;
    let got = peer.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].rcpts,
        ["far@remote.example"],
        "the remote recipient alone"
    );
    for user in ["alice", "bob", "carol"] {
        assert_eq!(inbox(&p, 0, user).await?.len(), 1, "{user}: still one copy");
    }
    let after = scrape(&p).await?;
    let delta = |kind: &str| applied(&after, kind) - applied(&before, kind);
    assert_eq!(delta("accept"), 1, "one accept write");
    assert_eq!(delta("enqueue"), 0);
    assert_eq!(delta("deliver"), 0, "no separate local delivery");
    assert_eq!(delta("update-entry"), 1, "the remote attempt's outcome");
    drop(dns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_only_message_leaves_no_queue_entry_in_flight() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let before = scrape(&p).await?;
    let to = ["alice@example.test", "bob@example.test"];
    enqueue(&p, "sender@example.test", &to, &message(2)).await?;
    assert!(queue_entries(&p, 0).await?.is_empty(), "nothing in flight");
    for user in ["alice", "bob"] {
        assert_eq!(inbox(&p, 0, user).await?.len(), 1, "{user}");
    }
    let after = scrape(&p).await?;
    assert_eq!(applied(&after, "accept") - applied(&before, "accept"), 1);
    assert_eq!(applied(&after, "deliver"), applied(&before, "deliver"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_delivers_an_alias_by_naming_the_stored_content() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let mut dir = tern_proto::store::v1::directory_client::DirectoryClient::new(
        p.cluster.channel(0, tern_trust::Role::Admin).await?,
    );
    dir.add_alias(tern_proto::store::v1::AddAliasRequest {
        address: "team@example.test".into(),
        targets: vec!["bob@example.test".into(), "carol@example.test".into()],
    })
    .await?;
    let before = scrape(&p).await?;
    enqueue(
        &p,
        "sender@example.test",
        &["team@example.test"],
        &message(3),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(30)).await?;
    for user in ["bob", "carol"] {
        assert_eq!(inbox(&p, 0, user).await?.len(), 1, "{user}");
    }
    let after = scrape(&p).await?;
    let delta = |kind: &str| applied(&after, kind) - applied(&before, kind);
    assert_eq!(delta("accept"), 1);
    assert_eq!(
        delta("deliver-stored"),
        1,
        "one write for both, naming the content"
    );
    assert_eq!(delta("deliver"), 0, "no write that carries the body again");
    Ok(())
}
