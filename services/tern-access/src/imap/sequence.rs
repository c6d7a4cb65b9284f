//! Sequence sets between the grammar's form and the view's ([`Span`]s), and UID sets in
//! response codes (`COPYUID 9 1:3,7 20:23`).

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::view::{Span, STAR};

fn value(v: &SeqOrUid) -> u64 {
    match v {
        SeqOrUid::Value(n) => u64::from(n.get()),
        SeqOrUid::Asterisk => STAR,
    }
}

/// The spans of a sequence set, `*` left as [`STAR`] for the view to resolve.
pub fn spans(set: &SequenceSet) -> Vec<Span> {
    set.0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(v) => Span {
                first: value(v),
                last: value(v),
            },
            Sequence::Range(a, b) => Span {
                first: value(a),
                last: value(b),
            },
        })
        .collect()
}

/// `1:3,7` for ascending or unordered UIDs (kept in the given order, runs joined), as
/// UIDPLUS response codes want them: the n-th source UID pairs with the n-th target UID.
pub fn compact(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut j = i;
        while j + 1 < uids.len() && uids[j].checked_add(1) == Some(uids[j + 1]) {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{start}:{}", uids[j]));
        } else {
            out.push_str(&start.to_string());
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_joins_runs_in_order() {
        assert_eq!(compact(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(compact(&[5]), "5");
        assert_eq!(compact(&[4, 3]), "4,3");
        assert_eq!(compact(&[]), "");
    }

    #[test]
    fn the_largest_number_is_not_star() {
        let set: SequenceSet = "1:4294967295".try_into().unwrap();
        assert_eq!(
            spans(&set),
            vec![Span {
                first: 1,
                last: 4_294_967_295
            }]
        );
        assert_ne!(spans(&set)[0].last, STAR);
    }

    #[test]
    fn spans_keep_star() {
        let set: SequenceSet = "1:*,4".try_into().unwrap();
        assert_eq!(
            spans(&set),
            vec![
                Span {
                    first: 1,
                    last: STAR
                },
                Span { first: 4, last: 4 }
            ]
        );
    }
}
