//! The data model through the gRPC API of one real node: directory and recipient
//! resolution, the mailbox hierarchy, messages (ranges, flags, copy, move, search), the
//! change feed, and queue leases.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use tern_proto::store::v1 as pb;
use tern_testkit::{append, fetch, seed_users, StoreCluster};
use tern_trust::Role;
use tonic::Code;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tern-store"))
}

fn uids(first: u32, last: u32) -> Option<pb::UidSet> {
    Some(pb::UidSet {
        ranges: vec![pb::UidRange { first, last }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_resolution_and_passwords() -> anyhow::Result<()> {
    use pb::resolve_response::Kind;
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    seed_users(&cluster, 0, &["alice", "bob"]).await?;
    let mut d = cluster.directory(0).await?;
    d.add_alias(pb::AddAliasRequest {
        address: "team@example.test".into(),
        targets: vec![ALICE.into(), "ext@remote.test".into()],
    })
    .await?;
    d.add_list_members(pb::AddListMembersRequest {
        address: "all@example.test".into(),
        members: vec![ALICE.into(), BOB.into()],
    })
    .await?;
    let dr = d.clone();
    let resolve = move |a: &str| {
        let mut d = dr.clone();
        let a = a.to_string();
        async move {
            d.resolve(pb::ResolveRequest { address: a })
                .await
                .map(|r| r.into_inner())
        }
    };
    assert_eq!(resolve("Alice@Example.TEST").await?.kind(), Kind::LocalUser);
    let team = resolve("team@example.test").await?;
    assert_eq!((team.kind(), team.targets.len()), (Kind::Alias, 2));
    assert_eq!(resolve("all@example.test").await?.kind(), Kind::List);
    assert_eq!(resolve("nobody@example.test").await?.kind(), Kind::Unknown);
    assert_eq!(resolve("x@elsewhere.test").await?.kind(), Kind::Remote);

    // Passwords are checked by SMTP and access nodes, not operators.
    let dc = pb::directory_client::DirectoryClient::new(cluster.channel(0, Role::Access).await?);
    let check = move |a: &str, p: &str| {
        let mut d = dc.clone();
        let req = pb::CheckPasswordRequest {
            address: a.into(),
            password: p.into(),
            ..Default::default()
        };
        async move { d.check_password(req).await.map(|r| r.into_inner().ok) }
    };
    // How many checks were decided by an argon2id run and by the credential cache.
    let metrics = cluster.nodes[0].metrics.clone();
    let counts = move || {
        let metrics = metrics.clone();
        async move {
            let (_, body) = tern_testkit::platform::http_get(&metrics, "/metrics").await?;
            let count = |how: &str| {
                let wanted = format!("tern_store_password_checks_total{{how=\"{how}\"}} ");
                body.lines()
                    .find_map(|l| l.strip_prefix(&wanted))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            anyhow::Ok((count("argon2"), count("cache")))
        }
    };
    let before = counts().await?;
    assert!(check(ALICE, "pw-alice").await?);
    assert!(!check(ALICE, "wrong").await?);
    assert!(!check("nobody@example.test", "pw-alice").await?);
    // A login again is remembered: no argon2id run. A wrong password never is.
    assert!(check(ALICE, "pw-alice").await?);
    assert!(!check(ALICE, "wrong").await?);
    let after = counts().await?;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (4, 1),
        "(argon2, cache)"
    );
    d.set_password(pb::SetPasswordRequest {
        address: ALICE.into(),
        password: "new".into(),
    })
    .await?;
    // The old password's remembered success no longer counts: the stored hash changed.
    assert!(!check(ALICE, "pw-alice").await?);
    assert!(check(ALICE, "new").await?);
    assert!(check(ALICE, "new").await?);
    let last = counts().await?;
    assert_eq!(
        (last.0 - after.0, last.1 - after.1),
        (2, 1),
        "(argon2, cache)"
    );
    let e = d
        .remove_domain(pb::RemoveDomainRequest {
            name: "example.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let users = d
        .list_users(pb::ListUsersRequest {
            domain: "example.test".into(),
        })
        .await?
        .into_inner()
        .users;
    assert_eq!(users.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_messages_search_and_the_change_feed() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let mut b = cluster.mailboxes(0, ALICE).await?;
    let mut m = cluster.messages(0, ALICE).await?;

    let names: Vec<(String, String)> = b
        .list(pb::ListMailboxesRequest {
            account: ALICE.into(),
        })
        .await?
        .into_inner()
        .mailboxes
        .into_iter()
        .map(|mb| (mb.name, mb.special_use))
        .collect();
    for expected in [
        ("INBOX", ""),
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
    ] {
        assert!(
            names.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {names:?}"
        );
    }

    let mut feed = pb::watch_client::WatchClient::new(cluster.session(0, ALICE).await?)
        .watch(pb::WatchRequest {
            account: ALICE.into(),
            mailbox: "INBOX".into(),
            from_modseq: 0,
        })
        .await?
        .into_inner();

    let m1 = b"From: =?UTF-8?Q?J=C3=B6rg?= <j@example.test>\r\nSubject: Quarterly report\r\nDate: Tue, 03 Jan 2023 10:00:00 +0000\r\n\r\nNumbers inside.\r\n";
    let m2 = b"From: bob@example.test\r\nSubject: lunch\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fmw6kgYXQgbm9vbg==\r\n";
    let a1 = append(&mut m, ALICE, "inbox", m1, "").await?;
    let a2 = append(&mut m, ALICE, "INBOX", m2, "").await?;
    assert_eq!((a1.uid, a2.uid), (1, 2));

    // Byte ranges.
    let mut stream = m
        .fetch(pb::FetchRequest {
            account: ALICE.into(),
            mailbox: "INBOX".into(),
            uid: 1,
            offset: 6,
            length: 5,
            uid_validity: 0,
        })
        .await?
        .into_inner();
    let first = stream.next().await.expect("a chunk")?;
    assert_eq!(
        (first.data.as_slice(), first.total_size),
        (&m1[6..11], m1.len() as u64)
    );
    // With the UIDVALIDITY the caller knows: served (from local state); a stale one refused.
    let fetch_with = |uid_validity: u32| pb::FetchRequest {
        account: ALICE.into(),
        mailbox: "INBOX".into(),
        uid: 2,
        offset: 0,
        length: 0,
        uid_validity,
    };
    let right = a2.uid_validity;
    let mut stream = m.fetch(fetch_with(right)).await?.into_inner();
    assert_eq!(stream.next().await.expect("a chunk")?.data, m2.to_vec());
    let stale = m.fetch(fetch_with(right.wrapping_add(1))).await;
    assert_eq!(
        stale.err().map(|s| s.code()),
        Some(tonic::Code::FailedPrecondition)
    );
    let mut gone = fetch_with(right);
    gone.uid = 99;
    assert_eq!(
        m.fetch(gone).await.err().map(|s| s.code()),
        Some(tonic::Code::NotFound)
    );

    // Search in the store: decoded headers and bodies, flags, boolean structure.
    let mc = m.clone();
    let search = move |key: pb::search_key::Key| {
        let mut m = mc.clone();
        async move {
            m.search(pb::SearchRequest {
                account: ALICE.into(),
                mailbox: "INBOX".into(),
                key: Some(pb::SearchKey { key: Some(key) }),
            })
            .await
            .map(|r| r.into_inner().uids)
        }
    };
    use pb::search_key::Key;
    assert_eq!(
        search(Key::Header(pb::HeaderMatch {
            name: "from".into(),
            value: "jörg".into()
        }))
        .await?,
        vec![1]
    );
    assert_eq!(search(Key::Body("café".into())).await?, vec![2]);
    assert_eq!(search(Key::Text("quarterly".into())).await?, vec![1]);
    m.store_flags(pb::StoreFlagsRequest {
        account: ALICE.into(),
        mailbox: "INBOX".into(),
        uids: uids(2, 2),
        mode: pb::store_flags_request::Mode::Add as i32,
        flags: vec!["\\Seen".into(), "$Lunch".into()],
        unchanged_since: 0,
    })
    .await?;
    assert_eq!(search(Key::FlagSet("\\Seen".into())).await?, vec![2]);
    assert_eq!(
        search(Key::Not(Box::new(pb::SearchKey {
            key: Some(Key::FlagSet("$lunch".into()))
        })))
        .await?,
        vec![1]
    );

    // Copy and move.
    let c = m
        .copy(pb::CopyRequest {
            account: ALICE.into(),
            mailbox: "INBOX".into(),
            uids: uids(1, 0),
            target: "Trash".into(),
        })
        .await?
        .into_inner();
    assert_eq!((c.source_uids, c.target_uids), (vec![1, 2], vec![1, 2]));
    let mv = m
        .r#move(pb::CopyRequest {
            account: ALICE.into(),
            mailbox: "INBOX".into(),
            uids: uids(1, 1),
            target: "Sent".into(),
        })
        .await?
        .into_inner();
    assert_eq!(mv.target_uids, vec![1]);
    assert_eq!(fetch(&mut m, ALICE, "Sent", 1).await?, m1.to_vec());
    let e = m
        .copy(pb::CopyRequest {
            account: ALICE.into(),
            mailbox: "INBOX".into(),
            uids: uids(1, 0),
            target: "Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The change feed saw it all, in modseq order.
    let mut kinds = Vec::new();
    let mut last = 0;
    while kinds.len() < 5 {
        let c = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await?
            .expect("feed open")?;
        assert!(c.modseq > last);
        last = c.modseq;
        kinds.push(c.kind());
    }
    use pb::change::Kind as C;
    assert_eq!(
        &kinds,
        &[
            C::MailboxCreated,
            C::MessageAdded,
            C::MessageAdded,
            C::FlagsChanged,
            C::Expunged
        ]
    );

    // ...and is resumable from a modseq.
    let mut resumed = pb::watch_client::WatchClient::new(cluster.session(0, ALICE).await?)
        .watch(pb::WatchRequest {
            account: ALICE.into(),
            mailbox: String::new(),
            from_modseq: last - 1,
        })
        .await?
        .into_inner();
    let again = tokio::time::timeout(Duration::from_secs(5), resumed.next())
        .await?
        .expect("feed open")?;
    assert_eq!(again.modseq, last);

    // Rename INBOX: its messages move, INBOX stays.
    let renamed = b
        .rename(pb::RenameMailboxRequest {
            account: ALICE.into(),
            from: "INBOX".into(),
            to: "Old".into(),
        })
        .await?
        .into_inner();
    assert_eq!(renamed.messages, 1);
    let inbox = b
        .get(pb::GetMailboxRequest {
            account: ALICE.into(),
            name: "INBOX".into(),
        })
        .await?
        .into_inner();
    assert_eq!(inbox.messages, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_entries_are_leased_renewed_and_completed() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    let mut q = pb::queue_client::QueueClient::new(cluster.channel(0, Role::Queue).await?);
    let header = pb::EnqueueHeader {
        sender: "a@example.test".into(),
        recipients: vec![pb::QueueRecipient {
            address: "r@remote.test".into(),
            ..Default::default()
        }],
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        request_id: "smtp-1".into(),
        size: b"Subject: q\r\n\r\n".len() as u64,
        ..Default::default()
    };
    let req = || {
        futures::stream::iter(vec![pb::EnqueueRequest {
            header: Some(header.clone()),
            chunk: b"Subject: q\r\n\r\n".to_vec().into(),
        }])
    };
    let e1 = q.enqueue(req()).await?.into_inner();
    let e2 = q.enqueue(req()).await?.into_inner();
    assert_eq!(e1.id, e2.id, "enqueue is idempotent per request id");
    let leased = q
        .lease(pb::LeaseRequest {
            owner: "w1".into(),
            max_entries: 10,
            lease_ms: 60_000,
        })
        .await?
        .into_inner()
        .entries;
    assert_eq!(leased.len(), 1);
    assert!(q
        .lease(pb::LeaseRequest {
            owner: "w2".into(),
            max_entries: 10,
            lease_ms: 60_000
        })
        .await?
        .into_inner()
        .entries
        .is_empty());
    let e = q
        .renew(pb::RenewLeaseRequest {
            id: e1.id.clone(),
            owner: "w2".into(),
            lease_ms: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let deferred = q
        .update(pb::UpdateEntryRequest {
            id: e1.id.clone(),
            owner: "w1".into(),
            recipients: vec![pb::QueueRecipient {
                address: "r@remote.test".into(),
                state: pb::queue_recipient::State::Deferred as i32,
                last_reply: "451 4.3.0 try later".into(),
                attempts: 1,
                ..Default::default()
            }],
            events: vec![pb::QueueEvent {
                at: 1,
                kind: "deferred".into(),
                detail: "451".into(),
            }],
            next_attempt_at: 0,
            release: true,
            complete: false,
        })
        .await?
        .into_inner();
    assert_eq!(deferred.attempts, 1);
    let shown = q
        .get(pb::QueueIdRequest { id: e1.id.clone() })
        .await?
        .into_inner();
    assert_eq!(
        shown
            .events
            .iter()
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
        vec!["received", "deferred"]
    );
    assert_eq!(shown.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    let again = q
        .lease(pb::LeaseRequest {
            owner: "w2".into(),
            max_entries: 10,
            lease_ms: 60_000,
        })
        .await?
        .into_inner()
        .entries;
    assert_eq!(again.len(), 1, "released entry is due again");
    // Deleting an entry is an operator's action.
    let mut admin_q = pb::queue_client::QueueClient::new(cluster.channel(0, Role::Admin).await?);
    admin_q
        .delete(pb::QueueIdRequest { id: e1.id.clone() })
        .await?;
    assert_eq!(
        q.get(pb::QueueIdRequest { id: e1.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildrop_locks_through_the_api() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    seed_users(&cluster, 0, &["alice"]).await?;
    let mut l = pb::locks_client::LocksClient::new(cluster.session(0, ALICE).await?);
    let req = |owner: &str, ttl_ms: u64| pb::LockRequest {
        name: "pop3/alice@example.test".into(),
        owner: owner.into(),
        ttl_ms,
    };
    assert!(l.acquire(req("node-a/1", 300)).await?.into_inner().held);
    let refused = l.acquire(req("node-b/7", 300)).await?.into_inner();
    assert!(!refused.held);
    assert_eq!(refused.holder, "node-a/1");
    assert!(l.renew(req("node-a/1", 300)).await?.into_inner().held);
    // The holder dies (stops renewing): the lock is free after its TTL.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(l.acquire(req("node-b/7", 300)).await?.into_inner().held);
    assert!(!l.renew(req("node-a/1", 300)).await?.into_inner().held);
    l.release(req("node-b/7", 0)).await?;
    assert!(l.acquire(req("node-c/1", 300)).await?.into_inner().held);
    let e = l
        .acquire(pb::LockRequest {
            name: String::new(),
            owner: "x".into(),
            ttl_ms: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    Ok(())
}
