//! Server-side SEARCH: evaluates a criteria tree against message records, parsing the
//! content (with mail-parser, so encoded words, quoted-printable and base64 are decoded
//! before matching) only when a criterion needs it.
//!
//! String matches are case-insensitive substring matches, as RFC 3501 §6.4.4 asks.

use mail_parser::{Address, HeaderValue, Message, MessageParser};
use tern_proto::store::v1 as pb;

use crate::command::{UidRange, UidSet};
use crate::error::{AppError, AppResult};
use crate::model::MessageRec;

/// Deepest criteria nesting accepted (hostile input must not blow the stack).
pub const MAX_DEPTH: usize = 32;

/// A search criterion.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// Every message.
    All,
    /// Has the flag.
    FlagSet(String),
    /// Lacks the flag.
    FlagUnset(String),
    /// Header field `name` contains `value` (empty value: the field exists).
    Header(String, String),
    /// Decoded body text contains.
    Body(String),
    /// Header or body contains.
    Text(String),
    /// RFC822.SIZE greater than.
    Larger(u64),
    /// RFC822.SIZE smaller than.
    Smaller(u64),
    /// INTERNALDATE before (unix seconds).
    Before(i64),
    /// INTERNALDATE on or after.
    Since(i64),
    /// Date: header before.
    SentBefore(i64),
    /// Date: header on or after.
    SentSince(i64),
    /// UID in set.
    Uids(UidSet),
    /// All of.
    And(Vec<Key>),
    /// Any of.
    Or(Vec<Key>),
    /// Not.
    Not(Box<Key>),
    /// MODSEQ at least.
    ModSeq(u64),
}

/// Converts the protobuf criteria, bounding their depth.
pub fn from_proto(key: Option<&pb::SearchKey>, depth: usize) -> AppResult<Key> {
    use pb::search_key::Key as K;
    if depth > MAX_DEPTH {
        return Err(AppError::invalid("search criteria nested too deeply"));
    }
    let Some(key) = key.and_then(|k| k.key.as_ref()) else {
        return Ok(Key::All);
    };
    let list = |ks: &pb::SearchKeys| {
        ks.keys
            .iter()
            .map(|k| from_proto(Some(k), depth + 1))
            .collect::<AppResult<Vec<_>>>()
    };
    Ok(match key {
        K::All(_) => Key::All,
        K::FlagSet(f) => Key::FlagSet(f.clone()),
        K::FlagUnset(f) => Key::FlagUnset(f.clone()),
        K::Header(h) => Key::Header(h.name.clone(), h.value.clone()),
        K::Body(s) => Key::Body(s.clone()),
        K::Text(s) => Key::Text(s.clone()),
        K::Larger(n) => Key::Larger(*n),
        K::Smaller(n) => Key::Smaller(*n),
        K::Before(t) => Key::Before(*t),
        K::Since(t) => Key::Since(*t),
        K::SentBefore(t) => Key::SentBefore(*t),
        K::SentSince(t) => Key::SentSince(*t),
        K::Uids(set) => Key::Uids(uid_set(set)),
        K::And(ks) => Key::And(list(ks)?),
        K::Or(ks) => Key::Or(list(ks)?),
        K::Not(k) => Key::Not(Box::new(from_proto(Some(k), depth + 1)?)),
        K::Modseq(m) => Key::ModSeq(*m),
    })
}

/// Converts a protobuf UID set.
pub fn uid_set(set: &pb::UidSet) -> UidSet {
    UidSet(
        set.ranges
            .iter()
            .map(|r| UidRange {
                first: r.first,
                last: r.last,
            })
            .collect(),
    )
}

impl Key {
    /// Whether evaluating this key needs the message content.
    pub fn needs_content(&self) -> bool {
        match self {
            Key::Header(..)
            | Key::Body(_)
            | Key::Text(_)
            | Key::SentBefore(_)
            | Key::SentSince(_) => true,
            Key::And(ks) | Key::Or(ks) => ks.iter().any(Key::needs_content),
            Key::Not(k) => k.needs_content(),
            _ => false,
        }
    }
}

/// Evaluates `key` for one message; `content` is the raw message when [`Key::needs_content`].
pub fn matches(key: &Key, rec: &MessageRec, max_uid: u32, content: Option<&[u8]>) -> bool {
    let parsed = content.and_then(|c| MessageParser::default().parse(c));
    eval(key, rec, max_uid, parsed.as_ref())
}

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn eval(key: &Key, rec: &MessageRec, max_uid: u32, msg: Option<&Message<'_>>) -> bool {
    match key {
        Key::All => true,
        Key::FlagSet(f) => rec.has_flag(f),
        Key::FlagUnset(f) => !rec.has_flag(f),
        Key::Larger(n) => rec.wire_size > *n,
        Key::Smaller(n) => rec.wire_size < *n,
        Key::Before(t) => rec.internal_date < *t,
        Key::Since(t) => rec.internal_date >= *t,
        Key::ModSeq(m) => rec.modseq >= *m,
        Key::Uids(set) => set.contains(rec.uid, max_uid),
        Key::And(ks) => ks.iter().all(|k| eval(k, rec, max_uid, msg)),
        Key::Or(ks) => ks.iter().any(|k| eval(k, rec, max_uid, msg)),
        Key::Not(k) => !eval(k, rec, max_uid, msg),
        Key::Header(name, value) => msg.is_some_and(|m| header_matches(m, name, value)),
        Key::Body(s) => msg.is_some_and(|m| contains(&body_text(m), s)),
        Key::Text(s) => {
            msg.is_some_and(|m| contains(&all_headers(m), s) || contains(&body_text(m), s))
        }
        Key::SentBefore(t) => msg.and_then(sent_day).is_some_and(|d| d < *t),
        Key::SentSince(t) => msg.and_then(sent_day).is_some_and(|d| d >= *t),
    }
}

/// The day the Date: field names, as the Unix time of its midnight: the date as written,
/// in the field's own zone, because RFC 3501 §6.4.4 compares SENTBEFORE, SENTON and
/// SENTSINCE "disregarding time and timezone". A message without a readable Date: matches
/// none of them.
fn sent_day(m: &Message<'_>) -> Option<i64> {
    let d = m.date()?;
    if d.month == 0 || d.month > 12 || d.day == 0 || d.day > 31 {
        return None;
    }
    let days = tern_mail::date::days_from_civil(d.year.into(), d.month.into(), d.day.into());
    Some(days * 86_400)
}

fn header_matches(m: &Message<'_>, name: &str, value: &str) -> bool {
    m.headers()
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .any(|h| {
            let raw = m
                .raw_message()
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            contains(&header_text(&h.value), value)
                || contains(&String::from_utf8_lossy(raw), value)
        })
}

fn all_headers(m: &Message<'_>) -> String {
    let mut out = String::new();
    for h in m.headers() {
        out.push_str(h.name());
        out.push_str(": ");
        out.push_str(&header_text(&h.value));
        out.push('\n');
    }
    out
}

/// A header value as searchable text: decoded words, display names and addresses.
fn header_text(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(s) => s.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::Address(a) => address_text(a),
        HeaderValue::DateTime(d) => d.to_rfc822(),
        HeaderValue::ContentType(ct) => {
            format!("{}/{}", ct.c_type, ct.c_subtype.as_deref().unwrap_or(""))
        }
        HeaderValue::Received(_) | HeaderValue::Empty => String::new(),
    }
}

fn address_text(a: &Address<'_>) -> String {
    a.iter()
        .map(|addr| {
            format!(
                "{} <{}>",
                addr.name().unwrap_or(""),
                addr.address().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn body_text(m: &Message<'_>) -> String {
    let mut out = String::new();
    for i in 0..m.text_body_count() {
        if let Some(t) = m.body_text(i) {
            out.push_str(&t);
            out.push('\n');
        }
    }
    for i in 0..m.html_body_count() {
        if let Some(t) = m.body_html(i) {
            out.push_str(&t);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: u32, flags: &[&str]) -> MessageRec {
        MessageRec {
            uid,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            internal_date: 1_000,
            size: 500,
            wire_size: 500,
            modseq: uid as u64,
            blob: [0; 32],
        }
    }

    const MSG: &[u8] = b"From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.test>\r\nTo: bob@example.test\r\nSubject: =?UTF-8?B?SGVsbG8gV8O2cmxk?=\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 au lait\r\n";

    #[test]
    fn header_matches_decoded_encoded_words() {
        let r = rec(1, &[]);
        assert!(matches(
            &Key::Header("subject".into(), "wörld".into()),
            &r,
            1,
            Some(MSG)
        ));
        assert!(matches(
            &Key::Header("From".into(), "JÖRG".into()),
            &r,
            1,
            Some(MSG)
        ));
        assert!(!matches(
            &Key::Header("Subject".into(), "absent".into()),
            &r,
            1,
            Some(MSG)
        ));
    }

    #[test]
    fn body_is_decoded_before_matching() {
        let r = rec(1, &[]);
        assert!(matches(&Key::Body("café".into()), &r, 1, Some(MSG)));
        assert!(matches(&Key::Text("bob@example".into()), &r, 1, Some(MSG)));
        assert!(!matches(&Key::Body("Caf=C3".into()), &r, 1, Some(MSG)));
    }

    #[test]
    fn boolean_structure_and_flags() {
        let r = rec(5, &["\\Seen"]);
        let k = Key::And(vec![
            Key::FlagSet("\\seen".into()),
            Key::Not(Box::new(Key::Or(vec![Key::Larger(1000), Key::Smaller(10)]))),
        ]);
        assert!(matches(&k, &r, 5, None));
        assert!(!matches(&Key::FlagUnset("\\Seen".into()), &r, 5, None));
        assert!(matches(&Key::SentSince(1_672_000_000), &r, 5, Some(MSG)));
    }

    #[test]
    fn sent_dates_compare_the_date_as_written_ignoring_time_and_zone() {
        // 23:30 at -0800 on the 25th is the 26th in UTC; RFC 3501 §6.4.4 wants the 25th.
        let msg: &[u8] = b"Date: Sun, 25 Mar 2007 23:30:00 -0800\r\nSubject: late\r\n\r\nx\r\n";
        let r = rec(1, &[]);
        let day = |d| tern_mail::date::days_from_civil(2007, 3, d) * 86_400;
        let on_25th = Key::And(vec![Key::SentSince(day(25)), Key::SentBefore(day(26))]);
        assert!(matches(&on_25th, &r, 1, Some(msg)));
        assert!(matches(&Key::SentBefore(day(26)), &r, 1, Some(msg)));
        assert!(!matches(&Key::SentSince(day(26)), &r, 1, Some(msg)));
        assert!(!matches(&Key::SentBefore(day(25)), &r, 1, Some(msg)));
        // No Date: field, no match either way.
        let undated: &[u8] = b"Subject: none\r\n\r\nx\r\n";
        assert!(!matches(&Key::SentBefore(day(26)), &r, 1, Some(undated)));
        assert!(!matches(&Key::SentSince(day(1)), &r, 1, Some(undated)));
    }

    #[test]
    fn depth_is_bounded() {
        let mut k = pb::SearchKey {
            key: Some(pb::search_key::Key::All(true)),
        };
        for _ in 0..40 {
            k = pb::SearchKey {
                key: Some(pb::search_key::Key::Not(Box::new(k))),
            };
        }
        assert!(from_proto(Some(&k), 0).is_err());
    }
}
