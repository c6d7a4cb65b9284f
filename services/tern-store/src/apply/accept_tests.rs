//! Delivery at acceptance ([`crate::apply::accept`]): what one `Accept` command leaves.

use super::{entry, Fixture};
use crate::command::{Command, Reply};
use crate::keys::cf;
use crate::model::{QueueEntryRec, QueueRcpt, RcptState};

fn to(addresses: &[&str]) -> Box<QueueEntryRec> {
    let mut e = entry("A1");
    e.recipients = addresses
        .iter()
        .map(|a| QueueRcpt {
            address: a.to_string(),
            state: RcptState::Pending,
            last_reply: String::new(),
            attempts: 0,
            orcpt: String::new(),
            notify: String::new(),
        })
        .collect();
    Box::new(e)
}

fn accepted(f: &Fixture, e: Box<QueueEntryRec>, request_id: &str) -> QueueEntryRec {
    match f.ok(Command::Accept {
        entry: e,
        body: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        request_id: request_id.into(),
    }) {
        Reply::Entry(e) => *e,
        other => panic!("{other:?}"),
    }
}

/// References the stored content has (copies in mailboxes and queue entries).
fn blob_refs(f: &Fixture, hash: &[u8; 32]) -> u64 {
    let txn = crate::txn::Txn::new(&*f.db);
    crate::apply::account::blob_refcount(&txn, hash).unwrap()
}

fn states(e: &QueueEntryRec) -> Vec<RcptState> {
    e.recipients.iter().map(|r| r.state).collect()
}

#[test]
fn local_users_are_delivered_and_only_the_remote_recipient_stays_queued() {
    let f = Fixture::new();
    let users: Vec<String> = ["a", "b", "c"].iter().map(|u| f.user(u)).collect();
    let mut rcpts: Vec<&str> = users.iter().map(String::as_str).collect();
    rcpts.push("far@remote.test");
    let e = accepted(&f, to(&rcpts), "r1");
    use RcptState::*;
    assert_eq!(states(&e), [Delivered, Delivered, Delivered, Pending]);
    assert!(e.recipients[0]
        .last_reply
        .starts_with("250 2.0.0 delivered to INBOX (uid 1)"));
    assert_eq!(f.count(cf::MSG), 3, "one message in each INBOX");
    assert_eq!(
        f.count(cf::BLOB),
        2,
        "the body stored once, with its header record"
    );
    assert_eq!(blob_refs(&f, &e.blob), 4, "three copies and the entry");
    // The entry (and its due-index key) waits for a worker, for the remote recipient only.
    assert_eq!(f.count(cf::QUEUE), 2);
    assert!(e.events.iter().any(|ev| ev.kind == "delivered"));
}

#[test]
fn a_local_only_message_leaves_no_queue_entry() {
    let f = Fixture::new();
    let a = f.user("a");
    let e = accepted(&f, to(&[&a]), "r2");
    assert_eq!(states(&e), [RcptState::Delivered]);
    assert_eq!(f.count(cf::QUEUE), 0, "nothing in flight");
    assert_eq!(f.count(cf::MSG), 1);
    assert_eq!(blob_refs(&f, &e.blob), 1, "the one copy; no entry holds it");
    // A retry of the same request (the answer was lost) stores nothing twice.
    let again = f.ok(Command::Accept {
        entry: to(&[&a]),
        body: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        request_id: "r2".into(),
    });
    assert_eq!(again, Reply::EnqueuedEarlier("A1".into()));
    assert_eq!(f.count(cf::MSG), 1);
}

#[test]
fn aliases_unknown_users_and_full_mailboxes_are_left_to_the_worker() {
    let f = Fixture::new();
    let a = f.user("a");
    f.ok(Command::AddAlias {
        address: "team@example.test".into(),
        targets: vec![a.clone()],
    });
    let full = f.user("full");
    f.ok(Command::SetQuota {
        address: full.clone(),
        quota_bytes: 1,
    });
    let e = accepted(
        &f,
        to(&["team@example.test", "nobody@example.test", &full]),
        "r3",
    );
    assert_eq!(states(&e), [RcptState::Pending; 3]);
    assert_eq!(f.count(cf::MSG), 0);
    assert_eq!(
        blob_refs(&f, &e.blob),
        1,
        "the entry's; the refused copy was rolled back"
    );
    assert_eq!(f.count(cf::QUEUE), 2, "the entry and its due key");
}

#[test]
fn enqueue_still_delivers_nothing_itself() {
    let f = Fixture::new();
    let a = f.user("a");
    let Reply::Entry(e) = f.ok(Command::Enqueue {
        entry: to(&[&a]),
        body: b"m".to_vec(),
        request_id: "r4".into(),
    }) else {
        panic!()
    };
    assert_eq!(states(&e), [RcptState::Pending]);
    assert_eq!(f.count(cf::MSG), 0);
}

#[test]
fn a_worker_delivers_stored_content_by_its_hash() {
    let f = Fixture::new();
    let a = f.user("a");
    f.ok(Command::AddAlias {
        address: "team@example.test".into(),
        targets: vec![a.clone()],
    });
    let e = accepted(&f, to(&["team@example.test"]), "r5");
    assert_eq!(blob_refs(&f, &e.blob), 1, "the entry's");
    let target = crate::command::Target {
        account: a,
        mailbox: "INBOX".into(),
        delivery_id: "A1/a@example.test".into(),
        flags: vec![],
    };
    let Reply::Delivered { results, blob } = f.ok(Command::DeliverStored {
        targets: vec![target.clone()],
        blob: e.blob,
        internal_date: 1,
    }) else {
        panic!()
    };
    assert!(results[0].result.is_ok(), "{results:?}");
    assert_eq!(blob, e.blob);
    assert_eq!(f.count(cf::MSG), 1);
    assert_eq!(blob_refs(&f, &e.blob), 2, "the entry's and the copy's");
    let gone = f.run(Command::DeliverStored {
        targets: vec![target],
        blob: [7; 32],
        internal_date: 1,
    });
    assert_eq!(gone.unwrap_err().kind, crate::error::ErrorKind::NotFound);
}
