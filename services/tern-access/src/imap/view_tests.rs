//! The sequence map and RFC 3501's rules about when changes may be announced.

use super::*;

fn meta(uid: u32, modseq: u64) -> MessageMeta {
    MessageMeta {
        uid,
        flags: vec![],
        internal_date: 0,
        size: 10,
        modseq,
        recent: false,
    }
}

fn view(uids: &[u32]) -> View {
    View::new(uids.iter().map(|&u| meta(u, 1)).collect(), 9, 100, 1, false)
}

fn span(first: u64, last: u64) -> Span {
    Span { first, last }
}

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}

#[test]
fn sequence_sets_resolve_star_and_reject_numbers_past_the_end() {
    let v = view(&[3, 5, 9, 12]);
    assert_eq!(v.uids_for_seqs(&[span(2, STAR)]).unwrap(), vec![5, 9, 12]);
    assert_eq!(v.uids_for_seqs(&[span(STAR, STAR)]).unwrap(), vec![12]);
    assert_eq!(v.uids_for_seqs(&[span(3, 1)]).unwrap(), vec![3, 5, 9]);
    assert!(v.uids_for_seqs(&[span(5, 5)]).is_err());
    assert!(view(&[])
        .uids_for_seqs(&[span(1, STAR)])
        .unwrap()
        .is_empty());
    assert!(view(&[]).uids_for_seqs(&[span(1, 1)]).is_err());
}

#[test]
fn uid_sets_skip_missing_uids_and_star_is_the_highest() {
    let v = view(&[3, 5, 9, 12]);
    assert_eq!(v.uids_for_uids(&[span(4, 10)]), vec![5, 9]);
    // 20:* is *:20, which holds the highest UID (RFC 3501 §6.4.8).
    assert_eq!(v.uids_for_uids(&[span(20, STAR)]), vec![12]);
    assert_eq!(v.uids_for_uids(&[span(1, 2), span(12, 12)]), vec![12]);
    assert!(view(&[]).uids_for_uids(&[span(1, STAR)]).is_empty());
    // Only `*` means the highest: a literal 4294967295 past every UID names none.
    assert!(v.uids_for_uids(&[span(13, u64::from(u32::MAX))]).is_empty());
    assert_eq!(v.uids_for_uids(&[span(12, u64::from(u32::MAX))]), vec![12]);
    // Overlapping and repeated spans are merged, not walked again.
    let many: Vec<Span> = std::iter::repeat_n(span(1, STAR), 10_000).collect();
    assert_eq!(v.uids_for_uids(&many), vec![3, 5, 9, 12]);
    assert_eq!(v.uids_for_seqs(&many).unwrap(), vec![3, 5, 9, 12]);
    assert_eq!(
        v.uids_for_seqs(&[span(3, 4), span(1, 2)]).unwrap(),
        vec![3, 5, 9, 12]
    );
}

#[test]
fn expunges_wait_for_a_command_that_may_announce_them() {
    let mut v = view(&[3, 5, 9]);
    v.expunged_elsewhere(&[5], 4);
    // During FETCH/STORE/SEARCH: nothing, and sequence number 2 still means UID 5.
    let mut out = Vec::new();
    v.announce(false, false, false, &mut out);
    assert!(out.is_empty());
    assert_eq!(v.seq_of(9), Some(3));
    assert!(v.is_expunged(5));
    // At the end of NOOP: announced, and the map shifts.
    v.announce(true, false, false, &mut out);
    assert_eq!(text(out), "* 2 EXPUNGE\r\n");
    assert_eq!(v.seq_of(9), Some(2));
    assert_eq!(v.exists(), 2);
}

#[test]
fn own_expunges_are_sent_highest_first_and_echoes_ignored() {
    let mut v = view(&[1, 2, 3, 4, 5]);
    let mut out = Vec::new();
    v.remove(&[2, 4], &mut out);
    assert_eq!(
        text(std::mem::take(&mut out)),
        "* 4 EXPUNGE\r\n* 2 EXPUNGE\r\n"
    );
    // The change feed later reports the same expunge: nothing more to say.
    v.expunged_elsewhere(&[2, 4], 7);
    v.announce(true, false, false, &mut out);
    assert!(out.is_empty());
}

#[test]
fn additions_are_announced_as_exists_once_read() {
    let mut v = view(&[1, 2]);
    v.added_elsewhere(&[3, 4], 5);
    assert_eq!(v.pending_additions(), vec![3, 4]);
    assert!(v.has_pending());
    v.add_records(vec![meta(4, 5), meta(3, 5)]);
    let mut out = Vec::new();
    v.announce(false, false, false, &mut out);
    assert_eq!(text(out), "* 4 EXISTS\r\n");
    assert_eq!(v.seq_of(4), Some(4));
    assert!(!v.has_pending());
    assert_eq!(v.uid_next, 100);
}

#[test]
fn flag_changes_are_announced_unless_they_echo_our_own() {
    let mut v = view(&[1, 2]);
    v.set_flags(1, vec!["\\Seen".into()], 6);
    v.flags_changed_elsewhere(1, vec!["\\Seen".into()], 6);
    v.flags_changed_elsewhere(2, vec!["\\Flagged".into()], 7);
    let mut out = Vec::new();
    v.announce(true, true, true, &mut out);
    assert_eq!(
        text(out),
        "* 2 FETCH (UID 2 MODSEQ (7) FLAGS (\\Flagged))\r\n"
    );
    assert_eq!(v.highest_modseq, 7);
}
