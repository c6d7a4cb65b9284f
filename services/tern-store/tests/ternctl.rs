//! ternctl against a real cluster: the operator's commands, `--json` output, and clear
//! errors with a nonzero exit.
//!
//! ternctl is another package's binary; `cargo xtask test` builds the whole workspace before
//! running tests, so it sits next to tern-store in the target directory.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use tern_testkit::StoreCluster;

fn store_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tern-store"))
}

/// Runs ternctl against `endpoint` with the admin certificate of `cluster`'s development
/// PKI (the store port is mutual TLS only). ternctl is another package's binary: cargo
/// builds it for `--workspace` runs, and the test kit refuses a missing or stale one.
fn ternctl(cluster: &StoreCluster, endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = cluster
        .ternctl()
        .expect("ternctl built")
        .args(args)
        .arg("--endpoint")
        .arg(endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ternctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("ternctl output")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ternctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_through_a_follower() -> anyhow::Result<()> {
    let cluster = StoreCluster::start(store_bin(), 3, &[]).await?;
    let leader = cluster
        .wait_leader(std::time::Duration::from_secs(10))
        .await?;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let ep = cluster.endpoint(follower);
    let ep = ep.as_str();
    let tls = &cluster;

    let status: serde_json::Value = serde_json::from_str(&ok(&ternctl(
        tls,
        ep,
        &["cluster", "status", "--json"],
        None,
    )))?;
    assert_eq!(
        status["leader_id"],
        serde_json::json!(cluster.nodes[leader].id)
    );
    assert_eq!(
        status["leader_addr"],
        serde_json::json!(cluster.nodes[leader].addr)
    );
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3);
    for m in members {
        for key in ["id", "addr", "role", "last_applied"] {
            assert!(m.get(key).is_some(), "member has {key}: {m}");
        }
    }

    ok(&ternctl(tls, ep, &["domain", "add", "example.test"], None));
    let dup = ternctl(tls, ep, &["domain", "add", "example.test"], None);
    assert!(!dup.status.success());
    assert!(
        String::from_utf8_lossy(&dup.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&dup.stderr)
    );

    ok(&ternctl(
        tls,
        ep,
        &["user", "add", "carol@example.test", "--password-stdin"],
        Some("s3cret\n"),
    ));
    let dup = ternctl(
        tls,
        ep,
        &["user", "add", "carol@example.test", "--password-stdin"],
        Some("x\n"),
    );
    assert!(!dup.status.success());
    let unknown = ternctl(
        tls,
        ep,
        &["user", "add", "dave@nowhere.test", "--password-stdin"],
        Some("x\n"),
    );
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    ok(&ternctl(
        tls,
        ep,
        &[
            "alias",
            "add",
            "postmaster@example.test",
            "carol@example.test",
        ],
        None,
    ));
    ok(&ternctl(
        tls,
        ep,
        &[
            "list",
            "add",
            "staff@example.test",
            "carol@example.test",
            "ext@remote.test",
        ],
        None,
    ));

    let users: serde_json::Value =
        serde_json::from_str(&ok(&ternctl(tls, ep, &["user", "list", "--json"], None)))?;
    assert!(users.to_string().contains("carol@example.test"), "{users}");
    let domains: serde_json::Value =
        serde_json::from_str(&ok(&ternctl(tls, ep, &["--json", "domain", "list"], None)))?;
    assert!(domains.to_string().contains("example.test"), "{domains}");
    let aliases = ok(&ternctl(tls, ep, &["alias", "list", "--json"], None));
    assert!(aliases.contains("postmaster@example.test"), "{aliases}");

    // The password works (checked through the API).
    let mut d = tern_proto::store::v1::directory_client::DirectoryClient::new(
        cluster.channel(leader, tern_trust::Role::Access).await?,
    );
    let check = d
        .check_password(tern_proto::store::v1::CheckPasswordRequest {
            address: "carol@example.test".into(),
            password: "s3cret".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(check.ok);

    // The audit log (issue 15): each change above, newest first, by the admin certificate's
    // identity, without the password; the refused duplicates left no record; the smtp role
    // may not read it.
    let audit: serde_json::Value =
        serde_json::from_str(&ok(&ternctl(tls, ep, &["audit", "--json"], None)))?;
    let records = audit.as_array().expect("a list");
    // Init is recorded once a leader exists, so it may come before or after the first change.
    let actions: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["action"] != "init-cluster")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default(),
                r["target"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (
                "add-list-members",
                "staff@example.test + carol@example.test, ext@remote.test"
            ),
            ("add-alias", "postmaster@example.test -> carol@example.test"),
            ("add-user", "carol@example.test quota=0"),
            ("add-domain", "example.test"),
        ],
        "{audit}"
    );
    assert!(
        records.iter().any(|r| r["action"] == "init-cluster"),
        "{audit}"
    );
    for r in records {
        let by = r["by"].as_str().unwrap_or_default();
        assert_eq!(by, "spiffe://tern.test/tern/admin from 127.0.0.1", "{r}");
        assert!(
            r["at_ms"].as_i64().unwrap_or_default() > 1_600_000_000_000,
            "{r}"
        );
    }
    assert!(!audit.to_string().contains("s3cret"));
    let table = ok(&ternctl(tls, ep, &["audit", "--limit", "1"], None));
    assert!(
        table.contains("add-list-members") && !table.contains("add-domain"),
        "{table}"
    );
    let mut admin_as_smtp = tern_proto::store::v1::admin_client::AdminClient::new(
        cluster.channel(leader, tern_trust::Role::Smtp).await?,
    );
    let refused = admin_as_smtp
        .audit(tern_proto::store::v1::AuditRequest::default())
        .await
        .expect_err("smtp may not read the audit log");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let unreachable = ternctl(tls, "http://127.0.0.1:1", &["domain", "list"], None);
    assert!(!unreachable.status.success());
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
    Ok(())
}
