//! Who a submitted message claims to be from: the addresses of its header From field.
//!
//! Submission checks the envelope sender against the logged-in user; without the same check
//! on the header, a user could still show any From to the recipients (the field their mail
//! client displays). The field is read with mail-parser (RFC 5322 address lists, groups,
//! encoded words) from the header section the composer kept.

use mail_parser::{HeaderName, MessageParser};

/// Most From addresses checked; a field naming more is refused (RFC 5322 allows several
/// authors, but a submission with dozens is not a user's mail).
pub const MAX_AUTHORS: usize = 8;

/// What the header's From field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFrom {
    /// There is no From field.
    Absent,
    /// The author addresses, lowercased.
    Authors(Vec<String>),
    /// A From field whose addresses cannot be read, or too many of them.
    Unreadable,
}

/// Reads the From field of `header` (a message's header section).
pub fn header_from(header: &[u8]) -> HeaderFrom {
    let Some(message) = MessageParser::default().parse_headers(header) else {
        return HeaderFrom::Absent;
    };
    let fields = message
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::From)
        .count();
    if fields == 0 {
        return HeaderFrom::Absent;
    }
    // RFC 5322 §3.6: exactly one From field; two could show a client one and check another.
    if fields > 1 {
        return HeaderFrom::Unreadable;
    }
    let Some(from) = message.from() else {
        return HeaderFrom::Unreadable;
    };
    let mut authors = Vec::new();
    for addr in from.iter() {
        match addr.address() {
            Some(a) if a.contains('@') => authors.push(a.to_ascii_lowercase()),
            _ => return HeaderFrom::Unreadable,
        }
    }
    if authors.is_empty() || authors.len() > MAX_AUTHORS {
        return HeaderFrom::Unreadable;
    }
    HeaderFrom::Authors(authors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authors(v: &[&str]) -> HeaderFrom {
        HeaderFrom::Authors(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn reads_the_authors() {
        assert_eq!(
            header_from(b"Subject: x\r\nFrom: Alice <Alice@Example.test>\r\n"),
            authors(&["alice@example.test"])
        );
        assert_eq!(
            header_from(b"From: a@x.test, \"B\" <b@y.test>\r\nTo: c@z.test\r\n"),
            authors(&["a@x.test", "b@y.test"])
        );
        assert_eq!(
            header_from(b"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\n"),
            authors(&["j@x.test"])
        );
        assert_eq!(
            header_from(b"From: team: a@x.test, b@x.test;\r\n"),
            authors(&["a@x.test", "b@x.test"])
        );
    }

    #[test]
    fn absent_or_unreadable() {
        assert_eq!(header_from(b"Subject: no author\r\n"), HeaderFrom::Absent);
        assert_eq!(header_from(b""), HeaderFrom::Absent);
        assert_eq!(header_from(b"From: nobody\r\n"), HeaderFrom::Unreadable);
        assert_eq!(header_from(b"From: \r\n"), HeaderFrom::Unreadable);
        assert_eq!(
            header_from(b"From: a@x.test\r\nFrom: b@y.test\r\n"),
            HeaderFrom::Unreadable
        );
        let many: String = (0..9)
            .map(|i| format!("u{i}@x.test"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            header_from(format!("From: {many}\r\n").as_bytes()),
            HeaderFrom::Unreadable
        );
    }
}
