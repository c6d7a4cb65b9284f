//! Hand-made histories, linearizable and not, with the reason for each verdict.

use std::collections::BTreeSet;

use crate::mail::*;
use crate::models::*;
use crate::{linearizable, linearizable_by_key, Operation};

fn w(client: u32, call: u64, ret: u64, v: u64) -> Operation<RegisterOp, u64> {
    Operation::done(client, call, ret, RegisterOp::Write(v), v)
}

fn r(client: u32, call: u64, ret: u64, v: u64) -> Operation<RegisterOp, u64> {
    Operation::done(client, call, ret, RegisterOp::Read, v)
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    assert!(linearizable(&Register, &[w(0, 0, 10, 1), r(1, 5, 6, 1)]).is_ok());
    assert!(linearizable(&Register, &[w(0, 0, 10, 1), r(1, 5, 6, 0)]).is_ok());
}

#[test]
fn a_stale_read_after_a_completed_write_is_not_linearizable() {
    // The write of 2 returned before the read began: the read must see 2.
    let h = [w(0, 0, 1, 1), w(0, 2, 3, 2), r(1, 4, 5, 1)];
    let v = linearizable(&Register, &h);
    assert!(!v.is_ok(), "{v:?}");
}

#[test]
fn reads_may_not_go_back_in_time() {
    // Two concurrent writes, both done by 10; then a reader sees 2 and later 1: impossible,
    // whichever write took effect last.
    let h = [
        w(0, 0, 10, 1),
        w(1, 0, 10, 2),
        r(2, 20, 21, 2),
        r(2, 30, 31, 1),
    ];
    assert!(!linearizable(&Register, &h).is_ok());
    // While the writes are still running, 2 then 1 is possible (2 took effect, then 1).
    let h = [
        w(0, 0, 100, 1),
        w(1, 0, 100, 2),
        r(2, 10, 20, 2),
        r(2, 30, 40, 1),
    ];
    assert!(linearizable(&Register, &h).is_ok());
}

#[test]
fn an_unknown_outcome_may_have_happened_or_not() {
    // The write of 7 timed out: a later read may see it...
    let h = [
        w(0, 0, 1, 1),
        Operation::unknown(1, 2, RegisterOp::Write(7)),
        r(2, 10, 11, 7),
    ];
    assert!(linearizable(&Register, &h).is_ok());
    // ... or not ...
    let h = [
        w(0, 0, 1, 1),
        Operation::unknown(1, 2, RegisterOp::Write(7)),
        r(2, 10, 11, 1),
    ];
    assert!(linearizable(&Register, &h).is_ok());
    // ... but not before it was sent.
    let h = [
        w(0, 0, 1, 1),
        r(2, 2, 3, 7),
        Operation::unknown(1, 10, RegisterOp::Write(7)),
    ];
    assert!(!linearizable(&Register, &h).is_ok());
}

#[test]
fn operations_that_only_touch_are_ordered() {
    // The write returned at 5 and the read was invoked at 5: the read must see it.
    assert!(!linearizable(&Register, &[w(0, 0, 5, 1), r(1, 5, 6, 0)]).is_ok());
    assert!(linearizable(&Register, &[w(0, 0, 5, 1), r(1, 5, 6, 1)]).is_ok());
}

#[test]
fn a_long_concurrent_history_is_searched_quickly() {
    // 6 clients, 25 rounds each of a write and a read of their own value, all of a round
    // overlapping: linearizable (each read right after its own write), and the memoization
    // keeps the search fast either way.
    let mut h = Vec::new();
    for round in 0..25u64 {
        for c in 0..6u32 {
            let v = round * 100 + u64::from(c) + 1;
            let t = round * 10;
            h.push(w(c, t, t + 5, v));
            h.push(r(c, t + 1, t + 4, v));
        }
    }
    let started = std::time::Instant::now();
    assert!(linearizable(&Register, &h).is_ok());
    // The last read sees a value nobody wrote: not linearizable, found without trying
    // every order of the earlier rounds.
    let last = h.len() - 1;
    h[last].output = Some(999);
    assert!(!linearizable(&Register, &h).is_ok());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn flags_per_message_are_checked_key_by_key() {
    type Op = Operation<FlagsOp, FlagsAnswer>;
    let store = |c, a, b, f: &[&str], after: &[&str]| -> (u32, Op) {
        (
            1,
            Op::done(
                c,
                a,
                b,
                FlagsOp::Add(set(f)),
                FlagsAnswer::Flags(set(after)),
            ),
        )
    };
    let fetch = |key, c, a, b, f: &[&str]| -> (u32, Op) {
        (
            key,
            Op::done(c, a, b, FlagsOp::Fetch, FlagsAnswer::Flags(set(f))),
        )
    };
    // Two clients add \Seen and \Flagged to message 1 concurrently; a later fetch sees both.
    let good = vec![
        store(0, 0, 10, &["\\Seen"], &["\\Seen"]),
        store(1, 0, 10, &["\\Flagged"], &["\\Flagged", "\\Seen"]),
        fetch(1, 2, 20, 30, &["\\Flagged", "\\Seen"]),
        fetch(2, 2, 20, 30, &[]),
    ];
    let ops: Vec<Op> = good.iter().map(|(_, o)| o.clone()).collect();
    let keys: Vec<u32> = good.iter().map(|(k, _)| *k).collect();
    let by_key = |o: &Op| keys[ops.iter().position(|x| x == o).unwrap()];
    assert!(linearizable_by_key(&Flags, &ops, by_key).is_ok());
    // A fetch after both stores returned that misses one of them: a lost update.
    let mut bad = good.clone();
    bad[2] = fetch(1, 2, 20, 30, &["\\Seen"]);
    let ops: Vec<Op> = bad.iter().map(|(_, o)| o.clone()).collect();
    let keys: Vec<u32> = bad.iter().map(|(k, _)| *k).collect();
    let by_key = |o: &Op| keys[ops.iter().position(|x| x == o).unwrap()];
    let (key, _) = linearizable_by_key(&Flags, &ops, by_key).unwrap_err();
    assert_eq!(key, 1);
    // An expunged message stays gone.
    let h = [
        Op::done(0, 0, 1, FlagsOp::Expunge, FlagsAnswer::Done),
        Op::done(1, 2, 3, FlagsOp::Fetch, FlagsAnswer::Flags(set(&[]))),
    ];
    assert!(!linearizable(&Flags, &h).is_ok());
}

#[test]
fn mailbox_listings_must_agree_with_creates_and_deletes() {
    type Op = Operation<MailboxOp, MailboxAnswer>;
    let model = Mailboxes {
        initial: set(&["INBOX"]),
    };
    let create = |c, a, b, n: &str, ok| {
        Op::done(
            c,
            a,
            b,
            MailboxOp::Create(n.into()),
            if ok {
                MailboxAnswer::Ok
            } else {
                MailboxAnswer::No
            },
        )
    };
    let list = |c, a, b, names: &[&str]| {
        Op::done(c, a, b, MailboxOp::List, MailboxAnswer::Names(set(names)))
    };
    // Two clients create the same name at once: exactly one may succeed.
    let h = [
        create(0, 0, 10, "Work", true),
        create(1, 0, 10, "Work", false),
        list(2, 11, 12, &["INBOX", "Work"]),
    ];
    assert!(linearizable(&model, &h).is_ok());
    let h = [
        create(0, 0, 10, "Work", true),
        create(1, 0, 10, "Work", true),
    ];
    assert!(!linearizable(&model, &h).is_ok(), "both creates succeeded");
    // A listing after the create returned must show it.
    let h = [create(0, 0, 10, "Work", true), list(1, 11, 12, &["INBOX"])];
    assert!(!linearizable(&model, &h).is_ok());
}

fn submitted(id: &str, digest: u64, outcomes: &[Outcome]) -> Submitted {
    Submitted {
        message_id: id.into(),
        digest,
        outcomes: outcomes.to_vec(),
    }
}

fn found(id: &str, digest: u64) -> Found {
    Found {
        message_id: id.into(),
        digest,
    }
}

#[test]
fn lost_duplicated_corrupted_and_phantom_messages_are_told_apart() {
    use Outcome::*;
    let subs = [
        submitted("<ok>", 1, &[Accepted]),
        submitted("<lost>", 2, &[Accepted]),
        submitted("<dup>", 3, &[Accepted]),
        submitted("<retried>", 4, &[Unknown, Accepted]),
        submitted("<refused>", 5, &[Refused]),
        submitted("<maybe>", 6, &[Unknown]),
        submitted("<bent>", 7, &[Accepted]),
    ];
    let seen = [
        found("<ok>", 1),
        found("<dup>", 3),
        found("<dup>", 3),
        found("<retried>", 4),
        found("<retried>", 4),
        found("<refused>", 5),
        found("<maybe>", 6),
        found("<bent>", 70),
        found("<never-sent>", 8),
    ];
    let report = check_delivery(&subs, &seen);
    assert_eq!(report.lost, ["<lost>"]);
    assert_eq!(report.duplicated, ["<dup>"]);
    assert_eq!(report.duplicated_after_unknown, ["<retried>"]);
    assert_eq!(report.corrupted, ["<bent>"]);
    assert_eq!(report.phantom, ["<refused>", "<never-sent>"]);
    assert!(!report.is_clean());
    let clean = check_delivery(&subs[..1], &seen[..1]);
    assert!(clean.is_clean(), "{clean:?}");
}

#[test]
fn uids_are_never_reused_and_grow_with_append_order() {
    let seen = |uid, id: &str| UidSeen {
        mailbox: "INBOX".into(),
        uid_validity: 7,
        uid,
        message_id: id.into(),
    };
    assert!(reused_uids(&[seen(1, "<a>"), seen(2, "<b>"), seen(1, "<a>")]).is_empty());
    let reused = reused_uids(&[seen(1, "<a>"), seen(1, "<b>")]);
    assert_eq!(reused.len(), 1);

    let append = |call, ret, uid| Appended {
        mailbox: "INBOX".into(),
        call,
        ret,
        uid_validity: 7,
        uid,
    };
    // Concurrent appends may take either order; sequential ones must grow.
    assert!(uids_out_of_order(&[append(0, 10, 2), append(5, 15, 1), append(20, 30, 3)]).is_empty());
    let wrong = uids_out_of_order(&[append(0, 10, 5), append(20, 30, 3)]);
    assert_eq!(wrong.len(), 1);
}

mod placement_histories {
    use crate::mail::{Found, Outcome::*};
    use crate::placement::*;

    fn placed(steps: Vec<(Step, crate::mail::Outcome)>) -> Placed {
        Placed {
            message_id: "<m>".into(),
            digest: 7,
            steps,
        }
    }
    fn found(mailbox: &str) -> FoundIn {
        FoundIn {
            mailbox: mailbox.into(),
            message: Found {
                message_id: "<m>".into(),
                digest: 7,
            },
        }
    }
    fn append() -> Step {
        Step::Append("W".into())
    }
    fn mv() -> Step {
        Step::Move {
            from: "W".into(),
            to: "A".into(),
        }
    }

    #[test]
    fn acknowledged_moves_and_deletes_fix_the_place() {
        let m = placed(vec![(append(), Accepted), (mv(), Accepted)]);
        assert!(check_placement(std::slice::from_ref(&m), &[found("A")]).is_clean());
        let r = check_placement(std::slice::from_ref(&m), &[found("W")]);
        assert_eq!(r.misplaced, vec![("<m>".into(), "W".into())], "moved back");
        assert_eq!(
            check_placement(std::slice::from_ref(&m), &[]).lost,
            vec!["<m>".to_string()]
        );
        let r = check_placement(&[m], &[found("A"), found("W")]);
        assert_eq!(r.duplicated, vec!["<m>".to_string()], "a move that copied");

        let d = placed(vec![
            (append(), Accepted),
            (mv(), Accepted),
            (Step::Delete("A".into()), Accepted),
        ]);
        assert!(check_placement(std::slice::from_ref(&d), &[]).is_clean());
        assert!(
            !check_placement(&[d], &[found("A")]).is_clean(),
            "resurrected"
        );
    }

    #[test]
    fn unknown_outcomes_allow_both_and_refusals_change_nothing() {
        let m = placed(vec![(append(), Accepted), (mv(), Unknown)]);
        assert!(check_placement(std::slice::from_ref(&m), &[found("W")]).is_clean());
        assert!(check_placement(std::slice::from_ref(&m), &[found("A")]).is_clean());
        assert!(!check_placement(&[m], &[]).is_clean(), "lost either way");

        let u = placed(vec![(append(), Unknown)]);
        assert!(check_placement(std::slice::from_ref(&u), &[]).is_clean());
        assert!(check_placement(&[u], &[found("W")]).is_clean());

        let r = placed(vec![
            (append(), Accepted),
            (Step::Delete("W".into()), Refused),
        ]);
        assert!(
            !check_placement(std::slice::from_ref(&r), &[]).is_clean(),
            "a refused delete"
        );
        assert!(check_placement(&[r], &[found("W")]).is_clean());
        let never = placed(vec![(append(), Refused)]);
        assert!(!check_placement(&[never], &[found("W")]).is_clean());
    }

    #[test]
    fn content_and_strangers_are_checked() {
        let m = placed(vec![(append(), Accepted)]);
        let mut changed = found("W");
        changed.message.digest = 8;
        assert_eq!(
            check_placement(std::slice::from_ref(&m), &[changed])
                .corrupted
                .len(),
            1
        );
        let mut stranger = found("W");
        stranger.message.message_id = "<x>".into();
        let r = check_placement(&[m], &[found("W"), stranger]);
        assert_eq!(r.phantom, vec!["<x>".to_string()]);
    }
}
