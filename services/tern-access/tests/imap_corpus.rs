//! Issue 5 (IMAP): ENVELOPE, BODY and BODYSTRUCTURE, and every BODY[section]<partial>, for a
//! corpus of varied MIME messages in `tests/imap_corpus/` (plain, multipart, nested,
//! message/rfc822 at several depths, multipart/digest, encoded words, non-ASCII bodies and
//! broken messages). The files have exact line endings (CRLF, and bare LF where a message
//! is about bare LF).
//!
//! How the expectations were derived: every ENVELOPE and BODYSTRUCTURE string below was
//! written by hand from RFC 3501 §7.4.2 (field order, NIL, group markers), RFC 2045/2046
//! (the text/plain; charset=us-ascii default, message/rfc822 inside multipart/digest, a
//! part's body ending before the CRLF that precedes the next delimiter) and the choices
//! stated in the module doc of `tern_access::imap::structure` (encoded words kept raw in
//! the subject, decoded display names re-encoded as one `=?utf-8?b?...?=` word,
//! MISSING_DOMAIN, sizes as stored octets, a line count of the line ends plus one for an
//! unterminated last line). Octet and line counts were made by cutting each body out of the
//! file between its header's blank line and the delimiter found by a plain string search,
//! never by running the code under test. Section bytes are literals, or slices of the raw
//! file cut by the same kind of string search (`cut`, `rest`), never by mail-parser; the
//! partial checks compare against slices of those expected bytes (RFC 3501 §6.4.5: an
//! origin past the end gives an empty string).

use mail_parser::{Message, MessageParser};
use std::sync::atomic::{AtomicUsize, Ordering};
use tern_access::imap::section::{partial, section_bytes, Section, Text};
use tern_access::imap::structure::{body_structure, envelope};

const M01: &[u8] = include_bytes!("imap_corpus/01-plain-ascii.eml");
const M02: &[u8] = include_bytes!("imap_corpus/02-no-headers.eml");
const M03: &[u8] = include_bytes!("imap_corpus/03-header-only.eml");
const M04: &[u8] = include_bytes!("imap_corpus/04-empty-body.eml");
const M05: &[u8] = include_bytes!("imap_corpus/05-mixed-attachments.eml");
const M06: &[u8] = include_bytes!("imap_corpus/06-alternative-qp.eml");
const M07: &[u8] = include_bytes!("imap_corpus/07-nested-mixed-alternative-related.eml");
const M08: &[u8] = include_bytes!("imap_corpus/08-forwarded-multipart.eml");
const M09: &[u8] = include_bytes!("imap_corpus/09-rfc822-in-rfc822.eml");
const M10: &[u8] = include_bytes!("imap_corpus/10-rfc822-chain.eml");
const M11: &[u8] = include_bytes!("imap_corpus/11-digest.eml");
const M12: &[u8] = include_bytes!("imap_corpus/12-encoded-words-latin1.eml");
const M13: &[u8] = include_bytes!("imap_corpus/13-encoded-words-utf8.eml");
const M14: &[u8] = include_bytes!("imap_corpus/14-groups.eml");
const M15: &[u8] = include_bytes!("imap_corpus/15-qp-latin1.eml");
const M16: &[u8] = include_bytes!("imap_corpus/16-8bit-utf8.eml");
const M17: &[u8] = include_bytes!("imap_corpus/17-rfc2231-disposition.eml");
const M18: &[u8] = include_bytes!("imap_corpus/18-language-location-md5.eml");
const M19: &[u8] = include_bytes!("imap_corpus/19-addresses.eml");
const M20: &[u8] = include_bytes!("imap_corpus/20-missing-boundary.eml");
const M21: &[u8] = include_bytes!("imap_corpus/21-unterminated-multipart.eml");
const M22: &[u8] = include_bytes!("imap_corpus/22-boundary-never-appears.eml");
const M23: &[u8] = include_bytes!("imap_corpus/23-bare-lf.eml");
const M24: &[u8] = include_bytes!("imap_corpus/24-garbage-headers.eml");
const M25: &[u8] = include_bytes!("imap_corpus/25-empty-parts.eml");
const M26: &[u8] = include_bytes!("imap_corpus/26-invalid-base64.eml");
const M27: &[u8] = include_bytes!("imap_corpus/27-long-folded-header.eml");
const M28: &[u8] = include_bytes!("imap_corpus/28-preamble-epilogue-padding.eml");
const M29: &[u8] = include_bytes!("imap_corpus/29-content-type-comments.eml");
const M30: &[u8] = include_bytes!("imap_corpus/30-single-part-binary.eml");
const M31: &[u8] = include_bytes!("imap_corpus/31-no-final-newline.eml");
const M32: &[u8] = include_bytes!("imap_corpus/32-multipart-signed.eml");
const M33: &[u8] = include_bytes!("imap_corpus/33-delivery-report.eml");
const M34: &[u8] = include_bytes!("imap_corpus/34-empty-multipart.eml");
const M35: &[u8] = include_bytes!("imap_corpus/35-rfc822-top-level-multipart-inside.eml");
const M36: &[u8] = include_bytes!("imap_corpus/36-rfc2231-rfc-examples.eml");

/// Assertions made, over all tests (printed by each test for the record).
static ASSERTIONS: AtomicUsize = AtomicUsize::new(0);

fn tick() {
    ASSERTIONS.fetch_add(1, Ordering::Relaxed);
}

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("every corpus message has a header or a body")
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_bytes(what: &str, actual: &[u8], expected: &[u8]) {
    tick();
    assert!(
        actual == expected,
        "{what}\n  actual: {:?}\nexpected: {:?}",
        show(actual),
        show(expected)
    );
}

fn env(raw: &[u8], expected: impl AsRef<[u8]>) {
    assert_bytes("ENVELOPE", &envelope(&parse(raw)), expected.as_ref());
}

fn bs(raw: &[u8], expected: impl AsRef<[u8]>) {
    assert_bytes(
        "BODYSTRUCTURE",
        &body_structure(&parse(raw), true),
        expected.as_ref(),
    );
}

fn body(raw: &[u8], expected: impl AsRef<[u8]>) {
    assert_bytes(
        "BODY",
        &body_structure(&parse(raw), false),
        expected.as_ref(),
    );
}

fn sec(raw: &[u8], part: &[u32], text: Text) -> Option<Vec<u8>> {
    section_bytes(
        &parse(raw),
        &Section {
            part: part.to_vec(),
            text,
        },
    )
}

fn fields(names: &[&str]) -> Text {
    Text::HeaderFields(names.iter().map(|n| n.to_string()).collect())
}

fn not(names: &[&str]) -> Text {
    Text::HeaderFieldsNot(names.iter().map(|n| n.to_string()).collect())
}

/// BODY[section] is `expected`, and every partial of it is the matching slice.
fn has(raw: &[u8], part: &[u32], text: Text, expected: impl AsRef<[u8]>) {
    let expected = expected.as_ref();
    let what = format!("BODY[{part:?} {text:?}]");
    let actual = sec(raw, part, text).unwrap_or_else(|| panic!("{what}: no such section"));
    assert_bytes(&what, &actual, expected);
    let n = expected.len() as u32;
    for start in [
        0,
        1,
        n / 2,
        n.saturating_sub(1),
        n,
        n + 1,
        n + 1000,
        u32::MAX,
    ] {
        for count in [1, 7, n.max(1), u32::MAX] {
            let from = (start as usize).min(expected.len());
            let to = from.saturating_add(count as usize).min(expected.len());
            assert_bytes(
                &format!("{what}<{start}.{count}>"),
                partial(&actual, start, count),
                &expected[from..to],
            );
        }
    }
}

/// BODY[section] does not exist.
fn none(raw: &[u8], part: &[u32], text: Text) {
    tick();
    let got = sec(raw, part, text.clone());
    assert!(
        got.is_none(),
        "BODY[{part:?} {text:?}] should not exist, got {:?}",
        got.map(|b| show(&b))
    );
}

/// Parts that are not there, and MIME of the whole message.
fn none_all(raw: &[u8], parts: &[&[u32]]) {
    none(raw, &[], Text::Mime);
    for p in parts {
        none(raw, p, Text::All);
        none(raw, p, Text::Mime);
    }
}

/// The bytes after the first `after` up to the next `before`, found by string search.
fn cut<'a>(raw: &'a [u8], after: &str, before: &str) -> &'a [u8] {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let a = find(raw, after.as_bytes()).expect("start marker") + after.len();
    let b = a + find(&raw[a..], before.as_bytes()).expect("end marker");
    &raw[a..b]
}

/// The bytes after the first `after`, to the end.
fn rest<'a>(raw: &'a [u8], after: &str) -> &'a [u8] {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    &raw[find(raw, after.as_bytes()).expect("marker") + after.len()..]
}

/// The bytes up to and including the first `through`.
fn upto<'a>(raw: &'a [u8], through: &str) -> &'a [u8] {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    &raw[..find(raw, through.as_bytes()).expect("marker") + through.len()]
}

/// The usual checks of a whole message: BODY[], HEADER (through the blank line), TEXT.
fn whole(raw: &[u8], header: &[u8]) {
    has(raw, &[], Text::All, raw);
    has(raw, &[], Text::Header, header);
    has(raw, &[], Text::Text, &raw[header.len()..]);
}

/// HEADER.FIELDS (SUBJECT) and HEADER.FIELDS.NOT (SUBJECT) of the whole message; the
/// latter is the header with the line `line` cut out by string search.
fn subject_fields(raw: &[u8], line: &str) {
    has(raw, &[], fields(&["Subject"]), format!("{line}\r\n\r\n"));
    let header = upto(raw, "\r\n\r\n");
    let needle = format!("{line}\r\n");
    let at = header
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("subject line");
    let without = [&header[..at], &header[at + needle.len()..]].concat();
    has(raw, &[], not(&["subject"]), without);
}

fn done(name: &str) {
    println!(
        "{name}: {} assertions so far",
        ASSERTIONS.load(Ordering::Relaxed)
    );
}

const US_ASCII: &str = r#"("charset" "us-ascii")"#;

#[test]
fn m01_plain_ascii() {
    let raw = M01;
    let alice = r#"(("Alice Example" NIL "alice" "example.test"))"#;
    env(
        raw,
        format!(
            r#"("Tue, 3 Jan 2023 09:15:00 +0100" "Plain hello" {alice} {alice} {alice} (("Bob" NIL "bob" "example.test")) NIL NIL NIL "<01@example.test>")"#
        ),
    );
    // "Hello Bob,\r\nthis is a plain message.\r\n": 10 + 2 + 24 + 2 = 38 octets, 2 lines.
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 38 2 NIL NIL NIL NIL)"#),
    );
    body(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 38 2)"#),
    );
    let header = upto(raw, "\r\n\r\n");
    assert_eq!(header.len(), 163);
    whole(raw, header);
    let text = "Hello Bob,\r\nthis is a plain message.\r\n";
    has(raw, &[1], Text::All, text);
    has(raw, &[1], Text::Mime, header);
    has(
        raw,
        &[],
        fields(&["subject", "FROM"]),
        "From: Alice Example <alice@example.test>\r\nSubject: Plain hello\r\n\r\n",
    );
    has(
        raw,
        &[],
        not(&["Date", "Message-ID", "to"]),
        "From: Alice Example <alice@example.test>\r\nSubject: Plain hello\r\n\r\n",
    );
    has(raw, &[], fields(&["X-Absent"]), "\r\n");
    // Partials by hand: <0.5> "Hello", <6.3> "Bob", from the last octet, past the end.
    let t = sec(raw, &[], Text::Text).unwrap();
    assert_bytes("<0.5>", partial(&t, 0, 5), b"Hello");
    assert_bytes("<6.3>", partial(&t, 6, 3), b"Bob");
    assert_bytes("<37.10>", partial(&t, 37, 10), b"\n");
    assert_bytes("<38.10>", partial(&t, 38, 10), b"");
    assert_bytes("<500.1>", partial(&t, 500, 1), b"");
    none_all(raw, &[&[2], &[0], &[1, 1], &[1, 2]]);
    none(raw, &[1], Text::Header);
    none(raw, &[1], Text::Text);
    none(raw, &[1], fields(&["from"]));
    done("m01");
}

#[test]
fn m02_no_header_fields() {
    let raw = M02;
    env(raw, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 50 2 NIL NIL NIL NIL)"#),
    );
    whole(raw, b"\r\n");
    let text = "This message has no header fields.\r\nSecond line.\r\n";
    has(raw, &[1], Text::All, text);
    has(raw, &[], fields(&["from"]), "\r\n");
    has(raw, &[], not(&["from"]), "\r\n");
    none_all(raw, &[&[2], &[1, 1]]);
    has(raw, &[1], Text::Mime, "\r\n");
    done("m02");
}

#[test]
fn m03_header_only_without_blank_line() {
    let raw = M03;
    let from = r#"(("Header Only" NIL "ho" "example.test"))"#;
    env(
        raw,
        format!(
            r#"("Wed, 4 Jan 2023 08:00:00 +0000" "nothing below" {from} {from} {from} NIL NIL NIL NIL NIL)"#
        ),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#),
    );
    // No blank line: the whole message is its header and the body is empty.
    assert_eq!(raw.len(), 99);
    whole(raw, raw);
    has(raw, &[1], Text::All, "");
    has(
        raw,
        &[],
        fields(&["date"]),
        "Date: Wed, 4 Jan 2023 08:00:00 +0000\r\n\r\n",
    );
    has(
        raw,
        &[],
        not(&["date"]),
        "From: Header Only <ho@example.test>\r\nSubject: nothing below\r\n\r\n",
    );
    none_all(raw, &[&[2], &[1, 1]]);
    has(raw, &[1], Text::Mime, raw);
    done("m03");
}

#[test]
fn m04_blank_line_and_no_body() {
    let raw = M04;
    let from = r#"((NIL NIL "eb" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "empty body" {from} {from} {from} NIL NIL NIL NIL NIL)"#),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#),
    );
    body(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 0 0)"#),
    );
    whole(raw, raw);
    has(raw, &[1], Text::All, "");
    has(raw, &[1], Text::Mime, raw);
    has(
        raw,
        &[],
        fields(&["subject"]),
        "Subject: empty body\r\n\r\n",
    );
    none_all(raw, &[&[2], &[1, 1]]);
    done("m04");
}

#[test]
fn m05_multipart_mixed_with_base64_attachments() {
    let raw = M05;
    let sender = r#"(("Sender" NIL "sender" "example.test"))"#;
    env(
        raw,
        format!(
            r#"("Thu, 5 Jan 2023 12:00:00 -0500" "Report with attachments" {sender} {sender} {sender} ((NIL NIL "rcpt" "example.test")) NIL NIL NIL "<05@example.test>")"#
        ),
    );
    // Part 1 "Please find the files attached.\r\nRegards": 31 + 2 + 7 = 40 octets, 2 lines.
    // Part 2: two base64 lines of 68 and 28 octets and the CRLF between: 98. Part 3: 72.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 40 2 NIL NIL NIL NIL)"#,
            r#"("image" "png" ("name" "dot.png") NIL NIL "base64" 98 NIL ("attachment" ("filename" "dot.png")) NIL NIL)"#,
            r#"("application" "pdf" ("name" "doc.pdf") NIL NIL "base64" 72 NIL ("attachment" ("filename" "doc.pdf" "size" "54")) NIL NIL)"#,
            r#" "mixed" ("boundary" "==mix05==") NIL NIL NIL)"#
        ),
    );
    body(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 40 2)"#,
            r#"("image" "png" ("name" "dot.png") NIL NIL "base64" 98)"#,
            r#"("application" "pdf" ("name" "doc.pdf") NIL NIL "base64" 72) "mixed")"#
        ),
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    assert!(rest(raw, "\r\n\r\n").starts_with(b"This is a multi-part message"));
    has(
        raw,
        &[1],
        Text::All,
        "Please find the files attached.\r\nRegards",
    );
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    has(
        raw,
        &[2],
        Text::All,
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE\r\nhQGAhKmMIQAAAABJRU5ErkJggg==",
    );
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: image/png; name=\"dot.png\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"dot.png\"\r\n\r\n",
    );
    has(
        raw,
        &[3],
        Text::All,
        "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK",
    );
    has(
        raw,
        &[3],
        Text::Mime,
        "Content-Type: application/pdf; name=\"doc.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"doc.pdf\"; size=54\r\n\r\n",
    );
    has(
        raw,
        &[],
        fields(&["content-type"]),
        "Content-Type: multipart/mixed; boundary=\"==mix05==\"\r\n\r\n",
    );
    has(
        raw,
        &[],
        not(&["content-type", "mime-version", "date", "message-id"]),
        "From: Sender <sender@example.test>\r\nTo: rcpt@example.test\r\nSubject: Report with attachments\r\n\r\n",
    );
    none_all(raw, &[&[4], &[0], &[1, 1], &[2, 1], &[3, 1]]);
    none(raw, &[3], Text::Header);
    none(raw, &[1], Text::Text);
    done("m05");
}

#[test]
fn m06_alternative_quoted_printable() {
    let raw = M06;
    let news = r#"(("Newsletter" NIL "news" "example.test"))"#;
    env(
        raw,
        format!(
            r#"(NIL "Weekly news" {news} {news} {news} ((NIL NIL "reader" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    // Part 1: 24 + 2 + 25 + 2 + 8 = 61 octets on 3 lines; part 2: 54 octets, 1 line.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 61 3 NIL NIL NIL NIL)"#,
            r#"("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 54 1 NIL NIL NIL NIL)"#,
            r#" "alternative" ("boundary" "alt06") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(
        raw,
        &[1],
        Text::All,
        "Caf=C3=A9 opens at 9.=20\r\nA long line that is soft=\r\n broken.",
    );
    has(
        raw,
        &[2],
        Text::All,
        "<html><body><p>Caf=C3=A9 opens at 9.</p></body></html>",
    );
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    none_all(raw, &[&[3], &[1, 1]]);
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    subject_fields(raw, "Subject: Weekly news");
    done("m06");
}

#[test]
fn m07_mixed_alternative_related() {
    let raw = M07;
    let designer = r#"(("Designer" NIL "designer" "example.test"))"#;
    env(
        raw,
        format!(
            r#"("Fri, 6 Jan 2023 16:30:00 +0000" "Nested layout" {designer} {designer} {designer} ((NIL NIL "client" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    // 1.1 "See the logo below." 19 octets; 1.2.1 the <p> line, 53; 1.2.2 the GIF, 56;
    // 2 "AAECAwQFBgcICQ==" 16.
    bs(
        raw,
        concat!(
            r#"((("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 19 1 NIL NIL NIL NIL)"#,
            r#"(("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 53 1 NIL NIL NIL NIL)"#,
            r#"("image" "gif" NIL "<logo@example.test>" NIL "base64" 56 NIL ("inline" NIL) NIL NIL)"#,
            r#" "related" ("boundary" "rel-07" "type" "text/html") NIL NIL NIL)"#,
            r#" "alternative" ("boundary" "alt-07") NIL NIL NIL)"#,
            r#"("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 16 NIL ("attachment" ("filename" "data.bin")) NIL NIL)"#,
            r#" "mixed" ("boundary" "outer-07") NIL NIL NIL)"#
        ),
    );
    body(
        raw,
        concat!(
            r#"((("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 19 1)"#,
            r#"(("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 53 1)"#,
            r#"("image" "gif" NIL "<logo@example.test>" NIL "base64" 56) "related") "alternative")"#,
            r#"("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" 16) "mixed")"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    let alt = cut(raw, "boundary=\"alt-07\"\r\n\r\n", "\r\n--outer-07");
    assert_eq!(alt.len(), 483);
    assert!(alt.starts_with(b"--alt-07\r\n") && alt.ends_with(b"--alt-07--"));
    has(raw, &[1], Text::All, alt);
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: multipart/alternative; boundary=\"alt-07\"\r\n\r\n",
    );
    has(raw, &[1, 1], Text::All, "See the logo below.");
    has(
        raw,
        &[1, 1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    let rel = cut(raw, "type=\"text/html\"\r\n\r\n", "\r\n--alt-07");
    assert_eq!(rel.len(), 312);
    assert!(rel.starts_with(b"--rel-07\r\n") && rel.ends_with(b"--rel-07--"));
    has(raw, &[1, 2], Text::All, rel);
    has(
        raw,
        &[1, 2],
        Text::Mime,
        "Content-Type: multipart/related; boundary=\"rel-07\"; type=\"text/html\"\r\n\r\n",
    );
    has(
        raw,
        &[1, 2, 1],
        Text::All,
        "<p>See the logo <img src=\"cid:logo@example.test\"></p>",
    );
    has(
        raw,
        &[1, 2, 1],
        Text::Mime,
        "Content-Type: text/html; charset=us-ascii\r\n\r\n",
    );
    has(
        raw,
        &[1, 2, 2],
        Text::All,
        "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
    );
    has(
        raw,
        &[1, 2, 2],
        Text::Mime,
        "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <logo@example.test>\r\nContent-Disposition: inline\r\n\r\n",
    );
    has(raw, &[2], Text::All, "AAECAwQFBgcICQ==");
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n",
    );
    none_all(
        raw,
        &[
            &[3],
            &[1, 3],
            &[1, 2, 3],
            &[1, 1, 1],
            &[2, 1],
            &[1, 2, 2, 1],
            &[1, 2, 1, 1],
        ],
    );
    none(raw, &[1], Text::Header);
    none(raw, &[1, 2], Text::Text);
    subject_fields(raw, "Subject: Nested layout");
    done("m07");
}

#[test]
fn m08_forwarded_message_with_multipart_inside() {
    let raw = M08;
    let fwd = r#"(("Forwarder" NIL "fwd" "example.test"))"#;
    env(
        raw,
        format!(
            r#"("Sat, 7 Jan 2023 10:00:00 +0000" "Fwd: Quarterly numbers" {fwd} {fwd} {fwd} ((NIL NIL "boss" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    let analyst = r#"(("Analyst" NIL "analyst" "example.test"))"#;
    let inner_env = format!(
        r#"("Fri, 6 Jan 2023 09:00:00 +0000" "Quarterly numbers" {analyst} {analyst} {analyst} ((NIL NIL "fwd" "example.test")) NIL NIL NIL "<q4@example.test>")"#
    );
    // The message/rfc822 body runs from "From: Analyst" to "--inner08--": 398 octets,
    // 16 line ends and the unterminated "--inner08--" line, so 17 lines.
    bs(
        raw,
        format!(
            concat!(
                r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 29 1 NIL NIL NIL NIL)"#,
                r#"("message" "rfc822" NIL NIL "Forwarded message" "7BIT" 398 {} "#,
                r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 14 1 NIL NIL NIL NIL)"#,
                r#"("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 21 1 NIL NIL NIL NIL)"#,
                r#" "alternative" ("boundary" "inner08") NIL NIL NIL) 17 NIL NIL NIL NIL)"#,
                r#" "mixed" ("boundary" "fwd08") NIL NIL NIL)"#
            ),
            inner_env
        ),
    );
    body(
        raw,
        format!(
            concat!(
                r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 29 1)"#,
                r#"("message" "rfc822" NIL NIL "Forwarded message" "7BIT" 398 {} "#,
                r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 14 1)"#,
                r#"("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 21 1) "alternative") 17) "mixed")"#
            ),
            inner_env
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Forwarding the message below.");
    let inner = cut(raw, "Forwarded message\r\n\r\n", "\r\n--fwd08--");
    assert_eq!(inner.len(), 398);
    has(raw, &[2], Text::All, inner);
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: message/rfc822\r\nContent-Description: Forwarded message\r\n\r\n",
    );
    let inner_header = upto(inner, "\r\n\r\n");
    assert_eq!(inner_header.len(), 235);
    has(raw, &[2], Text::Header, inner_header);
    has(raw, &[2], Text::Text, &inner[inner_header.len()..]);
    has(
        raw,
        &[2],
        fields(&["SUBJECT", "from"]),
        "From: Analyst <analyst@example.test>\r\nSubject: Quarterly numbers\r\n\r\n",
    );
    has(
        raw,
        &[2],
        not(&["mime-version", "content-type", "date"]),
        "From: Analyst <analyst@example.test>\r\nTo: fwd@example.test\r\nSubject: Quarterly numbers\r\nMessage-ID: <q4@example.test>\r\n\r\n",
    );
    has(raw, &[2, 1], Text::All, "Revenue is up.");
    has(
        raw,
        &[2, 1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    has(raw, &[2, 2], Text::All, "<b>Revenue is up.</b>");
    none_all(raw, &[&[3], &[2, 3], &[2, 1, 1], &[1, 1]]);
    none(raw, &[1], Text::Header);
    none(raw, &[2, 1], Text::Header);
    none(raw, &[2, 2], Text::Text);
    has(
        raw,
        &[2, 2],
        Text::Mime,
        "Content-Type: text/html; charset=us-ascii\r\n\r\n",
    );
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    subject_fields(raw, "Subject: Fwd: Quarterly numbers");
    done("m08");
}

#[test]
fn m09_message_inside_message_inside_message() {
    let raw = M09;
    let outer = r#"(("Outer" NIL "outer" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "Fwd: Fwd: nested" {outer} {outer} {outer} NIL NIL NIL NIL NIL)"#),
    );
    let middle = r#"(("Middle" NIL "middle" "example.test"))"#;
    let inner = r#"(("Inner" NIL "inner" "example.test"))"#;
    // 2: 326 octets, 17 line ends + "--L2--" = 18 lines. 2.2: 104 octets, 4 line ends +
    // "Innermost body." = 5 lines.
    bs(
        raw,
        format!(
            concat!(
                r#"(("text" "plain" NIL NIL NIL "7BIT" 15 1 NIL NIL NIL NIL)"#,
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 326 "#,
                r#"(NIL "Fwd: nested" {m} {m} {m} NIL NIL NIL NIL NIL) "#,
                r#"(("text" "plain" NIL NIL NIL "7BIT" 15 1 NIL NIL NIL NIL)"#,
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 104 "#,
                r#"(NIL "nested" {i} {i} {i} NIL NIL NIL NIL "<inner09@example.test>") "#,
                r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 15 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)"#,
                r#" "mixed" ("boundary" "L2") NIL NIL NIL) 18 NIL NIL NIL NIL)"#,
                r#" "mixed" ("boundary" "L1") NIL NIL NIL)"#
            ),
            m = middle,
            i = inner
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Level one text.");
    let two = cut(raw, "Content-Type: message/rfc822\r\n\r\n", "\r\n--L1--");
    assert_eq!(two.len(), 326);
    has(raw, &[2], Text::All, two);
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: message/rfc822\r\n\r\n",
    );
    let two_header = upto(two, "\r\n\r\n");
    has(raw, &[2], Text::Header, two_header);
    has(raw, &[2], Text::Text, &two[two_header.len()..]);
    has(
        raw,
        &[2],
        fields(&["subject"]),
        "Subject: Fwd: nested\r\n\r\n",
    );
    has(raw, &[2, 1], Text::All, "Level two text.");
    has(raw, &[2, 1], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    let three = cut(two, "Content-Type: message/rfc822\r\n\r\n", "\r\n--L2--");
    assert_eq!(three.len(), 104);
    has(raw, &[2, 2], Text::All, three);
    has(
        raw,
        &[2, 2],
        Text::Mime,
        "Content-Type: message/rfc822\r\n\r\n",
    );
    let three_header =
        "From: Inner <inner@example.test>\r\nSubject: nested\r\nMessage-ID: <inner09@example.test>\r\n\r\n";
    has(raw, &[2, 2], Text::Header, three_header);
    has(raw, &[2, 2], Text::Text, "Innermost body.");
    has(
        raw,
        &[2, 2],
        fields(&["message-id"]),
        "Message-ID: <inner09@example.test>\r\n\r\n",
    );
    has(
        raw,
        &[2, 2],
        not(&["message-id", "subject"]),
        "From: Inner <inner@example.test>\r\n\r\n",
    );
    // The innermost message is not multipart: its part 1 is its body, whose MIME header
    // is the message header.
    has(raw, &[2, 2, 1], Text::All, "Innermost body.");
    has(raw, &[2, 2, 1], Text::Mime, three_header);
    none_all(raw, &[&[3], &[2, 3], &[2, 2, 2], &[2, 2, 1, 1], &[1, 1]]);
    none(raw, &[2, 1], Text::Header);
    none(raw, &[2, 2, 1], Text::Header);
    has(raw, &[1], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    subject_fields(raw, "Subject: Fwd: Fwd: nested");
    done("m09");
}

#[test]
fn m10_message_rfc822_chain_at_top_level() {
    let raw = M10;
    let wrap = r#"(("Wrapper" NIL "wrap" "example.test"))"#;
    let mid = r#"(("Middle" NIL "mid" "example.test"))"#;
    let core = r#"(("Core" NIL "core" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "wrapped twice" {wrap} {wrap} {wrap} NIL NIL NIL NIL NIL)"#),
    );
    // Body of the top level: 168 octets, 9 lines; of the middle: 61 octets, 4 lines;
    // "Core text.\r\n" 12 octets, 1 line.
    bs(
        raw,
        format!(
            concat!(
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 168 "#,
                r#"(NIL "wrapped once" {m} {m} {m} NIL NIL NIL NIL NIL) "#,
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 61 "#,
                r#"(NIL "core" {c} {c} {c} NIL NIL NIL NIL NIL) "#,
                r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)"#,
                r#" 4 NIL NIL NIL NIL) 9 NIL NIL NIL NIL)"#
            ),
            m = mid,
            c = core
        ),
    );
    body(
        raw,
        format!(
            concat!(
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 168 "#,
                r#"(NIL "wrapped once" {m} {m} {m} NIL NIL NIL NIL NIL) "#,
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 61 "#,
                r#"(NIL "core" {c} {c} {c} NIL NIL NIL NIL NIL) "#,
                r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 12 1) 4) 9)"#
            ),
            m = mid,
            c = core
        ),
    );
    let header = upto(raw, "\r\n\r\n");
    assert_eq!(header.len(), 110);
    whole(raw, header);
    let middle = &raw[110..];
    let middle_header = upto(middle, "\r\n\r\n");
    let core_msg = "From: Core <core@example.test>\r\nSubject: core\r\n\r\nCore text.\r\n";
    let core_header = "From: Core <core@example.test>\r\nSubject: core\r\n\r\n";
    has(raw, &[1], Text::All, middle);
    has(raw, &[1], Text::Mime, header);
    has(raw, &[1], Text::Header, middle_header);
    has(raw, &[1], Text::Text, core_msg);
    has(
        raw,
        &[1],
        not(&["from", "mime-version"]),
        "Subject: wrapped once\r\nContent-Type: message/rfc822\r\n\r\n",
    );
    has(raw, &[1, 1], Text::All, core_msg);
    has(raw, &[1, 1], Text::Mime, middle_header);
    has(raw, &[1, 1], Text::Header, core_header);
    has(raw, &[1, 1], Text::Text, "Core text.\r\n");
    has(raw, &[1, 1], fields(&["subject"]), "Subject: core\r\n\r\n");
    has(raw, &[1, 1, 1], Text::All, "Core text.\r\n");
    has(raw, &[1, 1, 1], Text::Mime, core_header);
    none_all(raw, &[&[2], &[1, 2], &[1, 1, 2], &[1, 1, 1, 1]]);
    none(raw, &[1, 1, 1], Text::Header);
    none(raw, &[1, 1, 1], Text::Text);
    subject_fields(raw, "Subject: wrapped twice");
    done("m10");
}

#[test]
fn m11_digest_defaults_to_message_rfc822() {
    let raw = M11;
    let bot = r#"(("Digest Bot" NIL "digest" "example.test"))"#;
    env(
        raw,
        format!(
            r#"(NIL "List digest, Vol 1, Issue 1" {bot} {bot} {bot} ((NIL NIL "list" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    let one = r#"(("Poster One" NIL "one" "example.test"))"#;
    let two = r#"(("Poster Two" NIL "two" "example.test"))"#;
    // Parts 1 and 2 have an empty header: message/rfc822 (RFC 2046 §5.1.5), without
    // parameters. The messages inside have their own defaults: text/plain us-ascii.
    bs(
        raw,
        format!(
            concat!(
                r#"(("message" "rfc822" NIL NIL NIL "7BIT" 76 "#,
                r#"(NIL "First post" {o} {o} {o} NIL NIL NIL NIL NIL) "#,
                r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 16 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)"#,
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 119 "#,
                r#"(NIL "Second post" {t} {t} {t} NIL NIL NIL NIL NIL) "#,
                r#"("text" "plain" ("charset" "utf-8") NIL NIL "7BIT" 17 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)"#,
                r#"("text" "plain" NIL NIL NIL "7BIT" 55 1 NIL NIL NIL NIL)"#,
                r#" "digest" ("boundary" "dig11") NIL NIL NIL)"#
            ),
            o = one,
            t = two
        ),
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    assert!(raw[header.len()..].starts_with(b"Preamble text"));
    let first =
        "From: Poster One <one@example.test>\r\nSubject: First post\r\n\r\nFirst post body.";
    has(raw, &[1], Text::All, first);
    has(raw, &[1], Text::Mime, "\r\n");
    has(
        raw,
        &[1],
        Text::Header,
        "From: Poster One <one@example.test>\r\nSubject: First post\r\n\r\n",
    );
    has(raw, &[1], Text::Text, "First post body.");
    has(raw, &[1, 1], Text::All, "First post body.");
    let second_header = "From: Poster Two <two@example.test>\r\nSubject: Second post\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
    has(
        raw,
        &[2],
        Text::All,
        format!("{second_header}Second post body."),
    );
    has(raw, &[2], Text::Mime, "\r\n");
    has(raw, &[2], Text::Header, second_header);
    has(raw, &[2], Text::Text, "Second post body.");
    has(
        raw,
        &[2],
        fields(&["content-type"]),
        "Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    has(raw, &[2, 1], Text::All, "Second post body.");
    has(raw, &[2, 1], Text::Mime, second_header);
    has(
        raw,
        &[3],
        Text::All,
        "Not a message: an explicit text part inside the digest.",
    );
    has(raw, &[3], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    none_all(raw, &[&[4], &[1, 2], &[3, 1], &[1, 1, 1]]);
    none(raw, &[3], Text::Header);
    none(raw, &[3], Text::Text);
    subject_fields(raw, "Subject: List digest, Vol 1, Issue 1");
    done("m11");
}

#[test]
fn m12_encoded_words_and_a_latin1_body() {
    let raw = M12;
    // "=?iso-8859-1?q?Andr=E9?= Dupont" is "André Dupont", sent as one UTF-8 B word;
    // the subject keeps its encoded words as written.
    let andre = r#"(("=?utf-8?b?QW5kcsOpIER1cG9udA==?=" NIL "andre" "example.test"))"#;
    env(
        raw,
        format!(
            concat!(
                r#"("Sun, 8 Jan 2023 20:00:00 +0100" "=?utf-8?b?w5xiZXIgZGVuIFdvbGtlbg==?= und =?iso-8859-1?q?M=FCnchen?=" "#,
                r#"{a} {a} {a} (("=?utf-8?b?5bGx55Sw5aSq6YOO?=" NIL "taro" "example.test")) "#,
                r#"(("Plain Name" NIL "plain" "example.test")) NIL NIL "<12@example.test>")"#
            ),
            a = andre
        ),
    );
    // "Grüße aus München.\r\n" in ISO-8859-1: 18 + 2 = 20 octets, 1 line.
    bs(
        raw,
        r#"("text" "plain" ("charset" "iso-8859-1") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)"#,
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, b"Gr\xfc\xdfe aus M\xfcnchen.\r\n");
    has(
        raw,
        &[],
        fields(&["subject", "cc"]),
        "Cc: \"Plain Name\" <plain@example.test>\r\nSubject: =?utf-8?b?w5xiZXIgZGVuIFdvbGtlbg==?= und =?iso-8859-1?q?M=FCnchen?=\r\n\r\n",
    );
    let t = sec(raw, &[1], Text::All).unwrap();
    assert_bytes("<2.2>", partial(&t, 2, 2), b"\xfc\xdf");
    none_all(raw, &[&[2], &[1, 1]]);
    has(raw, &[1], Text::Mime, upto(raw, "\r\n\r\n"));
    done("m12");
}

#[test]
fn m13_encoded_words_in_every_address_field() {
    let raw = M13;
    env(
        raw,
        concat!(
            r#"(NIL "=?utf-8?q?caf=C3=A9?= =?utf-8?q?_cr=C3=A8me?=" "#,
            r#"(("=?utf-8?b?Wm/DqyDDhWJlcmc=?=" NIL "zoe" "example.test")) "#,
            r#"(("=?utf-8?b?8J+YgCBCb3Q=?=" NIL "bot" "example.test")) "#,
            r#"(("=?utf-8?b?U8O4cmVu?=" NIL "soren" "example.test")) "#,
            r#"((NIL NIL "ascii" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 35 1 NIL NIL NIL NIL)"#),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(
        raw,
        &[1],
        Text::All,
        "Encoded words only in the header.\r\n",
    );
    has(
        raw,
        &[],
        fields(&["sender", "reply-to"]),
        "Sender: =?utf-8?B?8J+YgCBCb3Q=?= <bot@example.test>\r\nReply-To: =?iso-8859-1?b?U/hyZW4=?= <soren@example.test>\r\n\r\n",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, upto(raw, "\r\n\r\n"));
    subject_fields(
        raw,
        "Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_cr=C3=A8me?=",
    );
    done("m13");
}

#[test]
fn m14_group_syntax() {
    let raw = M14;
    let org = r#"(("Organizer" NIL "org" "example.test"))"#;
    env(
        raw,
        format!(
            concat!(
                r#"(NIL "Group syntax" {o} {o} {o} "#,
                r#"((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) "#,
                r#"((NIL NIL "Team A" NIL)(NIL NIL "ann" "example.test")("Bo B" NIL "bo" "example.test")(NIL NIL NIL NIL)(NIL NIL "solo" "example.test")) "#,
                r#"((NIL NIL "Hidden" NIL)(NIL NIL NIL NIL)) NIL NIL)"#
            ),
            o = org
        ),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 9 1 NIL NIL NIL NIL)"#),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Groups.\r\n");
    has(
        raw,
        &[],
        fields(&["bcc", "to"]),
        "To: undisclosed-recipients:;\r\nBcc: Hidden: ;\r\n\r\n",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, upto(raw, "\r\n\r\n"));
    subject_fields(raw, "Subject: Group syntax");
    done("m14");
}

#[test]
fn m15_quoted_printable_latin1() {
    let raw = M15;
    let qp = r#"((NIL NIL "qp" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "Quoted-printable latin-1" {qp} {qp} {qp} NIL NIL NIL NIL NIL)"#),
    );
    // Media type names compare without case (RFC 2045 §5.1) and go out in lower case;
    // parameter values and the encoding go out as written. 154 octets, 4 lines.
    bs(
        raw,
        r#"("text" "plain" ("charset" "ISO-8859-1") NIL NIL "Quoted-Printable" 154 4 NIL NIL NIL NIL)"#,
    );
    body(
        raw,
        r#"("text" "plain" ("charset" "ISO-8859-1") NIL NIL "Quoted-Printable" 154 4)"#,
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    let text = concat!(
        "Fa=E7ade and na=EFve r=E9sum=E9.\r\n",
        "This line is long enough that it has to be wrapped with a soft line brea=\r\n",
        "k in the middle.\r\n",
        "Trailing space encoded=20\r\n"
    );
    has(raw, &[1], Text::All, text);
    has(raw, &[1], Text::Mime, header);
    none_all(raw, &[&[2], &[1, 1]]);
    subject_fields(raw, "Subject: Quoted-printable latin-1");
    done("m15");
}

#[test]
fn m16_raw_utf8_header_and_8bit_body() {
    let raw = M16;
    let bjork = r#"(("=?utf-8?b?QmrDtnJr?=" NIL "bjork" "example.test"))"#;
    // The raw UTF-8 subject cannot be quoted: a literal of its 26 octets.
    env(
        raw,
        format!(
            concat!(
                "(NIL {{26}}\r\nGrüße, raw UTF-8 subject {b} {b} {b} ",
                r#"(("=?utf-8?b?w5xtbGF1dA==?=" NIL "umlaut" "example.test")) NIL NIL NIL NIL)"#
            ),
            b = bjork
        ),
    );
    // 35 + 29 + 18 = 82 octets on 3 lines.
    bs(
        raw,
        r#"("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 82 3 NIL NIL NIL NIL)"#,
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    let text = "Здравствуйте, мир!\r\n日本語のテキスト。\r\nΕλληνικά\r\n";
    has(raw, &[1], Text::All, text);
    has(
        raw,
        &[],
        fields(&["to", "subject"]),
        "To: Ümlaut <umlaut@example.test>\r\nSubject: Grüße, raw UTF-8 subject\r\n\r\n",
    );
    let t = sec(raw, &[1], Text::All).unwrap();
    // Partials count octets, so they may cut a character in two.
    assert_bytes("<0.3>", partial(&t, 0, 3), b"\xd0\x97\xd0");
    assert_bytes("<35.9>", partial(&t, 35, 9), "日本語".as_bytes());
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, upto(raw, "\r\n\r\n"));
    subject_fields(raw, "Subject: Grüße, raw UTF-8 subject");
    done("m16");
}

#[test]
fn m17_rfc2231_parameters() {
    let raw = M17;
    let files = r#"((NIL NIL "files" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "RFC 2231 parameters" {files} {files} {files} NIL NIL NIL NIL NIL)"#),
    );
    // RFC 2231 §3: IMAP servers SHOULD decode parameter value continuations for BODY and
    // BODYSTRUCTURE; it asks nothing of the charset form, which IMAP4rev1 (7-bit
    // parameter strings) passes on as written, under the name with its "*".
    bs(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)"#,
            r#"("application" "octet-stream" ("name" "a-very-long-file-name-that-continues.txt") NIL NIL "base64" 8 NIL "#,
            r#"("attachment" ("filename" "a-very-long-file-name-that-continues.txt")) NIL NIL)"#,
            r#"("text" "plain" ("charset" "utf-8" "name*" "utf-8''na%C3%AFve.txt") NIL NIL "7bit" 5 1 NIL "#,
            r#"("attachment" ("filename*" "utf-8''na%C3%AFve.txt")) NIL NIL)"#,
            r#" "mixed" ("boundary" "b17") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Two files.");
    has(raw, &[2], Text::All, "SGVsbG8=");
    has(
        raw,
        &[2],
        Text::Mime,
        concat!(
            "Content-Type: application/octet-stream;\r\n",
            " name*0=\"a-very-long-file-name-\";\r\n",
            " name*1=\"that-continues.txt\"\r\n",
            "Content-Disposition: attachment;\r\n",
            " filename*0=\"a-very-long-file-name-\";\r\n",
            " filename*1=\"that-continues.txt\"\r\n",
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ),
    );
    has(raw, &[3], Text::All, "naive");
    has(
        raw,
        &[3],
        Text::Mime,
        "Content-Type: text/plain; charset=utf-8; name*=utf-8''na%C3%AFve.txt\r\nContent-Disposition: attachment; filename*=utf-8''na%C3%AFve.txt\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
    );
    none_all(raw, &[&[4], &[2, 1]]);
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    subject_fields(raw, "Subject: RFC 2231 parameters");
    done("m17");
}

#[test]
fn m18_language_location_md5_id_description() {
    let raw = M18;
    let meta = r#"((NIL NIL "meta" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "MIME extension fields" {meta} {meta} {meta} NIL NIL NIL NIL NIL)"#),
    );
    bs(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") "<part1.18@example.test>" "English and German text" "7BIT" 13 1 "#,
            r#""Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" NIL) ("en" "de") "http://example.test/text.txt")"#,
            r#"("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 14 1 NIL "#,
            r#"("inline" ("creation-date" "Mon, 2 Jan 2023 10:00:00 +0000")) "fr" NIL)"#,
            r#" "mixed" ("boundary" "m18") NIL "en" "http://example.test/bundle")"#
        ),
    );
    body(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") "<part1.18@example.test>" "English and German text" "7BIT" 13 1)"#,
            r#"("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 14 1) "mixed")"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Hello / Hallo");
    has(
        raw,
        &[1],
        Text::Mime,
        concat!(
            "Content-Type: text/plain; charset=us-ascii\r\n",
            "Content-ID: <part1.18@example.test>\r\n",
            "Content-Description: English and German text\r\n",
            "Content-Language: en, de\r\n",
            "Content-Location: http://example.test/text.txt\r\n",
            "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n",
            "Content-Disposition: inline\r\n\r\n"
        ),
    );
    has(raw, &[2], Text::All, "<p>Bonjour</p>");
    has(
        raw,
        &[],
        fields(&["content-language", "content-location"]),
        "Content-Language: en\r\nContent-Location: http://example.test/bundle\r\n\r\n",
    );
    none_all(raw, &[&[3], &[1, 1]]);
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: text/html; charset=us-ascii\r\nContent-Language: fr\r\nContent-Disposition: inline; creation-date=\"Mon, 2 Jan 2023 10:00:00 +0000\"\r\n\r\n",
    );
    subject_fields(raw, "Subject: MIME extension fields");
    done("m18");
}

#[test]
fn m19_every_address_field() {
    let raw = M19;
    env(
        raw,
        concat!(
            r#"("Mon, 9 Jan 2023 07:45:00 -0800" "Re: Planning" "#,
            r#"(("Doe, Jane" NIL "jane" "example.test")) "#,
            r#"(("Assistant" NIL "assistant" "example.test")) "#,
            r#"(("Replies" NIL "replies" "example.test")(NIL NIL "backup" "example.test")) "#,
            r#"((NIL NIL "one" "example.test")("Two" NIL "two" "example.test")("Three Person" NIL "three" "example.test")) "#,
            r#"((NIL NIL "cc1" "example.test")(NIL NIL "cc2" "example.test")) "#,
            r#"((NIL NIL "bcc" "example.test")(NIL NIL "postmaster" "MISSING_DOMAIN")) "#,
            r#""<parent.19@example.test>" "<child.19@example.test>")"#
        ),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)"#),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Reply body.\r\n");
    has(
        raw,
        &[],
        fields(&["to", "references"]),
        "To: one@example.test, \"Two\" <two@example.test>,\r\n Three Person <three@example.test>\r\nReferences: <root.19@example.test> <parent.19@example.test>\r\n\r\n",
    );
    has(
        raw,
        &[],
        not(&[
            "date",
            "from",
            "sender",
            "reply-to",
            "to",
            "cc",
            "bcc",
            "references",
        ]),
        "Subject: Re: Planning\r\nIn-Reply-To: <parent.19@example.test>\r\nMessage-ID: <child.19@example.test>\r\n\r\n",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, upto(raw, "\r\n\r\n"));
    subject_fields(raw, "Subject: Re: Planning");
    done("m19");
}

#[test]
fn m20_multipart_without_boundary_parameter() {
    let raw = M20;
    let broken = r#"((NIL NIL "broken" "example.test"))"#;
    env(
        raw,
        format!(
            r#"(NIL "multipart without boundary" {broken} {broken} {broken} NIL NIL NIL NIL NIL)"#
        ),
    );
    // A multipart Content-Type without its required boundary is invalid; RFC 2045 §5.2
    // recommends the text/plain; charset=us-ascii default then. The whole body, 60
    // octets on 5 lines, is that text.
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 60 5 NIL NIL NIL NIL)"#),
    );
    body(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 60 5)"#),
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    has(raw, &[1], Text::All, &raw[header.len()..]);
    none_all(raw, &[&[2], &[1, 1]]);
    has(raw, &[1], Text::Mime, header);
    subject_fields(raw, "Subject: multipart without boundary");
    done("m20");
}

#[test]
fn m21_multipart_without_closing_delimiter() {
    let raw = M21;
    let cut21 = r#"((NIL NIL "cut" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "truncated multipart" {cut21} {cut21} {cut21} NIL NIL NIL NIL NIL)"#),
    );
    // Without a close delimiter the last part runs to the end of the message, its final
    // CRLF included (no delimiter claims it): 59 octets, 1 line.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" NIL NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)"#,
            r#"("text" "plain" NIL NIL NIL "7BIT" 59 1 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "cut21") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "first part");
    has(
        raw,
        &[2],
        Text::All,
        "second part, the message ends without a closing delimiter\r\n",
    );
    has(raw, &[2], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    none_all(raw, &[&[3], &[2, 1]]);
    has(raw, &[1], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    subject_fields(raw, "Subject: truncated multipart");
    done("m21");
}

#[test]
fn m22_boundary_never_appears() {
    let raw = M22;
    let nob = r#"((NIL NIL "nob" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "boundary never used" {nob} {nob} {nob} NIL NIL NIL NIL NIL)"#),
    );
    // No delimiter: no body part can be found, so the multipart cannot be described as
    // one (RFC 3501 needs at least one part). The body is described as the default
    // text/plain (RFC 2045 §5.2), which is what BODY[1] returns: 85 octets, 5 lines.
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 85 5 NIL NIL NIL NIL)"#),
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    has(raw, &[1], Text::All, &raw[header.len()..]);
    none_all(raw, &[&[2], &[1, 1]]);
    has(raw, &[1], Text::Mime, header);
    subject_fields(raw, "Subject: boundary never used");
    done("m22");
}

#[test]
fn m23_bare_lf_lines_mixed_in() {
    let raw = M23;
    let lf = r#"((NIL NIL "lf" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "bare LF lines" {lf} {lf} {lf} NIL NIL NIL NIL NIL)"#),
    );
    // Part 1 "line one\nline two" (the CRLF after it belongs to the delimiter): 17
    // octets, 2 lines.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" NIL NIL NIL "7BIT" 17 2 NIL NIL NIL NIL)"#,
            r#"("text" "plain" NIL NIL NIL "7BIT" 9 1 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "lf23") NIL NIL NIL)"#
        ),
    );
    let header = upto(raw, "\r\n\r\n");
    assert_eq!(header.len(), 115);
    whole(raw, header);
    has(raw, &[1], Text::All, "line one\nline two");
    has(raw, &[1], Text::Mime, "Content-Type: text/plain\n\n");
    has(raw, &[2], Text::All, "crlf part");
    has(raw, &[2], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    has(
        raw,
        &[],
        fields(&["subject"]),
        "Subject: bare LF lines\n\r\n",
    );
    has(
        raw,
        &[],
        not(&["subject"]),
        "From: lf@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"lf23\"\r\n\r\n",
    );
    none_all(raw, &[&[3], &[1, 1]]);
    done("m23");
}

#[test]
fn m24_garbage_header_lines() {
    let raw = M24;
    let g = r#"((NIL NIL "garbage" "example.test"))"#;
    env(
        raw,
        format!(
            r#"(NIL "after garbage" {g} {g} {g} ((NIL NIL "victim" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 21 1 NIL NIL NIL NIL)"#),
    );
    let header = upto(raw, "\r\n\r\n");
    assert_eq!(header.len(), 151);
    whole(raw, header);
    has(raw, &[1], Text::All, "Body after garbage.\r\n");
    // "X-Weird  :" is the obsolete form with space before the colon (RFC 5322 §4.5);
    // lines that are not header fields match no field name, listed or not.
    has(
        raw,
        &[],
        fields(&["to", "x-weird", "subject"]),
        "Subject: after garbage\r\nX-Weird  : spaced name\r\nTo: victim@example.test\r\n\r\n",
    );
    has(
        raw,
        &[],
        not(&["from", "to"]),
        "Subject: after garbage\r\nX-Weird  : spaced name\r\n\r\n",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, header);
    done("m24");
}

#[test]
fn m25_empty_parts() {
    let raw = M25;
    let e = r#"((NIL NIL "empty" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "empty parts" {e} {e} {e} NIL NIL NIL NIL NIL)"#),
    );
    // Each delimiter's CRLF is its own, so every part's body is empty; part 2 has no
    // header at all.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" NIL NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
            r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#,
            r#"("application" "octet-stream" NIL NIL NIL "base64" 0 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "e25") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "");
    has(raw, &[1], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    has(raw, &[2], Text::All, "");
    has(raw, &[2], Text::Mime, "\r\n");
    has(raw, &[3], Text::All, "");
    has(
        raw,
        &[3],
        Text::Mime,
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    none_all(raw, &[&[4], &[1, 1], &[2, 1]]);
    subject_fields(raw, "Subject: empty parts");
    done("m25");
}

#[test]
fn m26_invalid_base64() {
    let raw = M26;
    let b = r#"((NIL NIL "b64" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "invalid base64" {b} {b} {b} NIL NIL NIL NIL NIL)"#),
    );
    // The structure comes from the headers and the stored octets, whatever they decode
    // to: 30 + 2 + 4 = 36 octets.
    bs(
        raw,
        concat!(
            r#"(("application" "octet-stream" ("name" "bad.bin") NIL NIL "base64" 36 NIL NIL NIL NIL)"#,
            r#"("text" "plain" NIL NIL NIL "7BIT" 18 1 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "b26") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(
        raw,
        &[1],
        Text::All,
        "This is *not* valid base64 !!!\r\n@@@@",
    );
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: application/octet-stream; name=\"bad.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    has(raw, &[2], Text::All, "after the bad part");
    none_all(raw, &[&[3], &[1, 1]]);
    has(raw, &[2], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    subject_fields(raw, "Subject: invalid base64");
    done("m26");
}

#[test]
fn m27_long_folded_headers() {
    let raw = M27;
    let f = r#"((NIL NIL "folder" "example.test"))"#;
    // Unfolding removes each CRLF and keeps the white space after it (RFC 5322 §2.2.3),
    // the tab included.
    let subject = concat!(
        "This is a deliberately long subject line that is folded",
        " over several physical lines because it is longer than the",
        "\trecommended seventy-eight characters and RFC 5322 allows",
        " folding at any whitespace, so IMAP clients must see it",
        " unfolded as one line"
    );
    env(
        raw,
        format!(
            concat!(
                r#"(NIL "{s}" {f} {f} {f} "#,
                r#"((NIL NIL "first" "example.test")(NIL NIL "second" "example.test")(NIL NIL "third" "example.test")) "#,
                r#"NIL NIL NIL "<folded.27@example.test>")"#
            ),
            s = subject,
            f = f
        ),
    );
    bs(
        raw,
        format!(r#"("text" "plain" {US_ASCII} NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)"#),
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    has(raw, &[1], Text::All, "Short body.\r\n");
    let mut x_long = format!("X-Long: {}\r\n", "a".repeat(70));
    for c in 'b'..='m' {
        x_long.push_str(&format!(" {}\r\n", c.to_string().repeat(70)));
    }
    assert_eq!(x_long.len(), 80 + 12 * 73);
    has(raw, &[], fields(&["x-long"]), format!("{x_long}\r\n"));
    has(
        raw,
        &[],
        fields(&["message-id", "to"]),
        "To: first@example.test,\r\n second@example.test,\r\n\tthird@example.test\r\nMessage-ID:\r\n <folded.27@example.test>\r\n\r\n",
    );
    has(
        raw,
        &[],
        not(&["x-long", "subject"]),
        "From: folder@example.test\r\nTo: first@example.test,\r\n second@example.test,\r\n\tthird@example.test\r\nMessage-ID:\r\n <folded.27@example.test>\r\n\r\n",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, header);
    done("m27");
}

#[test]
fn m28_preamble_epilogue_and_transport_padding() {
    let raw = M28;
    let p = r#"((NIL NIL "pad" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "transport padding" {p} {p} {p} NIL NIL NIL NIL NIL)"#),
    );
    // Part 2 starts with an empty line and ends with two line ends before the
    // delimiter's own CRLF: "\r\nblank line first, two trailing line ends\r\n\r\n", 46
    // octets, 3 lines.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" NIL NIL NIL "7BIT" 22 1 NIL NIL NIL NIL)"#,
            r#"("text" "plain" NIL NIL NIL "7BIT" 46 3 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "pad28") NIL NIL NIL)"#
        ),
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    assert!(raw.ends_with(b"epilogue line 2\r\n"));
    has(raw, &[1], Text::All, "padded delimiter above");
    has(raw, &[1], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    has(
        raw,
        &[2],
        Text::All,
        "\r\nblank line first, two trailing line ends\r\n\r\n",
    );
    has(raw, &[2], Text::Mime, "Content-Type: text/plain\r\n\r\n");
    none_all(raw, &[&[3], &[2, 1]]);
    subject_fields(raw, "Subject: transport padding");
    done("m28");
}

#[test]
fn m29_content_type_with_a_comment_and_folding() {
    let raw = M29;
    let p = r#"((NIL NIL "params" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "parameters with a comment" {p} {p} {p} NIL NIL NIL NIL NIL)"#),
    );
    // The comment is not a parameter; the quotes are not part of the value.
    bs(
        raw,
        r#"("text" "plain" ("charset" "us-ascii" "format" "flowed" "delsp" "yes") NIL NIL "7BIT" 31 2 NIL NIL NIL NIL)"#,
    );
    body(
        raw,
        r#"("text" "plain" ("charset" "us-ascii" "format" "flowed" "delsp" "yes") NIL NIL "7BIT" 31 2)"#,
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    has(raw, &[1], Text::All, "Flowed text \r\ncontinues here.\r\n");
    has(
        raw,
        &[],
        fields(&["content-type"]),
        "Content-Type: text/plain; charset=\"us-ascii\" (Plain text); format=flowed;\r\n\tdelsp=yes\r\n\r\n",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, header);
    subject_fields(raw, "Subject: parameters with a comment");
    done("m29");
}

#[test]
fn m30_single_part_binary_message() {
    let raw = M30;
    let s = r#"((NIL NIL "scanner" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "scan" {s} {s} {s} ((NIL NIL "archive" "example.test")) NIL NIL NIL NIL)"#),
    );
    // 20 + 2 + 8 + 2 = 32 octets; no line count for application/*.
    bs(
        raw,
        r#"("application" "pdf" ("name" "scan.pdf") NIL NIL "BASE64" 32 NIL ("attachment" ("filename" "scan.pdf")) NIL NIL)"#,
    );
    body(
        raw,
        r#"("application" "pdf" ("name" "scan.pdf") NIL NIL "BASE64" 32)"#,
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    has(raw, &[1], Text::All, "JVBERi0xLjQKJcfsj6IK\r\nJSVFT0YK\r\n");
    has(raw, &[1], Text::Mime, header);
    none_all(raw, &[&[2], &[1, 1]]);
    none(raw, &[1], Text::Header);
    subject_fields(raw, "Subject: scan");
    done("m30");
}

#[test]
fn m31_last_line_without_line_end() {
    let raw = M31;
    let n = r#"((NIL NIL "nofinal" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "no final line end" {n} {n} {n} NIL NIL NIL NIL NIL)"#),
    );
    // 18 + 2 + 26 = 46 octets; one line end plus the unterminated last line: 2 lines.
    bs(
        raw,
        r#"("text" "enriched" NIL NIL NIL "7BIT" 46 2 NIL NIL NIL NIL)"#,
    );
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    has(
        raw,
        &[1],
        Text::All,
        "<bold>first</bold>\r\nlast line without line end",
    );
    none_all(raw, &[&[2]]);
    has(raw, &[1], Text::Mime, header);
    subject_fields(raw, "Subject: no final line end");
    done("m31");
}

#[test]
fn m32_multipart_signed() {
    let raw = M32;
    let s = r#"((NIL NIL "signer" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "signed" {s} {s} {s} NIL NIL NIL NIL NIL)"#),
    );
    // The signature: 29 + 2 + 0 + 2 + 16 + 2 + 27 = 78 octets (lines starting with "-"
    // are not delimiters).
    bs(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)"#,
            r#"("application" "pgp-signature" ("name" "signature.asc") NIL "OpenPGP digital signature" "7BIT" 78 NIL NIL NIL NIL)"#,
            r#" "signed" ("protocol" "application/pgp-signature" "micalg" "pgp-sha256" "boundary" "sig32") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Signed text.");
    has(
        raw,
        &[2],
        Text::All,
        "-----BEGIN PGP SIGNATURE-----\r\n\r\niQEzBAEBCAAdFiEE\r\n-----END PGP SIGNATURE-----",
    );
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: application/pgp-signature; name=\"signature.asc\"\r\nContent-Description: OpenPGP digital signature\r\n\r\n",
    );
    none_all(raw, &[&[3], &[1, 1]]);
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    subject_fields(raw, "Subject: signed");
    done("m32");
}

#[test]
fn m33_delivery_report() {
    let raw = M33;
    let d = r#"((NIL NIL "MAILER-DAEMON" "example.test"))"#;
    env(
        raw,
        format!(
            r#"(NIL "Undelivered Mail Returned to Sender" {d} {d} {d} ((NIL NIL "sender" "example.test")) NIL NIL NIL NIL)"#
        ),
    );
    // message/delivery-status is not message/rfc822: no envelope, no line count.
    bs(
        raw,
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 36 1 NIL NIL NIL NIL)"#,
            r#"("message" "delivery-status" NIL NIL NIL "7BIT" 112 NIL NIL NIL NIL)"#,
            r#"("text" "rfc822-headers" NIL NIL NIL "7BIT" 64 3 NIL NIL NIL NIL)"#,
            r#" "report" ("report-type" "delivery-status" "boundary" "rep33") NIL NIL NIL)"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    has(raw, &[1], Text::All, "Your message could not be delivered.");
    has(
        raw,
        &[2],
        Text::All,
        "Reporting-MTA: dns; mx.example.test\r\n\r\nFinal-Recipient: rfc822; gone@example.test\r\nAction: failed\r\nStatus: 5.1.1",
    );
    has(
        raw,
        &[3],
        Text::All,
        "From: sender@example.test\r\nTo: gone@example.test\r\nSubject: hello",
    );
    has(
        raw,
        &[3],
        Text::Mime,
        "Content-Type: text/rfc822-headers\r\n\r\n",
    );
    none_all(raw, &[&[4], &[2, 1], &[3, 1]]);
    none(raw, &[2], Text::Header);
    none(raw, &[3], Text::Header);
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: message/delivery-status\r\n\r\n",
    );
    subject_fields(raw, "Subject: Undelivered Mail Returned to Sender");
    done("m33");
}

#[test]
fn m34_multipart_with_no_parts() {
    let raw = M34;
    let n = r#"((NIL NIL "nothing" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "multipart with no parts" {n} {n} {n} NIL NIL NIL NIL NIL)"#),
    );
    // The body is only the close delimiter: no part. RFC 3501 needs at least one, so an
    // empty text part stands in (no value is given by any RFC; this is the module's).
    bs(
        raw,
        r#"(("text" "plain" NIL NIL NIL "7BIT" 0 0) "mixed" ("boundary" "e34") NIL NIL NIL)"#,
    );
    body(raw, r#"(("text" "plain" NIL NIL NIL "7BIT" 0 0) "mixed")"#);
    let header = upto(raw, "\r\n\r\n");
    whole(raw, header);
    assert_bytes("TEXT", &raw[header.len()..], b"--e34--\r\n");
    none_all(raw, &[&[1], &[2], &[1, 1]]);
    subject_fields(raw, "Subject: multipart with no parts");
    done("m34");
}

#[test]
fn m35_top_level_message_rfc822_with_multipart_inside() {
    let raw = M35;
    let b = r#"(("Bouncer" NIL "bounce" "example.test"))"#;
    let o = r#"(("Original" NIL "orig" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "attached whole" {b} {b} {b} NIL NIL NIL NIL NIL)"#),
    );
    // The body (the whole original message, to the end of the file): 252 octets, 14
    // lines. Inside, part 1 has an empty header: text/plain us-ascii.
    bs(
        raw,
        format!(
            concat!(
                r#"("message" "rfc822" NIL NIL NIL "7BIT" 252 "#,
                r#"(NIL "original" {o} {o} {o} (("Someone" NIL "someone" "example.test")) NIL NIL NIL NIL) "#,
                r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)"#,
                r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 6 1 NIL NIL NIL NIL)"#,
                r#" "mixed" ("boundary" "o35") NIL NIL NIL) 14 NIL ("attachment" NIL) NIL NIL)"#
            ),
            o = o
        ),
    );
    let header = upto(raw, "\r\n\r\n");
    assert_eq!(header.len(), 146);
    whole(raw, header);
    let inner = &raw[146..];
    let inner_header = upto(inner, "\r\n\r\n");
    assert_eq!(inner_header.len(), 159);
    has(raw, &[1], Text::All, inner);
    has(raw, &[1], Text::Mime, header);
    has(raw, &[1], Text::Header, inner_header);
    // The encapsulated message's text is all of its body: the multipart, with the CRLF
    // after its close delimiter.
    has(raw, &[1], Text::Text, &inner[inner_header.len()..]);
    assert_eq!(inner.len() - inner_header.len(), 93);
    has(
        raw,
        &[1],
        fields(&["to"]),
        "To: Someone <someone@example.test>\r\n\r\n",
    );
    has(raw, &[1, 1], Text::All, "default part");
    has(raw, &[1, 1], Text::Mime, "\r\n");
    has(raw, &[1, 2], Text::All, "second");
    has(
        raw,
        &[1, 2],
        Text::Mime,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    none_all(raw, &[&[2], &[1, 3], &[1, 1, 1]]);
    none(raw, &[1, 1], Text::Header);
    subject_fields(raw, "Subject: attached whole");
    done("m35");
}

#[test]
fn m36_the_examples_of_rfc_2231() {
    let raw = M36;
    let r = r#"((NIL NIL "rfc2231" "example.test"))"#;
    env(
        raw,
        format!(r#"(NIL "the examples of RFC 2231" {r} {r} {r} NIL NIL NIL NIL NIL)"#),
    );
    // RFC 2231 §3 (continuations, joined), §4 (a charset and language, kept encoded under
    // "title*") and §4.1 (encoded and plain pieces mixed: joined into one encoded value,
    // the plain piece "isn't it!" percent-encoded where it is not attribute-char).
    // message/external-body is not message/rfc822: no envelope, no line count.
    bs(
        raw,
        concat!(
            r#"(("message" "external-body" ("access-type" "URL" "url" "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar") NIL NIL "7BIT" 40 NIL NIL NIL NIL)"#,
            r#"("application" "x-stuff" ("title*" "us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A") NIL NIL "7BIT" 8 NIL NIL NIL NIL)"#,
            r#"("application" "x-stuff" ("title*" "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!") NIL NIL "7BIT" 10 NIL "#,
            r#"("attachment" ("filename*" "utf-8''a%C3%AFb.txt")) NIL NIL)"#,
            r#" "mixed" ("boundary" "x36") NIL NIL NIL)"#
        ),
    );
    body(
        raw,
        concat!(
            r#"(("message" "external-body" ("access-type" "URL" "url" "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar") NIL NIL "7BIT" 40)"#,
            r#"("application" "x-stuff" ("title*" "us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A") NIL NIL "7BIT" 8)"#,
            r#"("application" "x-stuff" ("title*" "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!") NIL NIL "7BIT" 10)"#,
            r#" "mixed")"#
        ),
    );
    whole(raw, upto(raw, "\r\n\r\n"));
    // The external-body part's body is its phantom header, without the CRLF that
    // belongs to the next delimiter.
    has(
        raw,
        &[1],
        Text::All,
        "Content-Type: application/octet-stream\r\n",
    );
    has(
        raw,
        &[1],
        Text::Mime,
        "Content-Type: message/external-body; access-type=URL;\r\n URL*0=\"ftp://\";\r\n URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"\r\n\r\n",
    );
    has(raw, &[2], Text::All, "c3R1ZmY=");
    has(raw, &[3], Text::All, "more stuff");
    has(
        raw,
        &[3],
        Text::Mime,
        concat!(
            "Content-Type: application/x-stuff;\r\n",
            " title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n",
            " title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n",
            " title*2=\"isn't it!\"\r\n",
            "Content-Disposition: attachment; filename*0*=utf-8''a%C3; filename*1*=%AFb.txt\r\n\r\n"
        ),
    );
    none_all(raw, &[&[4], &[1, 1], &[3, 1]]);
    none(raw, &[1], Text::Header);
    none(raw, &[1], Text::Text);
    has(
        raw,
        &[2],
        Text::Mime,
        "Content-Type: application/x-stuff;\r\n title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\r\n\r\n",
    );
    subject_fields(raw, "Subject: the examples of RFC 2231");
    done("m36");
}
