//! Bad input gets a clear gRPC status and the node keeps serving.

use std::path::Path;
use std::time::{Duration, Instant};

use tern_proto::store::v1 as pb;
use tern_testkit::{append, list_all, seed_users, StoreCluster};
use tern_trust::Role;
use tonic::Code;

const ALICE: &str = "alice@example.test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tern-store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_statuses_and_the_node_keeps_serving() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &["--max-message-size", "100000"]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let mut m = cluster.messages(0, ALICE).await?;
    let mut d = cluster.directory(0).await?;
    let mut b = cluster.mailboxes(0, ALICE).await?;

    let big = vec![b'a'; 300_000];
    let e = append(&mut m, ALICE, "INBOX", &big, "").await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("size limit"), "{}", e.message());

    let e = append(&mut m, ALICE, "NoSuchBox", b"x", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Alice's session touches no other account, existing or not.
    let e = append(&mut m, "nobody@example.test", "INBOX", b"x", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    for bad in ["not-an-address", "a b@example.test", "x@", "@example.test"] {
        let e = d
            .add_user(pb::AddUserRequest {
                address: bad.into(),
                password: "pw".into(),
                quota_bytes: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
    }
    let e = d
        .add_user(pb::AddUserRequest {
            address: ALICE.into(),
            password: "pw".into(),
            quota_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = d
        .add_user(pb::AddUserRequest {
            address: "x@unhosted.test".into(),
            password: "pw".into(),
            quota_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    for bad in ["", "a//b", "/lead", "trail/", "wild*", "ctl\u{1}"] {
        let e = b
            .create(pb::CreateMailboxRequest {
                account: ALICE.into(),
                name: bad.into(),
                special_use: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
    }
    let e = b
        .delete(pb::DeleteMailboxRequest {
            account: ALICE.into(),
            name: "INBOX".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let nested = |depth: usize| {
        let mut key = pb::SearchKey {
            key: Some(pb::search_key::Key::All(true)),
        };
        for _ in 0..depth {
            key = pb::SearchKey {
                key: Some(pb::search_key::Key::Not(Box::new(key))),
            };
        }
        pb::SearchRequest {
            account: ALICE.into(),
            mailbox: "INBOX".into(),
            key: Some(key),
        }
    };
    // Deeper than the store's own limit: refused by the store.
    let e = m.search(nested(50)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("nested too deeply"), "{}", e.message());
    // Deeper than protobuf's decoder allows: refused before it reaches the store.
    assert!(m.search(nested(150)).await.is_err());

    // Still serving.
    let ok = append(&mut m, ALICE, "INBOX", b"Subject: fine\r\n\r\n", "").await?;
    assert_eq!(ok.uid, 1);
    Ok(())
}

/// Longer than any time-out under test by far: reaching it means a call hung.
const NO_HANG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_quorum_fails_in_bounded_time() -> anyhow::Result<()> {
    let mut cluster = StoreCluster::start(
        bin(),
        3,
        &["--write-timeout-ms", "2000", "--read-timeout-ms", "2000"],
    )
    .await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // Logged in first: a password check is a linearizable read, which needs the quorum too.
    let mut m = cluster.messages(leader, ALICE).await?;
    for i in &others {
        cluster.kill(*i);
    }
    for survivor in [leader] {
        // Unavailable (not a client-side deadline) is the node's own 2 s time-out
        // answering; the outer bound only turns a hang into a failure, generous enough
        // that a loaded machine does not miss it.
        let e = tokio::time::timeout(
            NO_HANG,
            append(&mut m, ALICE, "INBOX", b"Subject: lost\r\n\r\n", "nq-1"),
        )
        .await?
        .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        let e = tokio::time::timeout(NO_HANG, list_all(&mut m, ALICE, "INBOX"))
            .await?
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::Unavailable,
            "a linearizable read without quorum: {e:?}"
        );
        // The node itself still answers.
        cluster.status(survivor).await?;
    }
    // Quorum back: the retried write with the same delivery id lands exactly once.
    cluster.spawn(others[0]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let mut m = cluster.messages(leader, ALICE).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        match append(&mut m, ALICE, "INBOX", b"Subject: lost\r\n\r\n", "nq-1").await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let again = append(&mut m, ALICE, "INBOX", b"Subject: lost\r\n\r\n", "nq-1").await?;
    assert!(again.duplicate);
    assert_eq!(first.uid, again.uid);
    let list = list_all(&mut m, ALICE, "INBOX").await?;
    assert_eq!(list.messages.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_or_garbage_raft_payload_is_refused() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    let mut raft =
        tern_proto::raft::v1::raft_client::RaftClient::new(cluster.channel(0, Role::Store).await?);
    let e = raft
        .append_entries(tern_proto::raft::v1::RaftPayload {
            data: vec![0xff; 64],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = raft
        .forward(tern_proto::raft::v1::ForwardRequest {
            command: b"garbage".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    cluster.status(0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_dropped_mid_body_stores_nothing() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let mut m = cluster.messages(0, ALICE).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = m.clone();
    let call = tokio::spawn(async move {
        client
            .append(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let header = pb::AppendHeader {
        account: ALICE.into(),
        mailbox: "INBOX".into(),
        size: 1000,
        ..Default::default()
    };
    tx.send(pb::AppendRequest {
        header: Some(header),
        chunk: b"Subject: half\r\n\r\nfirst part".to_vec(),
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client goes away without ending the stream: the connection's stream is reset.
    call.abort();
    let _ = call.await;
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = list_all(&mut m, ALICE, "INBOX").await?;
    assert!(
        list.messages.is_empty(),
        "nothing half-written was stored: {:?}",
        list.messages
    );
    // A complete append afterwards works.
    assert_eq!(
        append(&mut m, ALICE, "INBOX", b"Subject: whole\r\n\r\n", "")
            .await?
            .uid,
        1
    );
    Ok(())
}
