//! The store's port trusts no caller (issue 15): strangers are refused at the handshake, and
//! every method of `proto/` admits exactly the roles the table names, for every role.

use std::path::Path;

use tern_proto::store::v1 as pb;
use tern_testkit::mtls::{call_raw, plaintext_admitted, tls_admitted, Outcome};
use tern_testkit::StoreCluster;
use tern_trust::pki::{ensure_dev_pki, files};
use tern_trust::policy;
use tern_trust::Role;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tern-store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_anonymous_and_foreign_clients_are_refused_at_the_handshake() -> anyhow::Result<()>
{
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    let addr = cluster.nodes[0].addr.clone();
    let foreign = tempfile::tempdir()?;
    ensure_dev_pki(foreign.path(), "tern.test")?;

    // The probe can tell admission from refusal: the cluster's own certificate is admitted.
    let own = files(&cluster.tls_dir(), Role::Admin);
    assert!(tls_admitted(&addr, Some(&own)).await?, "own certificate");

    assert!(!plaintext_admitted(&addr).await?, "plaintext HTTP/2");
    assert!(
        !tls_admitted(&addr, None).await?,
        "TLS without a certificate"
    );
    let stranger = files(foreign.path(), Role::Admin);
    assert!(
        !tls_admitted(&addr, Some(&stranger)).await?,
        "a certificate of another CA, same trust domain and role"
    );
    // The node kept serving its own.
    cluster.status(0).await?;
    Ok(())
}

/// Every method in proto/ (from the compiled descriptors, not a list kept by hand) × every
/// role: allowed pairs reach the service, all others are PERMISSION_DENIED naming the method
/// and the role; a method the table does not name is denied to everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_admits_exactly_the_roles_of_the_table() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    let mut methods: Vec<&str> = tern_proto::METHODS.lines().collect();
    assert!(
        methods.len() > 50,
        "only {} methods compiled",
        methods.len()
    );
    // Stands for a method added to proto/ without a table entry.
    let unlisted = "tern.store.v1.Messages/AddedWithoutARule";
    methods.push(unlisted);
    let mut checked = 0;
    for role in Role::ALL {
        let channel = cluster.channel(0, role).await?;
        for method in &methods {
            let (service, name) = method.split_once('/').expect("Service/Method");
            let allowed = policy::allowed(service, name).is_some_and(|r| r.contains(&role));
            let outcome = call_raw(channel.clone(), &format!("/{method}")).await?;
            match (&outcome, allowed) {
                (Outcome::Reached, true) => {}
                // Past the table: the access role's mailbox calls then need a session token
                // (tested below), which this raw call does not carry.
                (Outcome::Denied(why), true)
                    if role == Role::Access && why.contains("session token") => {}
                (Outcome::Denied(why), false) => {
                    assert!(why.contains(method), "{method} as {role}: {why}");
                    if policy::allowed(service, name).is_some() {
                        assert!(why.contains(role.name()), "{method} as {role}: {why}");
                    }
                }
                _ => panic!("{method} as {role}: {outcome:?}, allowed by the table: {allowed}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, methods.len() * Role::ALL.len());
    // The node is still one healthy cluster after every role tried every method.
    let status = cluster.status(0).await?;
    assert_eq!(status.members.len(), 1, "{status:?}");
    Ok(())
}

/// Raft and cluster formation belong to store certificates of this CA: other roles are
/// denied, and a store certificate from another CA cannot even connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_and_init_are_closed_to_everyone_but_this_clusters_store_nodes() -> anyhow::Result<()>
{
    let cluster = StoreCluster::start(bin(), 1, &[]).await?;
    let addr = cluster.nodes[0].addr.clone();
    let init = pb::InitClusterRequest {
        members: vec![pb::Member {
            id: 9,
            addr: "127.0.0.1:9".into(),
            ..Default::default()
        }],
    };
    for role in [Role::Access, Role::Smtp, Role::Queue, Role::Backup] {
        let channel = cluster.channel(0, role).await?;
        let denied = pb::admin_client::AdminClient::new(channel.clone())
            .init(init.clone())
            .await
            .expect_err("Init refused");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{role}");
        let vote = call_raw(channel, "/tern.raft.v1.Raft/Vote").await?;
        assert!(
            matches!(vote, Outcome::Denied(_)),
            "Raft as {role}: {vote:?}"
        );
    }
    // A store node of another cluster (another CA) is refused at the handshake.
    let foreign = tempfile::tempdir()?;
    ensure_dev_pki(foreign.path(), "tern.test")?;
    let foreign_store = files(foreign.path(), Role::Store);
    assert!(!tls_admitted(&addr, Some(&foreign_store)).await?);
    let status = cluster.status(0).await?;
    assert_eq!(status.members.len(), 1, "{status:?}");
    Ok(())
}

/// Issue 15: an access node's mailbox calls are scoped to the account of a session token
/// that a password check returned, signed by the store and short-lived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_scope_an_access_nodes_calls_to_the_logged_in_account() -> anyhow::Result<()> {
    use pb::messages_client::MessagesClient;
    use tern_proto::client::StoreInterceptor;
    use tonic::service::interceptor::InterceptedService;
    use tonic::Code;

    const ALICE: &str = "alice@example.test";
    const BOB: &str = "bob@example.test";
    let cluster = StoreCluster::start(bin(), 1, &["--session-ttl-secs", "3"]).await?;
    tern_testkit::seed_users(&cluster, 0, &["alice", "bob"]).await?;
    let list = |account: &str| pb::ListMessagesRequest {
        account: account.into(),
        mailbox: "INBOX".into(),
        uids: None,
        changed_since: 0,
    };
    let access = cluster.channel(0, Role::Access).await?;
    let with_token = |token: &str| {
        MessagesClient::new(InterceptedService::new(
            access.clone(),
            StoreInterceptor::with_token(token),
        ))
    };

    // No token: refused, though the table admits the access role.
    let e = MessagesClient::new(access.clone())
        .list(list(ALICE))
        .await
        .expect_err("no token");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("session token"), "{}", e.message());

    // Bob's message, appended in Bob's session.
    let mut bob = cluster.messages(0, BOB).await?;
    let uid = tern_testkit::append(&mut bob, BOB, "INBOX", b"Subject: bob's\r\n\r\nx\r\n", "")
        .await?
        .uid;

    // Alice's token: her mailbox, not Bob's, whatever the call.
    let alice_token = cluster.session_token(0, ALICE, "pw-alice").await?;
    let mut alice = with_token(&alice_token);
    alice.list(list(ALICE)).await?;
    let refused = [
        alice.list(list(BOB)).await.map(|_| ()),
        tern_testkit::fetch(&mut alice, BOB, "INBOX", uid)
            .await
            .map(|_| ()),
        tern_testkit::append(&mut alice, BOB, "INBOX", b"x", "")
            .await
            .map(|_| ()),
        pb::mailboxes_client::MailboxesClient::new(InterceptedService::new(
            access.clone(),
            StoreInterceptor::with_token(&alice_token),
        ))
        .list(pb::ListMailboxesRequest {
            account: BOB.into(),
        })
        .await
        .map(|_| ()),
        pb::locks_client::LocksClient::new(InterceptedService::new(
            access.clone(),
            StoreInterceptor::with_token(&alice_token),
        ))
        .acquire(pb::LockRequest {
            name: format!("pop3/{BOB}"),
            owner: "x".into(),
            ttl_ms: 1000,
        })
        .await
        .map(|_| ()),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        let e = r.expect_err("another account's call");
        assert_eq!(e.code(), Code::PermissionDenied, "call {i}: {e:?}");
        assert!(e.message().contains("another account"), "call {i}: {e:?}");
    }

    // A forged token: Alice's, with Bob's address put in.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let forged = alice_token.replace(&hex(ALICE), &hex(BOB));
    assert_ne!(forged, alice_token);
    let e = with_token(&forged)
        .list(list(BOB))
        .await
        .expect_err("forged");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // A wrong password gets no token; the smtp role's password check gets none either.
    let mut dir = pb::directory_client::DirectoryClient::new(access.clone());
    let wrong = dir
        .check_password(pb::CheckPasswordRequest {
            address: ALICE.into(),
            password: "wrong".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!wrong.ok && wrong.session.is_none());
    let smtp = pb::directory_client::DirectoryClient::new(cluster.channel(0, Role::Smtp).await?)
        .check_password(pb::CheckPasswordRequest {
            address: ALICE.into(),
            password: "pw-alice".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(smtp.ok && smtp.session.is_none(), "{:?}", smtp.user);

    // Renewal gives a fresh token for the same account while the old one is valid.
    let renewed = dir
        .renew_session(pb::RenewSessionRequest {
            token: alice_token.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(renewed.account, ALICE);
    with_token(&renewed.token).list(list(ALICE)).await?;

    // Expired (the TTL is 3 s here): refused, and cannot be renewed.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let e = alice.list(list(ALICE)).await.expect_err("expired");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("expired"), "{}", e.message());
    let e = dir
        .renew_session(pb::RenewSessionRequest { token: alice_token })
        .await
        .expect_err("an expired token is not renewed");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    Ok(())
}
