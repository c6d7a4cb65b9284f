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
