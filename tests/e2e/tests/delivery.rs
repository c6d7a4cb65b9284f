//! The queue against a running platform: real tern-store and tern-queue processes, a DNS
//! server and SMTP peers on loopback started by the test.

use std::time::{Duration, Instant};

use anyhow::Context;
use tern_e2e::client_script;
use tern_proto::queue::v1 as qpb;
use tern_proto::queue::v1::queue_client::QueueClient as EnqueueClient;
use tern_proto::store::v1 as pb;
use tern_testkit::clients::{require, Client};
use tern_testkit::{fetch, Platform};
use tern_trust::Role;

mod delivery_kit;
use delivery_kit::*;

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread")]
async fn local_users_an_alias_and_a_list_get_one_copy_each_and_one_blob() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let mut dir = tern_proto::store::v1::directory_client::DirectoryClient::new(
        p.cluster.channel(0, Role::Admin).await?,
    );
    dir.add_alias(pb::AddAliasRequest {
        address: "team@example.test".into(),
        targets: vec!["bob@example.test".into(), "alice@example.test".into()],
    })
    .await?;
    dir.add_list_members(pb::AddListMembersRequest {
        address: "all@example.test".into(),
        members: vec![
            "alice@example.test".into(),
            "carol@example.test".into(),
            "team@example.test".into(),
            "all@example.test".into(),
        ],
    })
    .await?;
    enqueue(
        &p,
        "sender@elsewhere.example",
        &[
            "alice@example.test",
            "bob@example.test",
            "carol@example.test",
            "team@example.test",
            "all@example.test",
        ],
        &message(1),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    let mut blobs = std::collections::HashSet::new();
    for user in ["alice", "bob", "carol"] {
        let inbox = inbox(&p, 0, user).await?;
        assert_eq!(inbox.len(), 1, "{user}: {inbox:?}");
        blobs.insert(inbox[0].blob.clone());
    }
    assert_eq!(blobs.len(), 1, "one stored copy for every recipient");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_mail_goes_to_the_mx_that_answers_over_one_reused_connection() -> anyhow::Result<()>
{
    let peer = Peer::start(Script::default()).await?;
    let dns = dns_for(&peer).await?;
    let mut args = remote_args(&dns, &peer);
    args.extend(["--max-connections-per-destination".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = platform(1, &args).await?;
    enqueue(
        &p,
        "alice@example.test",
        &["one@remote.example", "two@remote.example"],
        &message(0),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    let got = peer.received();
    assert_eq!(got.len(), 1, "one copy for the host");
    assert_eq!(
        got[0].rcpts,
        vec!["one@remote.example", "two@remote.example"]
    );
    assert_eq!(got[0].data, message(0), "byte-exact after unstuffing");
    for n in 1..=50 {
        enqueue(
            &p,
            "alice@example.test",
            &["one@remote.example"],
            &message(n),
        )
        .await?;
    }
    drained(&p, 0, Duration::from_secs(60)).await?;
    assert_eq!(peer.received().len(), 51);
    assert_eq!(
        peer.connections(),
        1,
        "every message over the same connection"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_temporary_failure_is_retried_until_it_is_delivered() -> anyhow::Result<()> {
    let peer = Peer::start(Script {
        temp_fail_transactions: 2,
        ..Default::default()
    })
    .await?;
    let dns = dns_for(&peer).await?;
    let mut args = remote_args(&dns, &peer);
    args.extend(
        ["--first-retry-secs", "1", "--max-retry-secs", "4"]
            .iter()
            .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = platform(1, &args).await?;
    enqueue(
        &p,
        "alice@example.test",
        &["one@remote.example"],
        &message(1),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(30)).await?;
    // Two temporary failures, then success: the worker retried twice and delivered once.
    // The gaps between attempts are not asserted: the backoff schedule is unit-tested in
    // tern-queue, and a wall-clock window here is one a loaded machine misses.
    assert_eq!(peer.received().len(), 1, "delivered on the third attempt");
    let t = peer.transaction_times();
    assert_eq!(t.len(), 3, "{t:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_recipient_is_bounced_with_a_dsn_and_the_other_delivered() -> anyhow::Result<()> {
    let (peer, _dns, p) = refusing(&["nobody@remote.example"]).await?;
    enqueue(
        &p,
        "alice@example.test",
        &["ok@remote.example", "nobody@remote.example"],
        &message(7),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    let got = peer.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["ok@remote.example"]);
    // The DSN went to alice (a local user) through the queue.
    let inbox = inbox(&p, 0, "alice").await?;
    assert_eq!(inbox.len(), 1, "one DSN");
    let mut m = p.cluster.messages(0, "alice@example.test").await?;
    let dsn = fetch(&mut m, "alice@example.test", "INBOX", inbox[0].uid).await?;
    let file = p.scratch().join("dsn.eml");
    std::fs::write(&file, &dsn)?;
    require(Client::Python)?;
    let out = std::process::Command::new("python3")
        .arg(client_script("parse_dsn.py"))
        .arg(&file)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["report_type"], "delivery-status", "{v}");
    let rcpts = v["recipients"].as_array().context("recipients")?;
    assert_eq!(rcpts.len(), 1, "{v}");
    let r = &rcpts[0];
    assert!(
        r["Final-Recipient"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("nobody@remote.example"),
        "{r}"
    );
    assert_eq!(
        r["Action"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("failed")
    );
    assert_eq!(r["Status"], "5.1.1");
    assert!(
        r["Diagnostic-Code"].as_str().unwrap_or("").contains("550"),
        "{r}"
    );
    assert!(
        String::from_utf8_lossy(&dsn).contains("Subject: test 7"),
        "the original's headers come back"
    );
    Ok(())
}

/// Issue 16, item 9: mail from outside (a client that did not authenticate) for a hosted
/// alias that forwards to a remote address the remote refuses is not bounced to its
/// unverified sender, which anyone could forge to aim bounces at a third party
/// (backscatter); the same failure of mail an authenticated user submitted is bounced.
#[tokio::test(flavor = "multi_thread")]
async fn an_alias_does_not_turn_mail_from_outside_into_backscatter() -> anyhow::Result<()> {
    let (peer, _dns, p) = refusing(&["gone@remote.example"]).await?;
    let mut dir = tern_proto::store::v1::directory_client::DirectoryClient::new(
        p.cluster.channel(0, Role::Admin).await?,
    );
    dir.add_alias(pb::AddAliasRequest {
        address: "fwd@example.test".into(),
        targets: vec!["gone@remote.example".into()],
    })
    .await?;
    dir.add_list_members(pb::AddListMembersRequest {
        address: "news@example.test".into(),
        members: vec!["gone@remote.example".into(), "carol@example.test".into()],
    })
    .await?;
    // From outside, claiming to be bob: neither the alias nor the list bounces to bob.
    enqueue(
        &p,
        "bob@example.test",
        &["fwd@example.test", "news@example.test"],
        &message(1),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(queue_entries(&p, 0).await?.is_empty(), "no DSN was queued");
    assert!(inbox(&p, 0, "bob").await?.is_empty(), "bob got backscatter");
    assert_eq!(inbox(&p, 0, "carol").await?.len(), 1, "the list delivered");
    // Submitted by alice (authenticated): the failure is bounced to her.
    enqueue_as(
        &p,
        "alice@example.test",
        "alice@example.test",
        &["fwd@example.test"],
        &message(2),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while inbox(&p, 0, "alice").await?.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "alice got no DSN\nqueue log:\n{}",
            p.queue().log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(peer.received().is_empty(), "the remote refused every copy");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_from_the_null_path_is_not_bounced() -> anyhow::Result<()> {
    let (_peer, _dns, p) = refusing(&["nobody@remote.example"]).await?;
    enqueue(&p, "", &["nobody@remote.example"], &message(1)).await?;
    // And an unknown local user from <> too.
    enqueue(&p, "", &["ghost@example.test"], &message(2)).await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(queue_entries(&p, 0).await?.is_empty(), "no DSN was queued");
    for user in ["alice", "bob", "carol"] {
        assert!(inbox(&p, 0, user).await?.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_entries_are_taken_over_without_a_second_local_copy() -> anyhow::Result<()>
{
    // The remote half of each message is slow, so the first worker is killed while it holds
    // leases on entries whose local half it already delivered.
    let peer = Peer::start(Script {
        data_delay: Duration::from_secs(2),
        ..Default::default()
    })
    .await?;
    let dns = dns_for(&peer).await?;
    let mut args = remote_args(&dns, &peer);
    args.extend(["--lease-secs", "3"].iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Local copies by the worker, not at acceptance: the takeover must not store them twice.
    let mut p = worker_platform(1, &args).await?;
    for n in 0..10 {
        enqueue(
            &p,
            "alice@example.test",
            &[
                "bob@example.test",
                "carol@example.test",
                "far@remote.example",
            ],
            &message(n),
        )
        .await?;
    }
    // Wait until the first worker has delivered locally and is stuck on the remote side.
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox(&p, 0, "bob").await?.len() < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !queue_entries(&p, 0).await?.is_empty(),
        "entries still leased"
    );
    // A second worker runs beside the first; then the first dies holding its leases.
    let _second = p.add_queue(&args).await?;
    p.queue_mut().kill();
    drained(&p, 0, Duration::from_secs(40)).await?;
    for user in ["bob", "carol"] {
        let inbox = inbox(&p, 0, user).await?;
        assert_eq!(inbox.len(), 10, "{user} got each message once");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_store_leader_during_delivery_loses_and_duplicates_nothing(
) -> anyhow::Result<()> {
    let mut p = platform(3, &[]).await?;
    let leader = p.cluster.wait_leader(Duration::from_secs(10)).await?;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            enqueue(
                &p,
                "sender@elsewhere.example",
                &["alice@example.test", "bob@example.test"],
                &message(n),
            )
            .await?,
        );
        if n == 15 {
            p.cluster.kill(leader);
        }
    }
    let survivor = (0..3).find(|&i| i != leader).context("a survivor")?;
    p.cluster.wait_leader(Duration::from_secs(30)).await?;
    drained(&p, survivor, Duration::from_secs(60)).await?;
    for user in ["alice", "bob"] {
        let inbox = inbox(&p, survivor, user).await?;
        assert_eq!(inbox.len(), 40, "{user}: every message exactly once");
        let mut m = p
            .cluster
            .messages(survivor, &format!("{user}@example.test"))
            .await?;
        let mut subjects = std::collections::HashSet::new();
        for rec in &inbox {
            let body = fetch(&mut m, &format!("{user}@example.test"), "INBOX", rec.uid).await?;
            let text = String::from_utf8_lossy(&body).to_string();
            let subject = text
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or("")
                .to_string();
            assert!(
                subjects.insert(subject.clone()),
                "{user} got {subject} twice"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alias_loop_bounces_instead_of_vanishing() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let mut dir = tern_proto::store::v1::directory_client::DirectoryClient::new(
        p.cluster.channel(0, Role::Admin).await?,
    );
    for (from, to) in [("loop1", "loop2"), ("loop2", "loop1")] {
        dir.add_alias(pb::AddAliasRequest {
            address: format!("{from}@example.test"),
            targets: vec![format!("{to}@example.test")],
        })
        .await?;
    }
    enqueue(
        &p,
        "bob@example.test",
        &["loop1@example.test", "carol@example.test"],
        &message(3),
    )
    .await?;
    drained(&p, 0, Duration::from_secs(20)).await?;
    assert_eq!(inbox(&p, 0, "carol").await?.len(), 1);
    let bounces = inbox(&p, 0, "bob").await?;
    assert_eq!(
        bounces.len(),
        1,
        "the looping alias is bounced to the sender"
    );
    let mut m = p.cluster.messages(0, "bob@example.test").await?;
    let dsn = fetch(&mut m, "bob@example.test", "INBOX", bounces[0].uid).await?;
    let text = String::from_utf8_lossy(&dsn);
    assert!(text.contains("loop1@example.test"), "{text}");
    Ok(())
}

/// Enqueue with an undeclared size (as SMTP streams DATA): chunks followed by `last` are
/// queued and delivered whole; a stream that ends without `last` was cut off and is refused
/// with nothing queued; data after `last` is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_undeclared_size_stream_needs_its_last_marker() -> anyhow::Result<()> {
    let p = platform(1, &[]).await?;
    let envelope = qpb::Envelope {
        sender: "someone@remote.example".into(),
        recipients: vec![qpb::Recipient {
            address: "alice@example.test".into(),
            ..Default::default()
        }],
        received_from: "test".into(),
        size: 0,
        ..Default::default()
    };
    let chunk = |envelope: Option<qpb::Envelope>, data: &[u8], last: bool| qpb::EnqueueRequest {
        envelope,
        chunk: data.to_vec().into(),
        last,
    };
    let mut client = EnqueueClient::new(p.queue_channel().await?);
    // Complete: three requests, the last marked.
    let whole = vec![
        chunk(Some(envelope.clone()), b"Subject: streamed\r\n", false),
        chunk(None, b"\r\nfirst half, ", false),
        chunk(None, b"second half\r\n", true),
    ];
    client.enqueue(futures::stream::iter(whole)).await?;
    // Cut off: no last marker.
    let cut = vec![
        chunk(Some(envelope.clone()), b"Subject: cut-off\r\n", false),
        chunk(None, b"\r\nonly the first half", false),
    ];
    let err = client
        .enqueue(futures::stream::iter(cut))
        .await
        .expect_err("a stream without its last request must be refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // Data after the last marker.
    let after = vec![
        chunk(
            Some(envelope.clone()),
            b"Subject: after-last\r\n\r\nbody\r\n",
            true,
        ),
        chunk(None, b"more", false),
    ];
    let err = client
        .enqueue(futures::stream::iter(after))
        .await
        .expect_err("data after the last request must be refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    drained(&p, 0, Duration::from_secs(20)).await?;
    let inbox = inbox(&p, 0, "alice").await?;
    assert_eq!(inbox.len(), 1, "only the complete message is delivered");
    let mut m = p.cluster.messages(0, "alice@example.test").await?;
    let body = fetch(&mut m, "alice@example.test", "INBOX", inbox[0].uid).await?;
    assert_eq!(
        body,
        b"Subject: streamed\r\n\r\nfirst half, second half\r\n"
    );
    Ok(())
}

/// Issue 16, graceful shutdown: SIGTERM to tern-queue while the remote server sits on the
/// final dot of DATA. The attempt finishes and records its outcome before the process
/// exits, so the worker that takes over (leases of 3 s) finds nothing to send: the remote
/// server has the message exactly once and no entry is left leased. (Before, the process
/// exited at once, the lease lapsed and the second worker sent the message again.)
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_remote_attempt_finish_so_nothing_is_sent_twice() -> anyhow::Result<()> {
    let peer = Peer::start(Script {
        data_delay: Duration::from_secs(4),
        ..Default::default()
    })
    .await?;
    let dns = dns_for(&peer).await?;
    let mut args = remote_args(&dns, &peer);
    args.extend(
        ["--lease-secs", "3", "--drain-secs", "20"]
            .iter()
            .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = platform(1, &args).await?;
    enqueue(
        &p,
        "alice@example.test",
        &["far@remote.example"],
        &message(7),
    )
    .await?;
    // DATA has begun at the peer; the final dot follows at once and the peer sits on it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.transaction_times().is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "no remote transaction began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.queue_mut().terminate();
    let _second = p.add_queue(&args).await?;
    let status = p
        .queue_mut()
        .wait_exit(Duration::from_secs(25))
        .await
        .context("tern-queue still runs after its attempt ended")?;
    assert!(status.success(), "{status}\n{}", p.queue().log_text());
    drained(&p, 0, Duration::from_secs(20)).await?;
    // Past another lease time: nothing is sent again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(peer.received().len(), 1, "the remote server has it once");
    assert!(queue_entries(&p, 0).await?.is_empty());
    Ok(())
}

/// Issue 16: a lease that may have lapsed stops a remote attempt before the final dot. The
/// queue reaches the store through a fault proxy; while the remote server sits on RCPT for
/// 6 s, the store is cut off for longer than the 3 s lease. The attempt gives up before
/// ending DATA (the server never gets a whole message), and once the store is back a later
/// attempt delivers exactly once. (Before, the first attempt sent the dot, could not record
/// the outcome, and the entry was sent again.)
#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_whose_lease_may_have_lapsed_never_sends_the_final_dot() -> anyhow::Result<()> {
    use tern_testkit::faultproxy::{FaultProxy, Mode};
    use tern_testkit::queue::QueueNode;

    let peer = Peer::start(Script {
        rcpt_delay: Duration::from_secs(6),
        ..Default::default()
    })
    .await?;
    let dns = dns_for(&peer).await?;
    let p = Platform::builder()
        .stores(1)
        .users(&["alice"])
        .start()
        .await?;
    let proxy = FaultProxy::start().await?;
    let store = p.store_addrs()[0].trim_start_matches("http://").parse()?;
    proxy.set_target(store);
    let mut args = p.cluster.cluster_args(Role::Queue);
    args.extend(remote_args(&dns, &peer));
    args.extend(
        ["--lease-secs", "3", "--first-retry-secs", "1"]
            .iter()
            .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let queue = QueueNode::start(p.scratch(), &[proxy.addr().to_string()], &args).await?;
    let channel = p
        .cluster
        .connect(&queue.grpc, Role::Smtp, Role::Queue)
        .await?;
    enqueue_at(
        channel,
        "alice@example.test",
        &["far@remote.example"],
        &message(9),
    )
    .await?;

    // The attempt is at RCPT, which the server holds for 6 s: cut the store off now, past
    // the lease, and back before the retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.state.lock().unwrap().rcpts_seen == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no attempt reached RCPT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set_mode(Mode::Blackhole);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        peer.received().is_empty(),
        "a message was completed after the lease could have lapsed"
    );
    proxy.set_mode(Mode::Pass);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = queue_entries(&p, 0).await.unwrap_or_default();
        if left.is_empty() && !peer.received().is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not delivered after the store came back: {left:#?}\n{}",
            queue.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past two more lease times: nothing is sent again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(peer.received().len(), 1, "the remote server has it once");
    Ok(())
}

/// Issue 16, item 3: a queue node holds at most `enqueue_memory_mb` of messages at once.
/// With 1 MiB and a 1 s wait, a stream that declared 1 MiB and stalls after its first piece
/// holds all of it: other Enqueues wait, then are refused UNAVAILABLE (which tern-smtp turns
/// into "try again later") instead of piling up in memory. When the stalled stream completes,
/// the room is given back and the next message goes through. Every accepted message is
/// delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_node_holds_a_bounded_amount_of_messages_in_flight() -> anyhow::Result<()> {
    let p = platform(
        1,
        &["--enqueue-memory-mb", "1", "--enqueue-wait-ms", "1000"],
    )
    .await?;
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.resize(1 << 20, b'x');
    big.splice(big.len() - 2.., *b"\r\n");
    let envelope = qpb::Envelope {
        sender: "someone@remote.example".into(),
        recipients: vec![qpb::Recipient {
            address: "alice@example.test".into(),
            ..Default::default()
        }],
        received_from: "test".into(),
        size: big.len() as u64,
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<qpb::EnqueueRequest>(4);
    tx.send(qpb::EnqueueRequest {
        envelope: Some(envelope),
        chunk: big[..100].to_vec().into(),
        last: false,
    })
    .await?;
    let pieces = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut client = EnqueueClient::new(p.queue_channel().await?);
    let stalled = tokio::spawn(async move { client.enqueue(pieces).await });

    // Small messages go through until the stalled stream has taken its room; then one waits
    // and is refused.
    let mut accepted_before = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let small = format!("Subject: small {accepted_before}\r\n\r\nx\r\n");
        match enqueue_at(
            p.queue_channel().await?,
            "someone@remote.example",
            &["alice@example.test"],
            small.as_bytes(),
        )
        .await
        {
            Ok(_) => accepted_before += 1,
            Err(e) => break e,
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no Enqueue was held back while 1 MiB was in flight"
        );
    };
    let status = refused
        .downcast_ref::<tonic::Status>()
        .with_context(|| format!("{refused:#}"))?;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("enqueue_memory_mb"), "{status:?}");

    // The stalled message completes, gives its room back, and the next one goes through.
    tx.send(qpb::EnqueueRequest {
        envelope: None,
        chunk: big[100..].to_vec().into(),
        last: true,
    })
    .await?;
    drop(tx);
    stalled.await??;
    enqueue_at(
        p.queue_channel().await?,
        "someone@remote.example",
        &["alice@example.test"],
        b"Subject: after\r\n\r\nx\r\n",
    )
    .await?;
    drained(&p, 0, Duration::from_secs(30)).await?;
    assert_eq!(inbox(&p, 0, "alice").await?.len(), accepted_before + 2);
    Ok(())
}
