//! ENVELOPE and BODYSTRUCTURE for hand-checked messages. Every expected value below was
//! written from RFC 3501 §7.4.2 (and RFC 2045/2046 for the MIME defaults and part bounds)
//! by reading the message, not by running the code.

use super::*;

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("mail-parser parses anything non-empty")
}

fn env(raw: &[u8]) -> String {
    String::from_utf8(envelope(&parse(raw))).unwrap()
}

fn bs(raw: &[u8]) -> String {
    String::from_utf8(body_structure(&parse(raw), true)).unwrap()
}

fn body(raw: &[u8]) -> String {
    String::from_utf8(body_structure(&parse(raw), false)).unwrap()
}

#[test]
fn a_plain_message_without_mime_headers() {
    let raw = b"From: Alice Example <alice@example.test>\r\nSubject: Hi\r\n\r\nHello\r\nWorld\r\n";
    assert_eq!(
        env(raw),
        r#"(NIL "Hi" (("Alice Example" NIL "alice" "example.test")) (("Alice Example" NIL "alice" "example.test")) (("Alice Example" NIL "alice" "example.test")) NIL NIL NIL NIL NIL)"#
    );
    // "Hello\r\nWorld\r\n": 14 octets, 2 lines; the RFC 2045 default type.
    assert_eq!(
        bs(raw),
        r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 14 2 NIL NIL NIL NIL)"#
    );
    assert_eq!(
        body(raw),
        r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 14 2)"#
    );
}

#[test]
fn every_envelope_field_with_encoded_words_kept_raw() {
    let raw = b"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
\x20aus Berlin\r\n\
From: =?utf-8?q?J=C3=B6rg?= <joerg@example.test>\r\n\
Sender: list@example.test\r\n\
Reply-To: replies@example.test\r\n\
To: \"Carol \\\"C\\\"\" <carol@example.test>, dave@example.test\r\n\
Cc: Team: erin@example.test, frank@example.test;\r\n\
Bcc: grace@example.test\r\n\
In-Reply-To: <parent@example.test>\r\n\
Message-ID: <m1@example.test>\r\n\
\r\n\
body\r\n";
    assert_eq!(
        env(raw),
        concat!(
            r#"("Mon, 2 Jan 2023 10:00:00 +0000" "=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Berlin" "#,
            r#"(("=?utf-8?b?SsO2cmc=?=" NIL "joerg" "example.test")) "#,
            r#"((NIL NIL "list" "example.test")) "#,
            r#"((NIL NIL "replies" "example.test")) "#,
            r#"(("Carol \"C\"" NIL "carol" "example.test")(NIL NIL "dave" "example.test")) "#,
            r#"((NIL NIL "Team" NIL)(NIL NIL "erin" "example.test")(NIL NIL "frank" "example.test")(NIL NIL NIL NIL)) "#,
            r#"((NIL NIL "grace" "example.test")) "#,
            r#""<parent@example.test>" "<m1@example.test>")"#
        )
    );
}

#[test]
fn a_group_member_without_a_domain_is_left_out_but_a_bare_word_outside_is_not() {
    let raw = b"From: postmaster\r\n\
Cc: group: g1@d1.org, g2@d2.org;, group2: foo;\r\n\
\r\n\
body\r\n";
    let e = env(raw);
    assert!(
        e.contains(concat!(
            r#"((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)"#,
            r#"(NIL NIL "group2" NIL)(NIL NIL NIL NIL))"#
        )),
        "{e}"
    );
    assert!(
        e.contains(r#"((NIL NIL "postmaster" "MISSING_DOMAIN"))"#),
        "{e}"
    );
}

#[test]
fn multipart_alternative_with_quoted_printable() {
    let raw = b"From: b@example.test\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=C3=BC=C3=9Fe\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hi</p>\r\n\
--b1--\r\n";
    // Part bodies end before the CRLF that precedes the next delimiter (RFC 2046 §5.1.1):
    // "Gr=C3=BC=C3=9Fe" is 15 octets on 1 line, "<p>Hi</p>" 9 octets on 1 line.
    assert_eq!(
        bs(raw),
        concat!(
            r#"(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 15 1 NIL NIL NIL NIL)"#,
            r#"("text" "html" ("charset" "utf-8") NIL NIL "7BIT" 9 1 NIL NIL NIL NIL)"#,
            r#" "alternative" ("boundary" "b1") NIL NIL NIL)"#
        )
    );
    assert_eq!(
        body(raw),
        concat!(
            r#"(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 15 1)"#,
            r#"("text" "html" ("charset" "utf-8") NIL NIL "7BIT" 9 1) "alternative")"#
        )
    );
}

#[test]
fn an_attachment_with_disposition_language_and_id() {
    let raw = b"Subject: report\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
\r\n\
See attached.\r\n\
--XX\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-ID: <pdf1@example.test>\r\n\
Content-Description: The report\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Language: en\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--XX--\r\n\
epilogue\r\n";
    // Part 1 has no headers: text/plain; charset=us-ascii, "See attached." (13 octets, 1
    // line). Part 2: "JVBERi0xLjQK" (12 octets); no line count for a non-text type.
    assert_eq!(
        bs(raw),
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)"#,
            r#"("application" "pdf" ("name" "r.pdf") "<pdf1@example.test>" "The report" "base64" 12 NIL ("attachment" ("filename" "r.pdf")) "en" NIL)"#,
            r#" "mixed" ("boundary" "XX") NIL NIL NIL)"#
        )
    );
}

#[test]
fn a_forwarded_message_inside_a_message() {
    let raw = b"Subject: Fwd\r\n\
Content-Type: multipart/mixed; boundary=\"o\"\r\n\
\r\n\
--o\r\n\
Content-Type: text/plain\r\n\
\r\n\
see below\r\n\
--o\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.test\r\n\
Subject: Inner\r\n\
\r\n\
inner body\r\n\
--o--\r\n";
    // The message/rfc822 body is the 3 lines "From...", "Subject...", "" and "inner body":
    // "From: inner@example.test\r\nSubject: Inner\r\n\r\ninner body" = 26+16+2+10 = 54
    // octets on 4 lines. text/plain without a charset parameter has no parameters (the
    // us-ascii default applies only when Content-Type is absent).
    assert_eq!(
        bs(raw),
        concat!(
            r#"(("text" "plain" NIL NIL NIL "7BIT" 9 1 NIL NIL NIL NIL)"#,
            r#"("message" "rfc822" NIL NIL NIL "7BIT" 54 "#,
            r#"(NIL "Inner" ((NIL NIL "inner" "example.test")) ((NIL NIL "inner" "example.test")) ((NIL NIL "inner" "example.test")) NIL NIL NIL NIL NIL) "#,
            r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "o") NIL NIL NIL)"#
        )
    );
}

#[test]
fn broken_messages_still_get_a_valid_description() {
    // No header/body separator, no boundary parameter, an unterminated multipart.
    for raw in [
        &b"just some text without any header"[..],
        b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n",
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\nnever closed",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"\r\n",
    ] {
        let s = bs(raw);
        assert!(s.starts_with('(') && s.ends_with(')'), "{s}");
        assert_eq!(s.matches('(').count(), s.matches(')').count(), "{s}");
        let e = env(raw);
        assert!(e.starts_with('(') && e.ends_with(')'), "{e}");
    }
}

#[test]
fn strings_that_cannot_be_quoted_become_literals() {
    let mut out = Vec::new();
    string(&mut out, "naïve".as_bytes());
    assert_eq!(out, b"{6}\r\nna\xc3\xafve");
    out.clear();
    string(&mut out, br#"a "b" \c"#);
    assert_eq!(out, br#""a \"b\" \\c""#);
    out.clear();
    nstring(&mut out, None);
    assert_eq!(out, b"NIL");
}
