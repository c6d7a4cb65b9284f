//! BODY[section]<partial> on a hand-built message; every expected byte string was cut from
//! the message text below by hand, following RFC 3501 §6.4.5.

use super::*;
use mail_parser::MessageParser;

const RAW: &[u8] = b"From: a@example.test\r\n\
Subject: nested\r\n\
X-Trace: one\r\n\
\x20two\r\n\
Content-Type: multipart/mixed; boundary=\"o\"\r\n\
\r\n\
--o\r\n\
Content-Type: text/plain\r\n\
\r\n\
first part\r\n\
--o\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.test\r\n\
Subject: Inner\r\n\
Content-Type: multipart/alternative; boundary=\"i\"\r\n\
\r\n\
--i\r\n\
Content-Type: text/plain\r\n\
\r\n\
inner plain\r\n\
--i\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>inner</b>\r\n\
--i--\r\n\
--o--\r\n";

const HEADER: &[u8] = b"From: a@example.test\r\nSubject: nested\r\nX-Trace: one\r\n two\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n";

const INNER: &[u8] = b"From: inner@example.test\r\n\
Subject: Inner\r\n\
Content-Type: multipart/alternative; boundary=\"i\"\r\n\
\r\n\
--i\r\n\
Content-Type: text/plain\r\n\
\r\n\
inner plain\r\n\
--i\r\n\
Content-Type: text/html\r\n\
\r\n\
<b>inner</b>\r\n\
--i--";

fn get(part: &[u32], text: Text) -> Option<Vec<u8>> {
    let msg = MessageParser::default().parse(RAW).unwrap();
    section_bytes(
        &msg,
        &Section {
            part: part.to_vec(),
            text,
        },
    )
}

fn s(v: Option<Vec<u8>>) -> String {
    String::from_utf8(v.expect("section exists")).unwrap()
}

#[test]
fn whole_message_header_and_text() {
    assert_eq!(get(&[], Text::All).unwrap(), RAW);
    assert_eq!(get(&[], Text::Header).unwrap(), HEADER);
    assert_eq!(get(&[], Text::Text).unwrap(), &RAW[HEADER.len()..]);
    assert_eq!(get(&[], Text::Mime), None);
}

#[test]
fn header_fields_keep_continuations_and_order() {
    assert_eq!(
        s(get(
            &[],
            Text::HeaderFields(vec!["x-trace".into(), "FROM".into()])
        )),
        "From: a@example.test\r\nX-Trace: one\r\n two\r\n\r\n"
    );
    assert_eq!(
        s(get(
            &[],
            Text::HeaderFieldsNot(vec!["content-type".into(), "x-trace".into()])
        )),
        "From: a@example.test\r\nSubject: nested\r\n\r\n"
    );
    assert_eq!(
        s(get(&[], Text::HeaderFields(vec!["absent".into()]))),
        "\r\n"
    );
}

#[test]
fn numbered_parts_mime_headers_and_nested_messages() {
    assert_eq!(s(get(&[1], Text::All)), "first part");
    assert_eq!(s(get(&[1], Text::Mime)), "Content-Type: text/plain\r\n\r\n");
    assert_eq!(get(&[2], Text::All).unwrap(), INNER);
    assert_eq!(
        s(get(&[2], Text::Mime)),
        "Content-Type: message/rfc822\r\n\r\n"
    );
    assert_eq!(
        s(get(&[2], Text::Header)),
        "From: inner@example.test\r\nSubject: Inner\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n"
    );
    assert_eq!(
        s(get(&[2], Text::HeaderFields(vec!["subject".into()]))),
        "Subject: Inner\r\n\r\n"
    );
    assert_eq!(s(get(&[2, 1], Text::All)), "inner plain");
    assert_eq!(s(get(&[2, 2], Text::All)), "<b>inner</b>");
    assert_eq!(
        s(get(&[2, 2], Text::Mime)),
        "Content-Type: text/html\r\n\r\n"
    );
    // HEADER of a part that is not a message, and parts that do not exist.
    assert_eq!(get(&[1], Text::Header), None);
    for path in [&[3][..], &[0], &[1, 1], &[2, 3], &[2, 1, 1]] {
        assert_eq!(get(path, Text::All), None, "{path:?}");
    }
}

#[test]
fn a_single_part_message_has_part_one() {
    let raw = b"Subject: one\r\n\r\nthe body\r\n";
    let msg = MessageParser::default().parse(&raw[..]).unwrap();
    let one = Section {
        part: vec![1],
        text: Text::All,
    };
    assert_eq!(section_bytes(&msg, &one).unwrap(), b"the body\r\n");
    let two = Section {
        part: vec![2],
        text: Text::All,
    };
    assert_eq!(section_bytes(&msg, &two), None);
}

#[test]
fn partial_ranges() {
    assert_eq!(partial(b"0123456789", 2, 3), b"234");
    assert_eq!(partial(b"0123456789", 8, 100), b"89");
    assert_eq!(partial(b"0123456789", 20, 5), b"");
    assert_eq!(partial(b"0123456789", u32::MAX, u32::MAX), b"");
}
