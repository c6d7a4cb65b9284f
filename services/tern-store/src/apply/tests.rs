//! Unit tests of the apply logic on the in-memory engine, plus a round trip through every
//! column family on RocksDB that must leave the same bytes as the in-memory engine does.

use crate::command::{Command, FlagMode, LockOp, Outcome, Reply, Target, UidRange, UidSet};
use crate::engine::{Engine, MemoryEngine, RocksEngine};
use crate::error::ErrorKind;
use crate::keys::cf;
use crate::model::{QueueEntryRec, QueueRcpt, RcptState};
use crate::txn::Txn;

use super::apply_command;

/// A column family's keys and values, in order.
type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

struct Fixture {
    /// The RocksDB directory, when on RocksDB.
    _dir: Option<tempfile::TempDir>,
    db: Box<dyn Engine>,
}

impl Fixture {
    /// On the in-memory engine.
    fn new() -> Self {
        Self::with(None, Box::new(MemoryEngine::new()))
    }

    /// On RocksDB in a temporary directory.
    fn on_rocksdb() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("db")).unwrap();
        Self::with(Some(dir), Box::new(RocksEngine::new(db)))
    }

    fn with(dir: Option<tempfile::TempDir>, db: Box<dyn Engine>) -> Self {
        let f = Fixture { _dir: dir, db };
        f.ok(Command::AddDomain {
            name: "example.test".into(),
        });
        f
    }

    /// Applies one command in its own transaction and commits it.
    fn run(&self, cmd: Command) -> Outcome {
        let mut txn = Txn::new(&*self.db);
        let out = apply_command(&mut txn, &cmd);
        self.db.write(txn.into_batch()).unwrap();
        out
    }

    /// Every key and value of the state machine, column family by column family.
    fn dump(&self) -> Vec<(&'static str, KeyValues)> {
        let txn = Txn::new(&*self.db);
        cf::STATE_MACHINE
            .iter()
            .map(|c| (*c, txn.scan_prefix(c, b"").unwrap()))
            .collect()
    }

    fn ok(&self, cmd: Command) -> Reply {
        self.run(cmd).unwrap()
    }

    fn user(&self, name: &str) -> String {
        let address = format!("{name}@example.test");
        self.ok(Command::AddUser {
            address: address.clone(),
            password_hash: "x".into(),
            quota_bytes: 0,
            now_ms: 1_700_000_000_000,
        });
        address
    }

    fn deliver(&self, accounts: &[&str], body: &[u8], id: &str) -> Reply {
        let targets = accounts
            .iter()
            .map(|a| Target {
                account: a.to_string(),
                mailbox: "INBOX".into(),
                delivery_id: format!("{id}/{a}"),
                flags: vec![],
            })
            .collect();
        self.ok(Command::Deliver {
            targets,
            body: body.to_vec(),
            internal_date: 1,
        })
    }

    fn count(&self, cf_name: &'static str) -> usize {
        Txn::new(&*self.db).scan_prefix(cf_name, b"").unwrap().len()
    }
}

fn all() -> UidSet {
    UidSet(vec![UidRange { first: 1, last: 0 }])
}

#[test]
fn one_blob_for_a_hundred_recipients_and_gone_after_the_last_expunge() {
    let f = Fixture::new();
    let users: Vec<String> = (0..100).map(|i| f.user(&format!("u{i}"))).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let Reply::Delivered { results, .. } = f.deliver(&refs, b"Subject: hi\r\n\r\nbody\r\n", "q1")
    else {
        panic!()
    };
    assert!(results.iter().all(|r| r.result.is_ok()));
    assert_eq!(f.count(cf::BLOB), 2, "the body once, and its header record");
    let hash = super::account::blob_hash(b"Subject: hi\r\n\r\nbody\r\n");
    let head = super::head::read(&Txn::new(&*f.db), &hash).unwrap();
    assert_eq!(
        head,
        Some(super::head::Head::Record(b"Subject: hi\r\n\r\n".to_vec()))
    );
    for u in &users[..99] {
        f.ok(Command::Expunge {
            account: u.clone(),
            mailbox: "INBOX".into(),
            uids: Some(all()),
            force: true,
        });
    }
    assert_eq!(f.count(cf::BLOB), 2, "one reference left");
    f.ok(Command::Expunge {
        account: users[99].clone(),
        mailbox: "INBOX".into(),
        uids: Some(all()),
        force: true,
    });
    assert_eq!(f.count(cf::BLOB), 0, "the header record went with the body");
    assert_eq!(f.count(cf::BLOBREF), 0);
}

#[test]
fn a_header_too_large_for_a_record_has_none_and_is_read_from_the_body() {
    let f = Fixture::new();
    let a = f.user("a");
    let mut body = b"Subject: ".to_vec();
    body.extend(std::iter::repeat_n(b'x', super::head::MAX_HEAD));
    body.extend_from_slice(b"\r\n\r\nbody\r\n");
    f.deliver(&[&a], &body, "big");
    assert_eq!(
        f.count(cf::BLOB),
        1,
        "no record for a header over the bound"
    );
    let hash = super::account::blob_hash(&body);
    let head = super::head::read(&Txn::new(&*f.db), &hash).unwrap();
    assert_eq!(
        head,
        Some(super::head::Head::TooLarge),
        "the body is read instead"
    );
}

#[test]
fn a_retried_delivery_is_stored_once() {
    let f = Fixture::new();
    let a = f.user("alice");
    let Reply::Delivered { results: first, .. } = f.deliver(&[&a], b"x", "q2") else {
        panic!()
    };
    let Reply::Delivered { results: again, .. } = f.deliver(&[&a], b"x", "q2") else {
        panic!()
    };
    let (first, again) = (
        first[0].result.clone().unwrap(),
        again[0].result.clone().unwrap(),
    );
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.uid, again.uid);
    assert_eq!(f.count(cf::MSG), 1);
}

#[test]
fn rename_inbox_moves_messages_and_keeps_inbox() {
    let f = Fixture::new();
    let a = f.user("alice");
    f.deliver(&[&a], b"one", "r1");
    f.deliver(&[&a], b"two", "r2");
    let Reply::Mailbox(old) = f.ok(Command::RenameMailbox {
        account: a.clone(),
        from: "INBOX".into(),
        to: "Old/Inbox".into(),
        now_ms: 1_700_000_000_000,
    }) else {
        panic!()
    };
    assert_eq!(old.messages, 2);
    assert_eq!(old.name, "Old/Inbox");
    let txn = Txn::new(&*f.db);
    let acct = super::account_id(&txn, &a).unwrap();
    let inbox = super::mailbox_by_name(&txn, acct, "INBOX")
        .unwrap()
        .unwrap();
    assert_eq!(inbox.messages, 0);
    assert_eq!(inbox.uid_next, 3, "UIDs are never reused");
    assert!(
        super::mailbox_by_name(&txn, acct, "Old").unwrap().is_some(),
        "parent created"
    );
}

#[test]
fn rename_moves_children_and_refuses_duplicates() {
    let f = Fixture::new();
    let a = f.user("alice");
    for name in ["Work", "Work/2024", "Work/2024/Q1"] {
        f.ok(Command::CreateMailbox {
            account: a.clone(),
            name: name.into(),
            special_use: String::new(),
            now_ms: 1,
        });
    }
    f.ok(Command::RenameMailbox {
        account: a.clone(),
        from: "Work".into(),
        to: "Job".into(),
        now_ms: 2,
    });
    let txn = Txn::new(&*f.db);
    let acct = super::account_id(&txn, &a).unwrap();
    assert!(super::mailbox_by_name(&txn, acct, "Job/2024/Q1")
        .unwrap()
        .is_some());
    assert!(super::mailbox_by_name(&txn, acct, "Work/2024")
        .unwrap()
        .is_none());
    let dup = f.run(Command::CreateMailbox {
        account: a.clone(),
        name: "Job".into(),
        special_use: String::new(),
        now_ms: 3,
    });
    assert_eq!(dup.unwrap_err().kind, ErrorKind::AlreadyExists);
    let del = f.run(Command::DeleteMailbox {
        account: a,
        name: "Job".into(),
    });
    assert_eq!(del.unwrap_err().kind, ErrorKind::FailedPrecondition);
}

#[test]
fn flags_with_unchanged_since_and_counts() {
    let f = Fixture::new();
    let a = f.user("alice");
    f.deliver(&[&a], b"one", "f1");
    f.deliver(&[&a], b"two", "f2");
    let Reply::Flags {
        updated,
        modified,
        highest_modseq,
    } = f.ok(Command::StoreFlags {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uids: UidSet(vec![UidRange { first: 1, last: 1 }]),
        mode: FlagMode::Add,
        flags: vec!["\\Seen".into()],
        unchanged_since: 0,
    })
    else {
        panic!()
    };
    assert!(modified.is_empty());
    assert_eq!(updated[0].flags, vec!["\\Seen".to_string()]);
    assert_eq!(updated[0].modseq, highest_modseq);
    // A conditional store older than message 1's change leaves it alone.
    let Reply::Flags { modified, .. } = f.ok(Command::StoreFlags {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uids: all(),
        mode: FlagMode::Add,
        flags: vec!["$Important".into()],
        unchanged_since: highest_modseq - 1,
    }) else {
        panic!()
    };
    assert_eq!(modified, vec![1]);
    let txn = Txn::new(&*f.db);
    let acct = super::account_id(&txn, &a).unwrap();
    let inbox = super::mailbox_by_name(&txn, acct, "INBOX")
        .unwrap()
        .unwrap();
    assert_eq!((inbox.messages, inbox.unseen), (2, 1));
}

#[test]
fn move_renumbers_in_the_target_and_expunges_the_source() {
    let f = Fixture::new();
    let a = f.user("alice");
    f.deliver(&[&a], b"one", "m1");
    let Reply::Copied { source, target, .. } = f.ok(Command::Copy {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uids: all(),
        target: "Trash".into(),
        remove_source: true,
    }) else {
        panic!()
    };
    assert_eq!((source, target), (vec![1], vec![1]));
    assert_eq!(f.count(cf::MSG), 1);
    assert_eq!(f.count(cf::BLOB), 2, "one body and its header record");
    let missing = f.run(Command::Copy {
        account: a,
        mailbox: "INBOX".into(),
        uids: all(),
        target: "Nope".into(),
        remove_source: false,
    });
    assert_eq!(missing.unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn quota_refuses_a_delivery_without_failing_the_others() {
    let f = Fixture::new();
    let a = f.user("alice");
    let b = f.user("bob");
    f.ok(Command::SetQuota {
        address: a.clone(),
        quota_bytes: 10,
    });
    let Reply::Delivered { results, .. } = f.deliver(&[&a, &b], b"more than ten octets", "q3")
    else {
        panic!()
    };
    assert_eq!(
        results[0].result.as_ref().unwrap_err().kind,
        ErrorKind::ResourceExhausted
    );
    assert!(results[1].result.is_ok());
    assert_eq!(f.count(cf::MSG), 1);
}

#[test]
fn a_failed_command_leaves_no_partial_writes() {
    let f = Fixture::new();
    let before = f.count(cf::DIR);
    let err = f.run(Command::AddUser {
        address: "x@unhosted.test".into(),
        password_hash: "h".into(),
        quota_bytes: 0,
        now_ms: 1,
    });
    assert_eq!(err.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(f.count(cf::DIR), before);
}

fn entry(id: &str) -> QueueEntryRec {
    QueueEntryRec {
        id: id.into(),
        sender: "a@example.test".into(),
        recipients: vec![QueueRcpt {
            address: "r@remote.test".into(),
            state: RcptState::Pending,
            last_reply: String::new(),
            attempts: 0,
            orcpt: String::new(),
            notify: String::new(),
        }],
        blob: [0; 32],
        size: 0,
        created_at: 0,
        next_attempt_at: 1_000,
        attempts: 0,
        lease_owner: String::new(),
        lease_expires_at: 0,
        trace_id: String::new(),
        mail_params: String::new(),
        received_from: String::new(),
        events: vec![],
        message_id: String::new(),
    }
}

#[test]
fn leases_expire_and_are_taken_over() {
    let f = Fixture::new();
    f.ok(Command::Enqueue {
        entry: Box::new(entry("E1")),
        body: b"msg".to_vec(),
        request_id: "req1".into(),
    });
    // Enqueue is idempotent by request id.
    f.ok(Command::Enqueue {
        entry: Box::new(entry("E2")),
        body: b"msg".to_vec(),
        request_id: "req1".into(),
    });
    let lease = |owner: &str, now: i64| match f.ok(Command::Lease {
        owner: owner.into(),
        max_entries: 10,
        lease_ms: 500,
        now_ms: now,
    }) {
        Reply::Entries(e) => e,
        other => panic!("{other:?}"),
    };
    assert!(lease("w1", 999).is_empty(), "not due yet");
    assert_eq!(lease("w1", 1_000).len(), 1);
    assert!(lease("w2", 1_200).is_empty(), "leased by w1");
    let taken = lease("w2", 1_600);
    assert_eq!(taken[0].lease_owner, "w2", "w1's lease expired");
    let lost = f.run(Command::Renew {
        id: "E1".into(),
        owner: "w1".into(),
        lease_ms: 500,
        now_ms: 1_700,
    });
    assert_eq!(lost.unwrap_err().kind, ErrorKind::FailedPrecondition);
    f.ok(Command::UpdateEntry {
        id: "E1".into(),
        owner: "w2".into(),
        recipients: vec![],
        events: vec![],
        next_attempt_at: 0,
        release: true,
        complete: true,
    });
    assert_eq!(f.count(cf::QUEUE), 0);
    assert_eq!(f.count(cf::BLOB), 0);
}

#[test]
fn a_retried_enqueue_after_completion_names_the_first_entry() {
    let f = Fixture::new();
    f.ok(Command::Enqueue {
        entry: Box::new(entry("E9")),
        body: b"m".to_vec(),
        request_id: "r9".into(),
    });
    f.ok(Command::DeleteEntry { id: "E9".into() });
    let again = f.run(Command::Enqueue {
        entry: Box::new(entry("E10")),
        body: b"m".to_vec(),
        request_id: "r9".into(),
    });
    assert_eq!(again, Ok(Reply::EnqueuedEarlier("E9".into())));
    assert_eq!(f.count(cf::QUEUE), 0, "nothing enqueued twice");
}

#[test]
fn locks_exclude_others_until_released_or_expired() {
    let f = Fixture::new();
    let lock = |cmd: Command| match f.ok(cmd) {
        Reply::Lock { held, holder, .. } => (held, holder),
        other => panic!("{other:?}"),
    };
    let acquire = |owner: &str, now: i64| Command::Lock {
        op: LockOp::Acquire,
        name: "pop3/a".into(),
        owner: owner.into(),
        ttl_ms: 1000,
        now_ms: now,
    };
    assert_eq!(lock(acquire("n1", 0)), (true, "n1".into()));
    assert_eq!(lock(acquire("n2", 500)), (false, "n1".into()), "held by n1");
    assert_eq!(
        lock(acquire("n1", 600)),
        (true, "n1".into()),
        "re-entrant for its owner"
    );
    assert_eq!(
        lock(acquire("n2", 1_700)),
        (true, "n2".into()),
        "n1's lease ran out"
    );
    let renew = Command::Lock {
        op: LockOp::Renew,
        name: "pop3/a".into(),
        owner: "n1".into(),
        ttl_ms: 1000,
        now_ms: 1_800,
    };
    assert_eq!(lock(renew), (false, "n2".into()), "n1 lost it");
    let release_other = Command::Lock {
        op: LockOp::Release,
        name: "pop3/a".into(),
        owner: "n1".into(),
        ttl_ms: 0,
        now_ms: 0,
    };
    assert_eq!(
        lock(release_other),
        (false, "n2".into()),
        "cannot release another's lock"
    );
    lock(Command::Lock {
        op: LockOp::Release,
        name: "pop3/a".into(),
        owner: "n2".into(),
        ttl_ms: 0,
        now_ms: 0,
    });
    assert_eq!(lock(acquire("n3", 1_900)), (true, "n3".into()));
    assert!(f
        .run(Command::Lock {
            op: LockOp::Acquire,
            name: String::new(),
            owner: "x".into(),
            ttl_ms: 1,
            now_ms: 0
        })
        .is_err());
}

#[test]
fn a_trace_records_every_step_and_is_pruned_with_its_indexes() {
    use crate::keys;
    use crate::model::{QueueEventRec, TraceEventRec, TraceRec};
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let f = Fixture::new();
    let alice = f.user("alice");
    let mut e = entry("E1");
    e.trace_id = TRACE.into();
    e.message_id = "<m1@example.test>".into();
    e.created_at = 1_000;
    e.events = vec![QueueEventRec {
        at: 1_000,
        kind: "received".into(),
        detail: "from client.test".into(),
    }];
    f.ok(Command::Enqueue {
        entry: Box::new(e),
        body: b"Subject: t\r\n\r\nhi\r\n".to_vec(),
        request_id: "r1".into(),
    });
    f.deliver(&[&alice], b"Subject: t\r\n\r\nhi\r\n", "E1");
    // An unrelated message (other content) is not part of the trace.
    f.deliver(&[&alice], b"Subject: other\r\n\r\nhi\r\n", "E9");
    f.ok(Command::Lease {
        owner: "w".into(),
        max_entries: 1,
        lease_ms: 1000,
        now_ms: 2_000,
    });
    f.ok(Command::UpdateEntry {
        id: "E1".into(),
        owner: "w".into(),
        recipients: vec![],
        events: vec![QueueEventRec {
            at: 2_100,
            kind: "delivered".into(),
            detail: "alice@example.test: 250".into(),
        }],
        next_attempt_at: 0,
        release: true,
        complete: true,
    });
    let blob = super::account::blob_hash(b"Subject: t\r\n\r\nhi\r\n");
    let step = TraceEventRec {
        at: 3_000,
        service: "access".into(),
        kind: "retrieved".into(),
        detail: "IMAP FETCH".into(),
    };
    for _ in 0..2 {
        f.ok(Command::RecordTrace {
            trace_id: TRACE.into(),
            blob,
            event: step.clone(),
        });
    }
    // Content of another trace (or none) cannot write into this one.
    let other = super::account::blob_hash(b"Subject: other\r\n\r\nhi\r\n");
    let refused = f.run(Command::RecordTrace {
        trace_id: TRACE.into(),
        blob: other,
        event: step.clone(),
    });
    assert_eq!(refused.unwrap_err().kind, ErrorKind::NotFound);

    let t: TraceRec = Txn::new(&*f.db)
        .get(cf::QUEUE, &keys::trace_key(TRACE))
        .unwrap()
        .unwrap();
    let steps: Vec<(&str, &str)> = t
        .events
        .iter()
        .map(|e| (e.service.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("smtp", "received"),
            ("queue", "queued"),
            ("store", "stored"),
            ("queue", "delivered"),
            ("queue", "completed"),
            ("access", "retrieved"),
        ],
        "{:#?}",
        t.events
    );
    assert!(t.events[2]
        .detail
        .starts_with("alice@example.test INBOX uid 1"));
    assert_eq!(t.queue_ids, ["E1"]);
    assert_eq!(t.message_ids, ["<m1@example.test>"]);

    // Retention: a prune before its creation keeps it, one after removes it and its indexes.
    assert_eq!(
        f.ok(Command::PruneTraces {
            before_ms: 1_000,
            max: 10
        }),
        Reply::Count(0)
    );
    assert_eq!(
        f.ok(Command::PruneTraces {
            before_ms: 1_001,
            max: 10
        }),
        Reply::Count(1)
    );
    for key in [
        keys::trace_key(TRACE),
        keys::trace_by_queue_key("E1"),
        keys::trace_by_blob_key(&blob),
        keys::trace_by_message_id_key("<m1@example.test>", TRACE),
        keys::trace_by_time_key(1_000, TRACE),
    ] {
        assert!(
            Txn::new(&*f.db).get_raw(cf::QUEUE, &key).unwrap().is_none(),
            "{key:?} left behind"
        );
    }
}

/// Writes to every state-machine column family, with overwrites and deletes on the way.
fn claim(f: &Fixture, account: &str, up_to: u32) -> Outcome {
    f.run(Command::ClaimRecent {
        account: account.into(),
        mailbox: "INBOX".into(),
        uid_validity: 0,
        up_to,
    })
}

fn marker_and_recent(f: &Fixture, account: &str) -> (u32, u32) {
    let txn = Txn::new(&*f.db);
    let acct = super::account_id(&txn, account).unwrap();
    let mb = super::mailbox_by_name(&txn, acct, "INBOX")
        .unwrap()
        .unwrap();
    let marker = super::recent::marker(&txn, acct, mb.id).unwrap();
    (
        marker,
        super::recent::count_above(&txn, acct, &mb, marker).unwrap(),
    )
}

#[test]
fn recent_claims_give_each_message_to_one_claimer() {
    let f = Fixture::new();
    let a = f.user("a");
    for i in 0..3 {
        f.deliver(&[a.as_str()], b"Subject: x\r\n\r\nx\r\n", &format!("d{i}"));
    }
    assert_eq!(marker_and_recent(&f, &a), (0, 3));
    // The first claim up to 2 gets 1 and 2; a second claim up to 2 gets nothing.
    assert_eq!(claim(&f, &a, 2), Ok(Reply::Count(0)));
    assert_eq!(claim(&f, &a, 2), Ok(Reply::Count(2)));
    assert_eq!(marker_and_recent(&f, &a), (2, 1));
    // A claim past the highest UID stops there; the marker never moves back.
    assert_eq!(claim(&f, &a, 99), Ok(Reply::Count(2)));
    assert_eq!(claim(&f, &a, 1), Ok(Reply::Count(3)));
    assert_eq!(marker_and_recent(&f, &a), (3, 0));
    // An expunged message above the marker is not counted.
    f.deliver(&[a.as_str()], b"y", "d3");
    f.deliver(&[a.as_str()], b"z", "d4");
    f.ok(Command::StoreFlags {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uids: UidSet(vec![UidRange { first: 4, last: 4 }]),
        mode: FlagMode::Add,
        flags: vec!["\\Deleted".into()],
        unchanged_since: 0,
    });
    f.ok(Command::Expunge {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uids: None,
        force: false,
    });
    assert_eq!(marker_and_recent(&f, &a), (3, 1));
    // A claim naming another UIDVALIDITY is refused and changes nothing.
    let refused = f.run(Command::ClaimRecent {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uid_validity: 1,
        up_to: 5,
    });
    assert_eq!(refused.unwrap_err().kind, ErrorKind::FailedPrecondition);
    assert_eq!(marker_and_recent(&f, &a), (3, 1));
}

#[test]
fn recent_counts_past_one_chunk() {
    let f = Fixture::new();
    let a = f.user("a");
    let targets = |i: usize| {
        vec![Target {
            account: a.clone(),
            mailbox: "INBOX".into(),
            delivery_id: format!("bulk{i}"),
            flags: vec![],
        }]
    };
    for i in 0..2500 {
        f.ok(Command::Deliver {
            targets: targets(i),
            body: b"b".to_vec(),
            internal_date: 1,
        });
    }
    assert_eq!(marker_and_recent(&f, &a), (0, 2500));
    claim(&f, &a, 1000).unwrap();
    assert_eq!(marker_and_recent(&f, &a), (1000, 1500));
}

fn touch_every_keyspace(f: &Fixture) {
    let a = f.user("a");
    let b = f.user("b");
    f.ok(Command::AddAlias {
        address: "info@example.test".into(),
        targets: vec![a.clone()],
    });
    f.ok(Command::AddListMembers {
        address: "team@example.test".into(),
        members: vec![a.clone(), b.clone()],
    });
    // Large enough for RocksDB's blob files (the `blob` column family's large values).
    let big = vec![b'x'; 64 << 10];
    f.deliver(&[a.as_str(), b.as_str()], &big, "d1");
    f.deliver(&[a.as_str()], b"small", "d2");
    f.ok(Command::StoreFlags {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uids: all(),
        mode: FlagMode::Add,
        flags: vec!["\\Deleted".into()],
        unchanged_since: 0,
    });
    f.ok(Command::Expunge {
        account: b.clone(),
        mailbox: "INBOX".into(),
        uids: None,
        force: true,
    });
    f.ok(Command::RenameMailbox {
        account: a.clone(),
        from: "Junk".into(),
        to: "Spam".into(),
        now_ms: 1_700_000_000_001,
    });
    let mut e = entry("E1");
    e.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
    f.ok(Command::Enqueue {
        entry: Box::new(e),
        body: b"queued".to_vec(),
        request_id: "r1".into(),
    });
    f.ok(Command::Lock {
        op: LockOp::Acquire,
        name: "n".into(),
        owner: "o".into(),
        ttl_ms: 10,
        now_ms: 0,
    });
    f.ok(Command::ClaimRecent {
        account: a.clone(),
        mailbox: "INBOX".into(),
        uid_validity: 0,
        up_to: 1,
    });
}

#[test]
fn every_column_family_round_trips_on_rocksdb_as_in_memory() {
    let memory = Fixture::new();
    let rocks = Fixture::on_rocksdb();
    touch_every_keyspace(&memory);
    touch_every_keyspace(&rocks);
    let (m, r) = (memory.dump(), rocks.dump());
    for (name, pairs) in &r {
        assert!(!pairs.is_empty(), "nothing reached {name}");
    }
    assert_eq!(m, r, "the engines disagree on the state machine's bytes");
    let blob = &r.iter().find(|(c, _)| *c == cf::BLOB).unwrap().1;
    assert!(blob.iter().any(|(_, v)| v.len() == 64 << 10));
}

#[test]
fn operators_changes_are_audited_with_the_change_and_only_when_it_lands() {
    use super::audit;
    let f = Fixture::new();
    let by = "spiffe://tern.test/tern/admin from 127.0.0.1";
    let audited = |action: Command| Command::Audited {
        by: by.into(),
        at_ms: 1_000,
        action: Box::new(action),
    };
    f.ok(audited(Command::AddDomain {
        name: "other.test".into(),
    }));
    f.ok(audited(Command::AddUser {
        address: "carol@other.test".into(),
        password_hash: "$argon2id$secret-hash".into(),
        quota_bytes: 0,
        now_ms: 1_000,
    }));
    // A change that fails (the domain exists) leaves no record.
    assert!(f
        .run(audited(Command::AddDomain {
            name: "other.test".into(),
        }))
        .is_err());
    f.ok(Command::AuditNote {
        by: by.into(),
        at_ms: 2_000,
        action: "add-node".into(),
        target: "node 4 at 127.0.0.1:7104".into(),
    });
    let txn = Txn::new(&*f.db);
    let log = audit::list(&txn, 10, 0).unwrap();
    let seen: Vec<(u64, &str, &str)> = log
        .iter()
        .map(|r| (r.seq, r.action.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (3, "add-node", "node 4 at 127.0.0.1:7104"),
            (2, "add-user", "carol@other.test quota=0"),
            (1, "add-domain", "other.test"),
        ]
    );
    assert!(log.iter().all(|r| r.by == by));
    assert!(
        !format!("{log:?}").contains("secret-hash"),
        "no password hash in the log"
    );
    // The user was created by the audited command itself.
    assert!(txn
        .exists(cf::DIR, &crate::keys::user_key("carol@other.test"))
        .unwrap());
    // Paging back: older than 3, one at a time.
    let older = audit::list(&txn, 1, 3).unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].seq, 2);
}

#[test]
fn the_audit_log_keeps_a_bounded_window() {
    use super::audit;
    let f = Fixture::new();
    let note = || Command::AuditNote {
        by: "admin".into(),
        at_ms: 1,
        action: "backup".into(),
        target: "b".into(),
    };
    f.ok(note());
    // Jump the counter to the bound, as after 100,000 records.
    let mut txn = Txn::new(&*f.db);
    txn.put_raw(
        cf::META,
        crate::keys::meta::AUDIT_NEXT.to_vec(),
        (audit::MAX_RECORDS + 1).to_be_bytes().to_vec(),
    );
    f.db.write(txn.into_batch()).unwrap();
    f.ok(note());
    let txn = Txn::new(&*f.db);
    assert!(!txn.exists(cf::DIR, &crate::keys::audit_key(1)).unwrap());
    assert!(txn
        .exists(cf::DIR, &crate::keys::audit_key(audit::MAX_RECORDS + 1))
        .unwrap());
}

#[test]
fn delivery_and_enqueue_ids_and_the_change_feed_are_pruned_after_two_epochs() {
    use super::retention;
    let f = Fixture::new();
    let a = f.user("alice");
    let delivered_once = |id: &str| -> bool {
        let Reply::Delivered { results, .. } = f.deliver(&[&a], b"x", id) else {
            panic!()
        };
        results[0].result.clone().unwrap().duplicate
    };
    assert!(!delivered_once("old"));
    f.ok(Command::Enqueue {
        entry: Box::new(entry("E1")),
        body: b"m".to_vec(),
        request_id: "r-old".into(),
    });
    f.ok(Command::DeleteEntry { id: "E1".into() });
    let (dedup_before, changes_before) = (f.count(cf::DEDUP), f.count(cf::CHANGES));

    // Epoch 1: nothing is old enough yet; a record written now belongs to epoch 1.
    assert_eq!(
        f.ok(Command::AdvanceRetention { now_ms: 1_000 }),
        Reply::Count(1)
    );
    assert!(!delivered_once("new"));
    assert_eq!(f.ok(Command::PruneRetained { max: 100 }), Reply::Count(0));
    assert!(
        delivered_once("old"),
        "a retry within the retention is still recognized"
    );

    // Epoch 2: epoch 0's records go, in bounded batches.
    f.ok(Command::AdvanceRetention { now_ms: 2_000 });
    assert_eq!(f.ok(Command::PruneRetained { max: 1 }), Reply::Count(1));
    let Reply::Count(rest) = f.ok(Command::PruneRetained { max: 1_000 }) else {
        panic!()
    };
    assert!(rest > 1, "{rest}");
    assert_eq!(f.ok(Command::PruneRetained { max: 1_000 }), Reply::Count(0));
    assert!(f.count(cf::DEDUP) < dedup_before);
    assert!(f.count(cf::CHANGES) < changes_before);
    let txn = Txn::new(&*f.db);
    assert_eq!(retention::epoch(&txn).unwrap(), 2);
    assert_eq!(retention::epoch_started_ms(&txn).unwrap(), 2_000);
    let account = super::account_id(&txn, &a).unwrap();
    assert!(
        retention::feed_floor(&txn, account).unwrap() > 1,
        "the feed's floor rose past what was pruned"
    );
    drop(txn);

    // The pruned ids are forgotten, the newer one is not.
    assert!(delivered_once("new"));
    assert!(!delivered_once("old"), "a pruned delivery id is forgotten");
    let again = f.ok(Command::Enqueue {
        entry: Box::new(entry("E2")),
        body: b"m".to_vec(),
        request_id: "r-old".into(),
    });
    assert!(matches!(again, Reply::Entry(e) if e.id == "E2"));
}

#[path = "accept_tests.rs"]
mod accept;
