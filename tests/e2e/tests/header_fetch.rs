//! A header-only FETCH over a whole mailbox (issue 20): a mail client listing a folder
//! asks for ENVELOPE and a few header fields of every message. Through a real tern-access
//! node and a real tern-store node, FETCH of 1,000 messages must be one store request
//! (counted by the store's `tern_grpc_calls_total`) that reads no body (the store's
//! `tern_store_message_reads_total{part="body"}` does not move).

use tern_testkit::bench::{scrape, sum_of};
use tern_testkit::imap_client::{Imap, Reply};
use tern_testkit::{append, Platform};

const MESSAGES: usize = 1000;

/// (mailbox calls from access nodes, FetchHeaders calls, body reads, header-record reads).
/// Only the Messages and Mailboxes services count: the access node's readiness probe (a
/// directory read every 5 s) may land in any window.
async fn counts(metrics: &str) -> anyhow::Result<(u64, u64, u64, u64)> {
    let body = scrape(metrics).await?;
    let from_access = |service: &str| {
        sum_of(
            &body,
            "tern_grpc_calls_total",
            &[
                r#"role="access""#,
                &format!("method=\"tern.store.v1.{service}/"),
            ],
        )
    };
    Ok((
        from_access("Messages") + from_access("Mailboxes"),
        sum_of(
            &body,
            "tern_grpc_calls_total",
            &[r#"method="tern.store.v1.Messages/FetchHeaders""#],
        ),
        sum_of(&body, "tern_store_message_reads_total", &[r#"part="body""#]),
        sum_of(
            &body,
            "tern_store_message_reads_total",
            &[r#"part="header""#],
        ),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_fetch_of_a_thousand_messages_is_one_store_request_reading_no_body(
) -> anyhow::Result<()> {
    let p = Platform::builder()
        .stores(1)
        .users(&["alice"])
        .access(&[])
        .start()
        .await?;
    let account = "alice@example.test";
    let mut m = p.cluster.messages(0, account).await?;
    for i in 0..MESSAGES {
        let body = format!(
            "From: Sender {i} <s{i}@remote.test>\r\nTo: {account}\r\nSubject: number {i}\r\n\
             Message-ID: <{i}@remote.test>\r\n\r\n{}\r\n",
            "body text ".repeat(50)
        );
        append(&mut m, account, "INBOX", body.as_bytes(), "").await?;
    }
    let mut imap = Imap::connect(p.access().imap_port(), 64 << 10).await?;
    imap.login(account, "pw-alice").await?;
    let mut reply = Reply::default();
    imap.command("SELECT INBOX", &mut reply).await?;
    let metrics = &p.cluster.nodes[0].metrics;
    let before = counts(metrics).await?;
    imap.command(
        "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
        &mut reply,
    )
    .await?;
    let after = counts(metrics).await?;
    let fetched = reply
        .untagged
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .count();
    assert_eq!(fetched, MESSAGES, "every message answered");
    assert!(
        reply.untagged.iter().any(|l| l.contains(r#""number 999""#)),
        "the envelopes carry the subjects"
    );
    let calls = after.0 - before.0;
    assert_eq!(calls, 1, "one store call for the FETCH, {calls} made");
    assert_eq!(after.1 - before.1, 1, "and it was FetchHeaders");
    assert_eq!(after.2, before.2, "no body was read");
    assert_eq!(
        after.3 - before.3,
        MESSAGES as u64,
        "every header came from its record"
    );
    // A body read is still counted as one: the same counters would have shown it.
    imap.command("FETCH 1 BODY.PEEK[]", &mut reply).await?;
    let last = counts(metrics).await?;
    assert_eq!(last.2 - after.2, 1, "a body FETCH reads one body");
    Ok(())
}
