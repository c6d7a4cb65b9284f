//! A cluster of real tern-store processes on loopback: replication, linearizable reads
//! through any node, failover under load, catch-up through the log and through a snapshot,
//! and a full restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_proto::client::StoreInterceptor;
use tern_proto::store::v1 as pb;
use tern_testkit::{append, fetch, list_all, seed_users, StoreCluster};
use tern_trust::Role;
use tonic::service::interceptor::InterceptedService;

const ALICE: &str = "alice@example.test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tern-store"))
}

fn followers(cluster: &StoreCluster, leader: usize) -> Vec<usize> {
    (0..cluster.nodes.len())
        .filter(|i| *i != leader && cluster.is_running(*i))
        .collect()
}

/// (uid, blob, flags) of every message in a mailbox, as node `i` sees it.
async fn listing(
    cluster: &StoreCluster,
    i: usize,
    account: &str,
    mailbox: &str,
) -> anyhow::Result<(pb::Mailbox, Vec<(u32, String, Vec<String>)>)> {
    let mut m = cluster.messages(i, account).await?;
    let r = list_all(&mut m, account, mailbox).await?;
    let mut rows: Vec<_> = r
        .messages
        .into_iter()
        .map(|m| (m.uid, m.blob, m.flags))
        .collect();
    rows.sort();
    Ok((r.mailbox.unwrap_or_default(), rows))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_a_follower_is_read_linearizably_from_another_node() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 3, &[]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let f = followers(&cluster, leader);
    let (writer, reader) = (f[0], f[1]);
    seed_users(&cluster, writer, &["alice"]).await?;
    let mut w = cluster.messages(writer, ALICE).await?;
    let mut r = cluster.messages(reader, ALICE).await?;
    for n in 0..20 {
        let body = format!("Subject: n{n}\r\n\r\nbody {n}\r\n");
        let ok = append(&mut w, ALICE, "INBOX", body.as_bytes(), "").await?;
        // Immediately, on another follower: the write must be visible (read-index).
        let got = fetch(&mut r, ALICE, "INBOX", ok.uid).await?;
        assert_eq!(
            got,
            body.as_bytes(),
            "read after write #{n} through node {}",
            cluster.nodes[reader].id
        );
    }
    let (mb, rows) = listing(&cluster, reader, ALICE, "INBOX").await?;
    assert_eq!((mb.messages, rows.len()), (20, 20));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_concurrent_appends_loses_and_duplicates_nothing(
) -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 3, &["--write-timeout-ms", "3000"]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let tls = cluster.client_tls(Role::Access)?;
    let token = cluster.session_token(0, ALICE, "pw-alice").await?;
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 125;
    let acked: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let errors = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let endpoints = endpoints.clone();
        let tls = tls.clone();
        let token = token.clone();
        let acked = acked.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut node = c % endpoints.len();
            for i in 0..PER_CLIENT {
                let id = format!("c{c}-m{i}");
                let body = format!("Subject: {id}\r\n\r\n{}\r\n", "x".repeat(4000));
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let attempt = async {
                        let ch = tern_proto::tls::endpoint(&endpoints[node])?
                            .connect_timeout(Duration::from_millis(500))
                            .timeout(Duration::from_secs(5))
                            .connect_with_connector(tls.connector(Role::Store))
                            .await?;
                        let mut m = pb::messages_client::MessagesClient::new(
                            InterceptedService::new(ch, StoreInterceptor::with_token(&token)),
                        );
                        anyhow::Ok(append(&mut m, ALICE, "INBOX", body.as_bytes(), &id).await?)
                    };
                    match attempt.await {
                        Ok(r) => {
                            acked.lock().unwrap().insert(id.clone(), r.uid);
                            break;
                        }
                        Err(_) => {
                            *errors.lock().unwrap() += 1;
                            assert!(
                                Instant::now() < deadline,
                                "append {id} kept failing for 60 s"
                            );
                            node = (node + 1) % endpoints.len();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }));
    }
    // Kill the leader once a quarter of the appends are in.
    let mut cluster = cluster;
    while acked.lock().unwrap().len() < CLIENTS * PER_CLIENT / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let old_leader = cluster.wait_leader(Duration::from_secs(5)).await?;
    cluster.kill(old_leader);
    for t in tasks {
        t.await?;
    }
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    assert_ne!(new_leader, old_leader);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), CLIENTS * PER_CLIENT);
    for i in followers(&cluster, usize::MAX) {
        let (mb, rows) = listing(&cluster, i, ALICE, "INBOX").await?;
        assert_eq!(
            rows.len(),
            CLIENTS * PER_CLIENT,
            "node {} holds every message exactly once",
            cluster.nodes[i].id
        );
        assert_eq!(mb.messages as usize, rows.len());
        let uids: BTreeSet<u32> = rows.iter().map(|r| r.0).collect();
        let acked_uids: BTreeSet<u32> = acked.values().copied().collect();
        assert_eq!(
            uids, acked_uids,
            "the UIDs acknowledged are the UIDs stored"
        );
    }
    // Every acknowledged append is readable with the right content.
    let mut m = cluster.messages(new_leader, ALICE).await?;
    for (id, uid) in acked.iter().step_by(25) {
        let body = fetch(&mut m, ALICE, "INBOX", *uid).await?;
        assert!(
            body.starts_with(format!("Subject: {id}\r\n").as_bytes()),
            "uid {uid} holds {id}"
        );
    }
    eprintln!(
        "{} append attempts failed and were retried",
        errors.lock().unwrap()
    );
    Ok(())
}

async fn append_many(
    cluster: &StoreCluster,
    node: usize,
    tag: &str,
    n: usize,
) -> anyhow::Result<()> {
    let mut m = cluster.messages(node, ALICE).await?;
    for i in 0..n {
        append(
            &mut m,
            ALICE,
            "INBOX",
            format!("Subject: {tag}{i}\r\n\r\nx\r\n").as_bytes(),
            &format!("{tag}{i}"),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_catches_up_through_the_log_and_through_a_snapshot() -> anyhow::Result<()>
{
    let mut cluster = StoreCluster::start(bin(), 3, &[]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let lagger = followers(&cluster, leader)[0];

    // 1. Through the log.
    cluster.stop(lagger);
    append_many(&cluster, leader, "log-", 500).await?;
    cluster.spawn(lagger).await?;
    let target = cluster.status(leader).await?.last_applied;
    cluster
        .wait_applied(lagger, target, Duration::from_secs(60))
        .await?;
    assert_eq!(
        listing(&cluster, lagger, ALICE, "INBOX").await?,
        listing(&cluster, leader, ALICE, "INBOX").await?
    );
    assert_eq!(
        cluster.status(lagger).await?.snapshot_index,
        0,
        "caught up from the log alone"
    );

    // 2. Through a snapshot: the leader compacts its log past what the lagger has.
    cluster.kill(lagger);
    append_many(&cluster, leader, "snap-", 500).await?;
    let compacted = cluster
        .admin(leader)
        .await?
        .compact(pb::CompactRequest {})
        .await?
        .into_inner();
    assert!(
        compacted.snapshot_index > target,
        "snapshot covers the new writes"
    );
    let mut purged = cluster.status(leader).await?.purged_index;
    let deadline = Instant::now() + Duration::from_secs(20);
    while purged <= target && Instant::now() < deadline {
        // The leader postpones a purge while a replication task (here: retrying the dead
        // node) has that range in flight; asking again lets it go through.
        tokio::time::sleep(Duration::from_millis(200)).await;
        purged = cluster
            .admin(leader)
            .await?
            .compact(pb::CompactRequest {})
            .await?
            .into_inner()
            .purged_index;
    }
    assert!(
        purged > target,
        "the leader purged entries the lagger never saw ({purged} <= {target})"
    );
    cluster.spawn(lagger).await?;
    let target = cluster.status(leader).await?.last_applied;
    cluster
        .wait_applied(lagger, target, Duration::from_secs(60))
        .await?;
    let st = cluster.status(lagger).await?;
    assert!(st.snapshot_index > 0, "the lagger installed a snapshot");
    assert_eq!(
        listing(&cluster, lagger, ALICE, "INBOX").await?,
        listing(&cluster, leader, ALICE, "INBOX").await?
    );
    let (mb, rows) = listing(&cluster, lagger, ALICE, "INBOX").await?;
    assert_eq!((mb.messages, rows.len()), (1000, 1000));
    // And the directory came with it.
    let mut d =
        pb::directory_client::DirectoryClient::new(cluster.channel(lagger, Role::Access).await?);
    assert!(
        d.check_password(pb::CheckPasswordRequest {
            address: ALICE.into(),
            password: "pw-alice".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .ok
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_cluster_restarts_with_everything_in_place() -> anyhow::Result<()> {
    let mut cluster = StoreCluster::start(bin(), 3, &[]).await?;
    seed_users(&cluster, 0, &["alice", "bob"]).await?;
    append_many(&cluster, 0, "r-", 50).await?;
    let mut mbx = cluster.mailboxes(0, ALICE).await?;
    mbx.create(pb::CreateMailboxRequest {
        account: ALICE.into(),
        name: "Archive/2026".into(),
        special_use: String::new(),
    })
    .await?;
    let before_boxes = mbx
        .list(pb::ListMailboxesRequest {
            account: ALICE.into(),
        })
        .await?
        .into_inner();
    let before = listing(&cluster, 0, ALICE, "INBOX").await?;
    for i in 0..3 {
        cluster.stop(i);
    }
    for i in 0..3 {
        cluster.spawn(i).await?;
    }
    cluster.wait_leader(Duration::from_secs(30)).await?;
    for i in 0..3 {
        assert_eq!(
            listing(&cluster, i, ALICE, "INBOX").await?,
            before,
            "node {} after restart",
            i + 1
        );
        let boxes = cluster
            .mailboxes(i, ALICE)
            .await?
            .list(pb::ListMailboxesRequest {
                account: ALICE.into(),
            })
            .await?
            .into_inner();
        let summary = |l: &pb::ListMailboxesResponse| {
            l.mailboxes
                .iter()
                .map(|m| (m.name.clone(), m.uid_validity, m.uid_next))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(&boxes),
            summary(&before_boxes),
            "UIDVALIDITY and UIDNEXT unchanged"
        );
    }
    // Writes keep working and UIDs continue where they stopped.
    let mut m = cluster.messages(1, ALICE).await?;
    let next = append(&mut m, ALICE, "INBOX", b"Subject: after\r\n\r\n", "").await?;
    assert_eq!(next.uid, 51);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_recipients_share_one_blob_until_the_last_expunge() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    let names: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    seed_users(&cluster, 0, &refs).await?;
    // Delivery and blob reads are the queue's; expunge is an access node's, in each user's
    // session.
    let mut q = pb::messages_client::MessagesClient::new(cluster.channel(0, Role::Queue).await?);
    let targets = names
        .iter()
        .map(|n| pb::DeliveryTarget {
            account: format!("{n}@example.test"),
            mailbox: String::new(),
            delivery_id: format!("Q1/{n}"),
            flags: vec![],
        })
        .collect();
    let body = b"Subject: to all

hello
"
    .to_vec();
    let header = pb::DeliverHeader {
        targets,
        internal_date: 0,
        size: body.len() as u64,
        blob: String::new(),
    };
    let resp = q
        .deliver(futures::stream::iter(vec![pb::DeliverRequest {
            header: Some(header),
            chunk: body,
        }]))
        .await?
        .into_inner();
    assert!(resp.results.iter().all(|r| r.error.is_empty()));
    let mut blobs = BTreeSet::new();
    for n in &names {
        let (_, rows) = listing(&cluster, 0, &format!("{n}@example.test"), "INBOX").await?;
        blobs.extend(rows.into_iter().map(|r| r.1));
    }
    assert_eq!(
        blobs,
        BTreeSet::from([resp.blob.clone()]),
        "one blob for 100 mailboxes"
    );
    let fetch_blob = |m: &mut pb::messages_client::MessagesClient<tonic::transport::Channel>| {
        let req = pb::FetchBlobRequest {
            blob: resp.blob.clone(),
            offset: 0,
            length: 0,
        };
        let mut m = m.clone();
        async move { m.fetch_blob(req).await.map(|_| ()) }
    };
    for (k, n) in names.iter().enumerate() {
        assert!(
            fetch_blob(&mut q).await.is_ok(),
            "blob alive with {} references",
            100 - k
        );
        let account = format!("{n}@example.test");
        let mut m = cluster.messages(0, &account).await?;
        m.expunge(pb::ExpungeRequest {
            account,
            mailbox: "INBOX".into(),
            uids: None,
            force: true,
        })
        .await?;
    }
    let gone = fetch_blob(&mut q)
        .await
        .expect_err("blob removed with its last reference");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_joins_as_a_learner_is_promoted_and_can_be_removed() -> anyhow::Result<()> {
    let mut cluster = StoreCluster::start(bin(), 3, &[]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    append_many(&cluster, 0, "j-", 100).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let follower = followers(&cluster, leader)[0];
    let new = cluster.add_process().await?;
    let new_id = cluster.nodes[new].id;
    // Asked through a follower: forwarded to the leader, which adds a learner, lets it catch
    // up, then promotes it.
    let status = cluster
        .admin(follower)
        .await?
        .add_node(pb::AddNodeRequest {
            id: new_id,
            addr: cluster.nodes[new].addr.clone(),
            learner_only: false,
        })
        .await?
        .into_inner();
    let member = status
        .members
        .iter()
        .find(|m| m.id == new_id)
        .expect("new member listed");
    assert!(member.voter, "promoted to voter: {member:?}");
    assert_eq!(status.members.len(), 4);
    let target = cluster.status(leader).await?.last_applied;
    cluster
        .wait_applied(new, target, Duration::from_secs(30))
        .await?;
    assert_eq!(
        listing(&cluster, new, ALICE, "INBOX").await?,
        listing(&cluster, leader, ALICE, "INBOX").await?
    );

    let status = cluster
        .admin(new)
        .await?
        .remove_node(pb::RemoveNodeRequest { id: new_id })
        .await?
        .into_inner();
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.id != new_id));
    let e = cluster
        .admin(leader)
        .await?
        .remove_node(pb::RemoveNodeRequest { id: 99 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // The three remaining nodes still commit writes.
    append_many(&cluster, leader, "after-", 10).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_bootstrap_from_an_initial_member_list_once() -> anyhow::Result<()> {
    let mut cluster = StoreCluster::start_bootstrapped(bin(), 3, &[]).await?;
    // The bootstrap's membership reaches node 1 through the log: wait until it is applied.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = cluster.status(1).await?;
        if status.members.len() == 3 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter));
    seed_users(&cluster, 2, &["alice"]).await?;
    let term = status.term;
    // Restarted with the same flags, the nodes keep their state: no second bootstrap.
    for i in 0..3 {
        cluster.stop(i);
    }
    for i in 0..3 {
        cluster.spawn(i).await?;
    }
    cluster.wait_leader(Duration::from_secs(30)).await?;
    let after = cluster.status(0).await?;
    assert!(after.term >= term);
    let mut d = cluster.directory(0).await?;
    let users = d
        .list_users(pb::ListUsersRequest {
            domain: String::new(),
        })
        .await?
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    Ok(())
}

/// Issue 16, item 7: recipient lookups and password checks are never answered from a
/// follower's stale copy. The follower is cut off from its peers' traffic (a blackholing
/// proxy on its advertised address: no appends, no heartbeats reach it) and asked about a
/// domain and a user added after the cut: it answers from current state or fails
/// UNAVAILABLE, and never calls the domain remote nor the user unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_never_answers_a_lookup_from_stale_state() -> anyhow::Result<()> {
    use pb::directory_client::DirectoryClient;
    use pb::resolve_response::Kind;
    use tern_testkit::faultproxy::Mode;

    let cluster = StoreCluster::start_proxied(bin(), 3, &["--read-timeout-ms", "2000"]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let follower = followers(&cluster, leader)[0];
    let mut admin = DirectoryClient::new(cluster.channel(leader, Role::Admin).await?);
    let mut smtp = DirectoryClient::new(cluster.channel(follower, Role::Smtp).await?);
    let resolve = |address: &str| pb::ResolveRequest {
        address: address.into(),
    };
    // Before the cut the follower answers, and through its proxy it is part of the cluster.
    let before = smtp
        .resolve(resolve("x@never-added.test"))
        .await?
        .into_inner();
    assert_eq!(before.kind(), Kind::Remote);

    cluster.proxies[follower].set_mode(Mode::Blackhole);
    admin
        .add_domain(pb::AddDomainRequest {
            name: "after-the-cut.test".into(),
        })
        .await?;
    admin
        .add_user(pb::AddUserRequest {
            address: "new@after-the-cut.test".into(),
            password: "pw-new".into(),
            quota_bytes: 0,
        })
        .await?;
    for address in ["new@after-the-cut.test", "nobody@after-the-cut.test"] {
        match smtp.resolve(resolve(address)).await {
            Ok(r) => {
                let kind = r.into_inner().kind();
                assert_ne!(
                    kind,
                    Kind::Remote,
                    "{address}: a hosted domain called remote"
                );
                if address.starts_with("new@") {
                    assert_eq!(kind, Kind::LocalUser, "{address}");
                }
            }
            Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{address}: {s:?}"),
        }
    }
    match smtp
        .check_password(pb::CheckPasswordRequest {
            address: "new@after-the-cut.test".into(),
            password: "pw-new".into(),
            ..Default::default()
        })
        .await
    {
        Ok(r) => assert!(
            r.into_inner().ok,
            "a new user's password refused from stale state"
        ),
        Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
    }

    // Healed, the follower catches up and answers from current state.
    cluster.proxies[follower].set_mode(Mode::Pass);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match smtp.resolve(resolve("new@after-the-cut.test")).await {
            Ok(r) => {
                assert_eq!(r.into_inner().kind(), Kind::LocalUser);
                break;
            }
            Err(s) if Instant::now() < deadline => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => anyhow::bail!("the healed follower still fails: {s:?}"),
        }
    }
    Ok(())
}
