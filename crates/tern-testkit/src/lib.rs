//! Test support: real Tern service processes on loopback, on ports the OS assigns, cleaned
//! up when dropped; one [`platform::Platform`] that starts any subset of the services; the
//! external clients the tests drive ([`clients`]); and the benchmarks' load generators
//! (`src/bin/`).
//!
//! Used by the services' integration tests, the end-to-end tests (`tests/e2e`) and by the
//! `tern-*-bench` load generators. Dependencies: `tern-spawn` for the service command line
//! and addr-file protocol shared with `cargo xtask up`, `tern-net` for the development TLS
//! certificate, `tokio` and `tonic` to talk to the nodes, `tempfile` for data directories,
//! `base64` for SMTP AUTH PLAIN in [`flood`], `libc` to send SIGTERM the way an operator's `kill` would and to serialize package
//! installs (`flock`); `tern-trust` for the test cluster's development PKI, and `rustls`,
//! `tokio-rustls` and `tonic-prost` to probe internal ports as an outsider would ([`mtls`]);
//! `tern-clock` for the clock offsets `tern-chaos` makes jump.

pub mod access;
/// Flags and scratch space the benchmark binaries share.
pub mod bench;
/// Which binaries to run, and refusing stale ones.
pub mod bins;
/// The external clients the tests drive, installed with the parts they need.
pub mod clients;
/// Real tern-store processes.
pub mod cluster;
/// A tiny authoritative DNS server on loopback, so MX routing is tested without the real DNS.
pub mod dns;
/// Dovecot beside Tern in the benchmarks.
pub mod dovecot;
/// A fault-injecting TCP proxy for partitions on loopback.
pub mod faultproxy;
/// A wrong-password flood over IMAP, POP3 and SMTP from many loopback networks.
pub mod flood;
/// A small IMAP client (benchmarks, chaos load).
pub mod imap_client;
/// Probing internal ports as an outsider: plaintext, strangers' certificates, raw calls.
pub mod mtls;

pub mod platform;
/// Real tern-queue processes.
pub mod queue;
/// Running any Tern service binary as a child process.
pub mod service;
/// Real tern-smtp processes.
pub mod smtp;
/// One SMTP submission and what its answer means for a sender that keeps histories.
pub mod smtp_client;

use tern_proto::client::TracedChannel;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::messages_client::MessagesClient;

pub use cluster::{StoreCluster, StoreNode};
pub use platform::Platform;

/// Appends `body` to `account`'s `mailbox` through `client`, in 1 MiB chunks.
pub async fn append(
    client: &mut MessagesClient<TracedChannel>,
    account: &str,
    mailbox: &str,
    body: &[u8],
    delivery_id: &str,
) -> Result<pb::AppendResponse, tonic::Status> {
    let header = pb::AppendHeader {
        account: account.into(),
        mailbox: mailbox.into(),
        flags: vec![],
        internal_date: 0,
        delivery_id: delivery_id.into(),
        size: body.len() as u64,
    };
    let mut msgs = vec![pb::AppendRequest {
        header: Some(header),
        chunk: vec![],
    }];
    for c in body.chunks(1 << 20) {
        msgs.push(pb::AppendRequest {
            header: None,
            chunk: c.to_vec(),
        });
    }
    client
        .append(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// Every message record of a mailbox (and the mailbox's status).
pub async fn list_all(
    client: &mut MessagesClient<TracedChannel>,
    account: &str,
    mailbox: &str,
) -> Result<pb::ListMessagesResponse, tonic::Status> {
    let req = pb::ListMessagesRequest {
        account: account.into(),
        mailbox: mailbox.into(),
        uids: None,
        changed_since: 0,
    };
    client.list(req).await.map(|r| r.into_inner())
}

/// Reads a whole message back.
pub async fn fetch(
    client: &mut MessagesClient<TracedChannel>,
    account: &str,
    mailbox: &str,
    uid: u32,
) -> Result<Vec<u8>, tonic::Status> {
    use futures::StreamExt;
    let mut stream = client
        .fetch(pb::FetchRequest {
            account: account.into(),
            mailbox: mailbox.into(),
            uid,
            offset: 0,
            length: 0,
            uid_validity: 0,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?.data);
    }
    Ok(out)
}

/// Creates `example.test` with the given users (password "pw-<name>").
pub async fn seed_users(cluster: &StoreCluster, node: usize, users: &[&str]) -> anyhow::Result<()> {
    let mut dir = cluster.directory(node).await?;
    dir.add_domain(pb::AddDomainRequest {
        name: "example.test".into(),
    })
    .await?;
    for u in users {
        dir.add_user(pb::AddUserRequest {
            address: format!("{u}@example.test"),
            password: format!("pw-{u}"),
            quota_bytes: 0,
        })
        .await?;
    }
    Ok(())
}

/// Adds the users `addresses` (whole addresses, in a domain that exists) with `password`,
/// then appends every message of `corpus` to each one's INBOX through the leader, one task
/// per user: how the benchmarks give Tern the same mailboxes as the peer server.
pub async fn load_mailboxes(
    cluster: &StoreCluster,
    addresses: &[String],
    password: &str,
    corpus: &[Vec<u8>],
) -> anyhow::Result<()> {
    let mut dir = cluster.directory(0).await?;
    for a in addresses {
        dir.add_user(pb::AddUserRequest {
            address: a.clone(),
            password: password.into(),
            quota_bytes: 0,
        })
        .await?;
    }
    let leader = cluster
        .wait_leader(std::time::Duration::from_secs(10))
        .await?;
    let corpus = std::sync::Arc::new(corpus.to_vec());
    let mut tasks = Vec::new();
    for a in addresses {
        let mut m = MessagesClient::new(cluster.login(leader, a, password).await?);
        let (a, corpus) = (a.clone(), corpus.clone());
        tasks.push(tokio::spawn(async move {
            for body in corpus.iter() {
                append(&mut m, &a, "INBOX", body, "").await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
