//! SEARCH keys (RFC 3501 §6.4.4, RFC 7162 MODSEQ) turned into the store's search key, so
//! the search runs where the messages are and only UIDs travel back.
//!
//! Sequence sets are resolved against the session's view first (the store knows UIDs only),
//! dates become the first second of their UTC day (RFC 3501 compares dates without time or
//! zone), and the keys about \Recent (RECENT, NEW, OLD) become the UIDs recent in this
//! session, which only the session knows.

use chrono::Datelike;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use tern_proto::store::v1 as pb;
use tern_proto::store::v1::search_key::Key;

use super::sequence::spans;
use super::view::View;

/// What a search asks for, in the store's terms.
pub struct Translated {
    /// The store's key.
    pub key: pb::SearchKey,
    /// Whether a MODSEQ key was used (the response then carries `(MODSEQ n)`).
    pub uses_modseq: bool,
}

/// Translates the criteria (implicitly ANDed). Errors are for a BAD reply.
pub fn translate(criteria: &Vec1<SearchKey<'_>>, view: &View) -> Result<Translated, &'static str> {
    let mut uses_modseq = false;
    let keys = criteria
        .as_ref()
        .iter()
        .map(|k| key(k, view, &mut uses_modseq, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Translated {
        key: and(keys),
        uses_modseq,
    })
}

fn wrap(k: Key) -> pb::SearchKey {
    pb::SearchKey { key: Some(k) }
}

fn and(mut keys: Vec<pb::SearchKey>) -> pb::SearchKey {
    if keys.len() == 1 {
        return keys.remove(0);
    }
    wrap(Key::And(pb::SearchKeys { keys }))
}

fn flag(name: &str, set: bool) -> pb::SearchKey {
    wrap(if set {
        Key::FlagSet(name.into())
    } else {
        Key::FlagUnset(name.into())
    })
}

fn nothing() -> pb::SearchKey {
    wrap(Key::Not(Box::new(wrap(Key::All(true)))))
}

/// Midnight UTC of a date, in Unix seconds.
pub fn day_start(d: &NaiveDate) -> i64 {
    let d = d.as_ref();
    tern_mail::date::days_from_civil(d.year() as i64, d.month().into(), d.day().into()) * 86_400
}

fn text(s: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

fn header(name: &str, value: &impl AsRef<[u8]>) -> pb::SearchKey {
    wrap(Key::Header(pb::HeaderMatch {
        name: name.into(),
        value: text(value),
    }))
}

/// The explicit UIDs of a set as store ranges.
pub fn uid_ranges(uids: &[u32]) -> pb::UidSet {
    let mut ranges: Vec<pb::UidRange> = Vec::new();
    for &u in uids {
        match ranges.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(u) => r.last = u,
            _ => ranges.push(pb::UidRange { first: u, last: u }),
        }
    }
    pb::UidSet { ranges }
}

fn set_key(set: &SequenceSet, view: &View, uid: bool) -> Result<pb::SearchKey, &'static str> {
    let spans = spans(set);
    let uids = if uid {
        view.uids_for_uids(&spans)
    } else {
        view.uids_for_seqs(&spans)?
    };
    Ok(uids_key(&uids))
}

/// A key matching exactly `uids`.
fn uids_key(uids: &[u32]) -> pb::SearchKey {
    if uids.is_empty() {
        return nothing();
    }
    wrap(Key::Uids(uid_ranges(uids)))
}

/// Deepest key nesting translated (the command parser already bounds parentheses; this
/// bounds chains of NOT/OR that need none).
const MAX_DEPTH: usize = 128;

fn key(
    k: &SearchKey<'_>,
    view: &View,
    modseq: &mut bool,
    depth: usize,
) -> Result<pb::SearchKey, &'static str> {
    if depth > MAX_DEPTH {
        return Err("search keys nested too deeply");
    }
    let next = depth + 1;
    Ok(match k {
        SearchKey::All => wrap(Key::All(true)),
        SearchKey::And(keys) => and(keys
            .as_ref()
            .iter()
            .map(|k| key(k, view, modseq, next))
            .collect::<Result<Vec<_>, _>>()?),
        SearchKey::Or(a, b) => wrap(Key::Or(pb::SearchKeys {
            keys: vec![key(a, view, modseq, next)?, key(b, view, modseq, next)?],
        })),
        SearchKey::Not(k) => wrap(Key::Not(Box::new(key(k, view, modseq, next)?))),
        SearchKey::SequenceSet(set) => set_key(set, view, false)?,
        SearchKey::Uid(set) => set_key(set, view, true)?,
        SearchKey::Answered => flag("\\Answered", true),
        SearchKey::Unanswered => flag("\\Answered", false),
        SearchKey::Deleted => flag("\\Deleted", true),
        SearchKey::Undeleted => flag("\\Deleted", false),
        SearchKey::Draft => flag("\\Draft", true),
        SearchKey::Undraft => flag("\\Draft", false),
        SearchKey::Flagged => flag("\\Flagged", true),
        SearchKey::Unflagged => flag("\\Flagged", false),
        SearchKey::Seen => flag("\\Seen", true),
        SearchKey::Unseen => flag("\\Seen", false),
        SearchKey::Keyword(k) => flag(k.inner(), true),
        SearchKey::Unkeyword(k) => flag(k.inner(), false),
        SearchKey::Recent => uids_key(&view.recent_uids()),
        // NEW is RECENT UNSEEN, OLD is NOT RECENT (RFC 3501 §6.4.4).
        SearchKey::New => and(vec![uids_key(&view.recent_uids()), flag("\\Seen", false)]),
        SearchKey::Old => wrap(Key::Not(Box::new(uids_key(&view.recent_uids())))),
        SearchKey::Bcc(v) => header("Bcc", v),
        SearchKey::Cc(v) => header("Cc", v),
        SearchKey::From(v) => header("From", v),
        SearchKey::To(v) => header("To", v),
        SearchKey::Subject(v) => header("Subject", v),
        SearchKey::Header(name, v) => header(&text(name), v),
        SearchKey::Body(v) => wrap(Key::Body(text(v))),
        SearchKey::Text(v) => wrap(Key::Text(text(v))),
        SearchKey::Larger(n) => wrap(Key::Larger(u64::from(*n))),
        SearchKey::Smaller(n) => wrap(Key::Smaller(u64::from(*n))),
        SearchKey::Before(d) => wrap(Key::Before(day_start(d))),
        SearchKey::Since(d) => wrap(Key::Since(day_start(d))),
        SearchKey::On(d) => and(vec![
            wrap(Key::Since(day_start(d))),
            wrap(Key::Before(day_start(d) + 86_400)),
        ]),
        SearchKey::SentBefore(d) => wrap(Key::SentBefore(day_start(d))),
        SearchKey::SentSince(d) => wrap(Key::SentSince(day_start(d))),
        SearchKey::SentOn(d) => and(vec![
            wrap(Key::SentSince(day_start(d))),
            wrap(Key::SentBefore(day_start(d) + 86_400)),
        ]),
        SearchKey::ModSequence { modseq: m, .. } => {
            *modseq = true;
            wrap(Key::Modseq(*m))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_compress() {
        let r = uid_ranges(&[1, 2, 3, 7, 9, 10]);
        let pairs: Vec<(u32, u32)> = r.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(pairs, vec![(1, 3), (7, 7), (9, 10)]);
    }
}
