//! DSN composition checked by parsing the reports with mail-parser.

use super::wire::find;
use super::*;
use mail_parser::{Message, MessageParser, MimeHeaders};
use tern_smtp_proto::enhanced::status_for_reply;

const BOUNDARY: &str = "tern-dsn-q1/0123456789abcdef";
const ORIGINAL: &[u8] = b"From: Alice <alice@example.test>\n\
    To: bob@remote.test, carol@slow.test\n\
    Subject: Hello\n\
    Message-ID: <m1@example.test>\n\
    \n\
    Hello Bob,\n\
    see you on Monday.\n";
const NOW: i64 = 1_672_653_600; // Mon, 02 Jan 2023 10:00:00 +0000

fn failed() -> RecipientReport {
    RecipientReport {
        address: "bob@remote.test".into(),
        original_recipient: Some("rfc822;Bob+2Btag@remote.test".into()),
        action: Action::Failed,
        status: status_for_reply(550, Some("5.1.1")),
        remote_mta: Some("mx1.remote.test".into()),
        diagnostic: Some("smtp; 550 5.1.1 <bob@remote.test>: user unknown".into()),
        last_attempt: Some(NOW - 60),
        will_retry_until: None,
    }
}

fn delayed() -> RecipientReport {
    RecipientReport {
        address: "carol@slow.test".into(),
        original_recipient: None,
        action: Action::Delayed,
        status: status_for_reply(451, Some("4.4.1")),
        remote_mta: Some("mx.slow.test".into()),
        diagnostic: Some("smtp; 451 4.4.1 try again later".into()),
        last_attempt: Some(NOW - 30),
        will_retry_until: Some(NOW + 4 * 86_400),
    }
}

fn report(recipients: &[RecipientReport], ret: ReturnContent) -> Report<'_> {
    Report {
        reporting_mta: "mx.example.test",
        envelope_id: Some("QQ314159+2Bx"),
        arrival_date: NOW - 3600,
        sender: "alice@example.test",
        from: "MAILER-DAEMON@mx.example.test",
        message_id: "q1.dsn@mx.example.test",
        boundary: BOUNDARY,
        now: NOW,
        recipients,
        return_content: ret,
    }
}

fn parse(bytes: &[u8]) -> Message<'_> {
    let msg = MessageParser::default().parse(bytes);
    msg.unwrap_or_else(|| panic!("unparseable:\n{}", String::from_utf8_lossy(bytes)))
}

/// "type/subtype" of the report and each of its parts.
fn content_types(msg: &Message<'_>) -> Vec<String> {
    msg.parts
        .iter()
        .map(|p| {
            let ct = p.content_type().expect("every part has a Content-Type");
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
        })
        .collect()
}

/// The delivery-status part's field blocks, unfolded: per-message fields first.
fn status_blocks(msg: &Message<'_>) -> Vec<Vec<(String, String)>> {
    let text = std::str::from_utf8(msg.parts[2].contents()).expect("7-bit");
    assert!(text.is_ascii(), "delivery-status must be 7-bit: {text}");
    let unfolded = text.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            block
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once(':').expect("a field");
                    (k.to_string(), v.trim().to_string())
                })
                .collect()
        })
        .collect()
}

fn field<'b>(block: &'b [(String, String)], name: &str) -> Option<&'b str> {
    block
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The octets of the body between `--boundary` lines: [preamble, part1, part2, ...].
fn raw_parts(dsn: &[u8]) -> (String, Vec<Vec<u8>>) {
    let head_end = dsn
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&dsn[..head_end]).replace("\r\n\t", " ");
    let b = head
        .split("boundary=\"")
        .nth(1)
        .expect("boundary")
        .split('"')
        .next();
    let boundary = b.expect("quoted").to_string();
    let delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    let mut rest = &dsn[head_end + 2..];
    while let Some(at) = rest
        .windows(delimiter.len())
        .position(|w| w == delimiter.as_bytes())
    {
        parts.push(rest[..at].to_vec());
        rest = &rest[at + delimiter.len()..];
    }
    assert_eq!(rest, b"--\r\n", "the report ends with the close delimiter");
    (boundary, parts)
}

/// CRLF everywhere, no bare CR or LF, no line over 998 octets.
fn assert_wire_form(dsn: &[u8]) {
    for (i, &b) in dsn.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && dsn[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(dsn.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    assert!(dsn.ends_with(b"\r\n"));
    for line in dsn.split(|&b| b == b'\n') {
        assert!(line.len() <= MAX_LINE + 1, "line of {} octets", line.len());
    }
    assert!(!dsn.contains(&0), "NUL in the report");
}

#[test]
fn structure_headers_and_content_types() {
    let recipients = [failed(), delayed()];
    let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
    assert_wire_form(&dsn);
    let msg = parse(&dsn);

    let ct = msg.content_type().expect("Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(ct.attribute("boundary"), Some(BOUNDARY));
    assert_eq!(
        content_types(&msg),
        [
            "multipart/report",
            "text/plain",
            "message/delivery-status",
            "message/rfc822"
        ]
    );
    assert_eq!(msg.parts[0].sub_parts().map(<[_]>::len), Some(3));
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address());
    assert_eq!(to, Some("alice@example.test"));
    let from = msg.from().and_then(|a| a.first());
    assert_eq!(from.and_then(|a| a.name()), Some("Mail Delivery System"));
    assert_eq!(
        from.and_then(|a| a.address()),
        Some("MAILER-DAEMON@mx.example.test")
    );
    assert_eq!(msg.message_id(), Some("q1.dsn@mx.example.test"));
    assert_eq!(msg.date().map(|d| d.to_timestamp()), Some(NOW));
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
    let text = std::str::from_utf8(&dsn).expect("utf-8");
    assert!(text.contains("Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"));
    assert!(!text.contains("Content-Transfer-Encoding"), "all 7-bit");

    // The human part names each recipient with its reason.
    let human = msg.parts[1].text_contents().expect("text");
    assert!(human.contains("This is the mail system at mx.example.test."));
    assert!(human.contains("<bob@remote.test>: delivery failed"));
    assert!(human.contains("550 5.1.1 <bob@remote.test>: user unknown"));
    assert!(human.contains("<carol@slow.test>: delivery delayed"));
    assert!(human.contains("Will keep trying until: Fri, 06 Jan 2023 10:00:00 +0000"));
    assert!(human.contains("A copy of your message is attached."));

    // The returned message is the original, in CRLF form.
    let returned = msg.parts[3].message().expect("message/rfc822");
    assert_eq!(returned.subject(), Some("Hello"));
    assert_eq!(returned.message_id(), Some("m1@example.test"));
    assert_eq!(
        msg.parts[3].contents(),
        lines::canonical(ORIGINAL).as_slice()
    );
}

#[test]
fn per_message_and_per_recipient_fields() {
    let recipients = [failed(), delayed()];
    let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
    let msg = parse(&dsn);
    let blocks = status_blocks(&msg);
    assert_eq!(blocks.len(), 3, "{blocks:?}");

    assert_eq!(
        blocks[0],
        [
            ("Reporting-MTA".into(), "dns; mx.example.test".into()),
            ("Original-Envelope-Id".into(), "QQ314159+x".into()),
            (
                "Arrival-Date".into(),
                "Mon, 02 Jan 2023 09:00:00 +0000".into()
            ),
        ]
    );
    let bob = &blocks[1];
    assert_eq!(
        field(bob, "Original-Recipient"),
        Some("rfc822; Bob+tag@remote.test")
    );
    assert_eq!(
        field(bob, "Final-Recipient"),
        Some("rfc822; bob@remote.test")
    );
    assert_eq!(field(bob, "Action"), Some("failed"));
    assert_eq!(field(bob, "Status"), Some("5.1.1"));
    assert_eq!(field(bob, "Remote-MTA"), Some("dns; mx1.remote.test"));
    assert_eq!(
        field(bob, "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 <bob@remote.test>: user unknown")
    );
    assert_eq!(
        field(bob, "Last-Attempt-Date"),
        Some("Mon, 02 Jan 2023 09:59:00 +0000")
    );
    assert_eq!(field(bob, "Will-Retry-Until"), None);
    // RFC 3464 §2.3: Original-Recipient, if present, comes first.
    assert_eq!(bob[0].0, "Original-Recipient");

    let carol = &blocks[2];
    assert_eq!(field(carol, "Original-Recipient"), None);
    assert_eq!(
        field(carol, "Final-Recipient"),
        Some("rfc822; carol@slow.test")
    );
    assert_eq!(field(carol, "Action"), Some("delayed"));
    assert_eq!(field(carol, "Status"), Some("4.4.1"));
    assert_eq!(field(carol, "Remote-MTA"), Some("dns; mx.slow.test"));
    assert_eq!(
        field(carol, "Diagnostic-Code"),
        Some("smtp; 451 4.4.1 try again later")
    );
    assert_eq!(
        field(carol, "Will-Retry-Until"),
        Some("Fri, 06 Jan 2023 10:00:00 +0000")
    );
}

#[test]
fn headers_only_returns_text_rfc822_headers_without_the_body() {
    let recipients = [failed()];
    let dsn = build(&report(&recipients, ReturnContent::HeadersOnly), ORIGINAL);
    assert_wire_form(&dsn);
    let msg = parse(&dsn);
    assert_eq!(
        content_types(&msg),
        [
            "multipart/report",
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let headers = msg.parts[3].text_contents().expect("text");
    assert!(headers.starts_with("From: Alice <alice@example.test>\r\n"));
    assert!(headers.contains("Subject: Hello\r\n"));
    assert!(!headers.contains("Hello Bob"), "{headers}");
    let human = msg.parts[1].text_contents().expect("text");
    assert!(human.contains("The headers of your message are attached."));
}

#[test]
fn an_original_without_a_body_separator_returns_headers() {
    let recipients = [failed()];
    let original = b"Subject: no body\nFrom: alice@example.test";
    let dsn = build(&report(&recipients, ReturnContent::Full), original);
    let msg = parse(&dsn);
    assert_eq!(content_types(&msg)[3], "text/rfc822-headers");
    let headers = msg.parts[3].text_contents().expect("text");
    assert!(headers.contains("Subject: no body\r\nFrom: alice@example.test"));

    // An empty original: nothing to return, no third part.
    let dsn = build(&report(&recipients, ReturnContent::Full), b"");
    assert_eq!(content_types(&parse(&dsn)).len(), 3);
}

#[test]
fn delay_warnings_return_only_the_headers() {
    let recipients = [delayed()];
    let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
    let msg = parse(&dsn);
    assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
    assert_eq!(content_types(&msg)[3], "text/rfc822-headers");
    let blocks = status_blocks(&msg);
    assert_eq!(field(&blocks[1], "Action"), Some("delayed"));
    assert!(field(&blocks[1], "Will-Retry-Until").is_some());

    let delivered = RecipientReport {
        action: Action::Delivered,
        status: "2.0.0".into(),
        will_retry_until: Some(NOW),
        ..failed()
    };
    let recipients = [delivered];
    let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
    let msg = parse(&dsn);
    assert_eq!(msg.subject(), Some("Successful Mail Delivery Report"));
    let blocks = status_blocks(&msg);
    assert_eq!(field(&blocks[1], "Action"), Some("delivered"));
    assert_eq!(field(&blocks[1], "Will-Retry-Until"), None);
}

#[test]
fn a_large_original_is_cut_at_a_line_boundary() {
    let mut original = ORIGINAL.to_vec();
    let mut n = 0;
    while original.len() < 1 << 20 {
        original.extend_from_slice(format!("line {n:07} of the long body text\n").as_bytes());
        n += 1;
    }
    let recipients = [failed()];
    let dsn = build(&report(&recipients, ReturnContent::Full), &original);
    assert_wire_form(&dsn);
    assert!(
        dsn.len() < MAX_RETURNED_BODY + 8 * 1024,
        "{} octets",
        dsn.len()
    );
    let msg = parse(&dsn);
    assert_eq!(content_types(&msg)[3], "message/rfc822");
    assert_eq!(
        msg.parts[3].message().and_then(|m| m.subject()),
        Some("Hello")
    );

    let (_, parts) = raw_parts(&dsn);
    let part3 = &parts[3];
    let content_start = part3
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("part header");
    let returned = &part3[content_start + 4..];
    let body_start = returned
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("sep")
        + 4;
    let body = &returned[body_start..];
    let canonical = lines::canonical(&original);
    let (_, full_body) = tern_mail::header::split(&canonical);
    let full_body = full_body.expect("a body");
    assert!(body.len() <= MAX_RETURNED_BODY, "{}", body.len());
    assert!(body.ends_with(b"\r\n"));
    assert!(
        full_body.starts_with(body),
        "the body's first part, unchanged"
    );
    // Cut at the last whole line that fits: the next one would not have.
    let next_line = full_body[body.len()..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("more lines")
        + 2;
    assert!(body.len() + next_line > MAX_RETURNED_BODY);
    let human = msg.parts[1]
        .text_contents()
        .expect("text")
        .replace("\r\n", " ");
    assert!(
        human.contains("only the first part of its body (up to 64 KiB)"),
        "{human}"
    );
}

#[test]
fn a_huge_header_block_is_capped_at_a_field_boundary() {
    // 100 KiB of header fields: cut to the limit, the body still follows. 300 KiB: the
    // separator lies beyond what is read, so only the (capped) header block comes back.
    for (size, expected) in [(100, "message/rfc822"), (300, "text/rfc822-headers")] {
        let mut original = Vec::new();
        let mut n = 0;
        while original.len() < size * 1024 {
            let field = format!("X-Filler-{n}: some value\n\tfolded\n");
            original.extend_from_slice(field.as_bytes());
            n += 1;
        }
        original.extend_from_slice(b"Subject: last\n\nbody\n");
        let recipients = [failed()];
        let dsn = build(&report(&recipients, ReturnContent::Full), &original);
        assert_wire_form(&dsn);
        let msg = parse(&dsn);
        assert_eq!(content_types(&msg)[3], expected);
        let (_, parts) = raw_parts(&dsn);
        let part3 = &parts[3];
        let start = part3
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header")
            + 4;
        let returned = &part3[start..];
        let headers = match returned.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => {
                assert_eq!(&returned[at + 4..], b"body\r\n");
                &returned[..at + 2]
            }
            None => returned,
        };
        assert!(headers.len() <= MAX_RETURNED_HEADERS, "{}", headers.len());
        assert!(
            headers.ends_with(b"\tfolded\r\n"),
            "cut at a field boundary"
        );
        assert!(lines::canonical(&original).starts_with(headers));
    }
}

#[test]
fn a_hostile_diagnostic_cannot_add_headers_or_parts() {
    let evil = format!(
        "smtp; 550 5.1.1 nope\r\n--{BOUNDARY}\r\nX-Evil: 1\r\n\r\nevil\0 body\x1b[31m\u{202e}"
    );
    let recipients = [RecipientReport {
        diagnostic: Some(evil),
        remote_mta: Some(format!("mx.remote.test\r\nX-Evil: 2\r\n--{BOUNDARY}")),
        address: "bob@remote.test\r\nX-Evil: 3".to_string(),
        original_recipient: Some(format!("rfc822;x+0D+0AX-Evil:+204+0D+0A--{BOUNDARY}")),
        ..failed()
    }];
    let mut r = report(&recipients, ReturnContent::Full);
    let envid = format!("id+0D+0AX-Evil:+205+0A--{BOUNDARY}");
    r.envelope_id = Some(&envid);
    let dsn = build(&r, ORIGINAL);
    assert_wire_form(&dsn);
    let msg = parse(&dsn);
    assert_eq!(
        content_types(&msg),
        [
            "multipart/report",
            "text/plain",
            "message/delivery-status",
            "message/rfc822"
        ]
    );
    for part in &msg.parts {
        assert!(part
            .headers()
            .iter()
            .all(|h| !h.name().eq_ignore_ascii_case("X-Evil")));
    }
    // The caller's boundary now occurs in the content (mid-line): a fresh one is used.
    let (boundary, parts) = raw_parts(&dsn);
    assert_eq!(boundary, format!("{BOUNDARY}=_0"));
    assert_eq!(parts.len(), 4);
    let delimiter = format!("--{boundary}");
    let starts: Vec<_> = dsn
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"X-Evil") || l.starts_with(delimiter.as_bytes()))
        .collect();
    assert_eq!(starts.len(), 4, "three delimiters and the close delimiter");
    let original = format!("--{BOUNDARY}");
    let lines = dsn.split(|&b| b == b'\n');
    assert_eq!(
        lines.filter(|l| l.starts_with(original.as_bytes())).count(),
        4
    );

    let blocks = status_blocks(&msg);
    let diag = field(&blocks[1], "Diagnostic-Code").expect("diagnostic");
    assert_eq!(
        diag,
        format!("smtp; 550 5.1.1 nope --{BOUNDARY} X-Evil: 1 evil body[31m")
    );
    assert_eq!(
        field(&blocks[1], "Final-Recipient"),
        Some("rfc822; bob@remote.testX-Evil:3")
    );
    let human = msg.parts[1].text_contents().expect("text");
    assert!(!human.contains('\u{1b}') && !human.contains('\u{202e}'));
}

#[test]
fn a_boundary_found_in_the_original_is_replaced() {
    let mut original = ORIGINAL.to_vec();
    original.extend_from_slice(format!("--{BOUNDARY}\n--{BOUNDARY}=_0--\nend\n").as_bytes());
    let recipients = [failed()];
    let dsn = build(&report(&recipients, ReturnContent::Full), &original);
    let msg = parse(&dsn);
    let (boundary, parts) = raw_parts(&dsn);
    assert_eq!(boundary, format!("{BOUNDARY}=_1"));
    assert_eq!(parts.len(), 4);
    assert_eq!(content_types(&msg).len(), 4);
    assert_eq!(
        msg.parts[3].contents(),
        lines::canonical(&original).as_slice()
    );
}

#[test]
fn bad_boundaries_are_repaired() {
    let recipients = [failed()];
    let mut r = report(&recipients, ReturnContent::Full);
    r.boundary = "\"a b\"\r\nc;";
    let msg_bytes = build(&r, ORIGINAL);
    assert_eq!(raw_parts(&msg_bytes).0, "abc");
    r.boundary = "";
    let msg_bytes = build(&r, ORIGINAL);
    assert_eq!(raw_parts(&msg_bytes).0, "tern-dsn");
    assert_eq!(content_types(&parse(&msg_bytes)).len(), 4);
}

#[test]
fn bare_lf_long_lines_and_8bit_originals_are_made_transmissible() {
    let long_header = format!("X-Long: {}\n", "word ".repeat(1000));
    let unbroken = format!("X-Unbroken: {}\n", "x".repeat(3000));
    let long_body = format!("{}\n", "é".repeat(2000));
    let original =
        format!("Subject: Grüße\n{long_header}{unbroken}\nfirst\r\n{long_body}last\0line\n");
    let recipients = [failed()];
    let dsn = build(
        &report(&recipients, ReturnContent::Full),
        original.as_bytes(),
    );
    assert_wire_form(&dsn);
    let msg = parse(&dsn);
    assert_eq!(
        msg.header_raw("Content-Transfer-Encoding").map(str::trim),
        Some("8bit")
    );
    assert_eq!(msg.parts[3].content_transfer_encoding(), Some("8bit"));
    assert_eq!(msg.parts[1].content_transfer_encoding(), None, "ASCII text");
    let returned = msg.parts[3].contents();
    let returned = std::str::from_utf8(returned).expect("no UTF-8 sequence split");
    let nested = msg.parts[3].message().expect("message/rfc822");
    assert_eq!(nested.subject(), Some("Grüße"));
    // Folding at whitespace leaves the field's value as it was.
    let long = nested.header_raw("X-Long").expect("X-Long");
    assert_eq!(long.replace("\r\n", "").trim(), "word ".repeat(1000).trim());
    assert!(nested.header_raw("X-Unbroken").is_some());
    assert!(returned.contains("\r\nfirst\r\n"));
    assert!(returned.contains("lastline\r\n"));
    assert_eq!(
        returned.matches('é').count(),
        2000,
        "the long body line is broken, not shortened"
    );
}

#[test]
fn internationalised_addresses_keep_the_status_part_7bit() {
    let recipients = [RecipientReport {
        address: "jörg@bücher.test".into(),
        diagnostic: Some("smtp; 550 5.1.1 jörg: unknown".into()),
        ..failed()
    }];
    let dsn = build(&report(&recipients, ReturnContent::HeadersOnly), ORIGINAL);
    assert_wire_form(&dsn);
    let msg = parse(&dsn);
    let blocks = status_blocks(&msg);
    assert_eq!(
        field(&blocks[1], "Final-Recipient"),
        Some("utf-8; j\\x{F6}rg@b\\x{FC}cher.test")
    );
    assert_eq!(
        field(&blocks[1], "Diagnostic-Code"),
        Some("smtp; 550 5.1.1 j\\x{F6}rg: unknown")
    );
    let human = msg.parts[1].text_contents().expect("text");
    assert!(human.contains("<jörg@bücher.test>: delivery failed"));
    assert_eq!(msg.parts[1].content_transfer_encoding(), Some("8bit"));
}

#[test]
fn long_values_are_folded_and_capped() {
    let recipients = [RecipientReport {
        diagnostic: Some(format!("smtp; 550 {}", "too many words ".repeat(2000))),
        remote_mta: Some("h".repeat(5000)),
        ..failed()
    }];
    let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
    assert_wire_form(&dsn);
    for line in dsn.split(|&b| b == b'\n') {
        if line.starts_with(b"Diagnostic-Code") || line.starts_with(b" too") {
            assert!(
                line.len() <= SOFT_LINE + 2,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
    let msg = parse(&dsn);
    let blocks = status_blocks(&msg);
    let diag = field(&blocks[1], "Diagnostic-Code").expect("diagnostic");
    assert!(
        diag.len() <= MAX_VALUE + 16 && diag.ends_with(" ..."),
        "{}",
        diag.len()
    );
    assert_eq!(content_types(&msg).len(), 4);
}

#[test]
fn diagnostics_without_a_type_get_one() {
    assert_eq!(
        diagnostic("550 5.1.1 no; such user", true),
        Some(("smtp".into(), "550 5.1.1 no; such user".into()))
    );
    assert_eq!(
        diagnostic("connection refused", true),
        Some(("X-Tern".into(), "connection refused".into()))
    );
    assert_eq!(
        diagnostic("X-Tern; queue lifetime expired", true),
        Some(("X-Tern".into(), "queue lifetime expired".into()))
    );
    assert_eq!(diagnostic("smtp;  \r\n", true), None);
}

#[test]
fn invalid_statuses_fall_back_to_the_actions_class() {
    let recipients = [
        RecipientReport {
            status: "bogus".into(),
            ..failed()
        },
        RecipientReport {
            status: "4.4".into(),
            ..delayed()
        },
    ];
    let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
    let blocks = status_blocks(&parse(&dsn));
    assert_eq!(field(&blocks[1], "Status"), Some("5.0.0"));
    assert_eq!(field(&blocks[2], "Status"), Some("4.0.0"));
}

#[test]
fn original_recipients_are_decoded_from_xtext() {
    assert_eq!(
        original_recipient("rfc822;bob+40x@y"),
        Some("rfc822; bob@x@y".into())
    );
    assert_eq!(original_recipient("no-type"), None);
    assert_eq!(original_recipient("bad type;x@y"), None);
    assert_eq!(original_recipient("rfc822;"), None);
}

/// Random octets, biased towards what breaks MIME: line ends, NULs, dashes, the boundary,
/// non-ASCII and very long lines.
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    let pieces: [&[u8]; 10] = [
        b"\r",
        b"\n",
        b"\r\n\r\n",
        b"\0",
        b"--",
        BOUNDARY.as_bytes(),
        "é€\u{202e}".as_bytes(),
        b": ",
        b"\t ",
        b"\xff\xfe",
    ];
    let mut out = Vec::new();
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        match *seed % 16 {
            0..=9 => out.extend_from_slice(pieces[(*seed >> 8) as usize % pieces.len()]),
            10 => out.extend(std::iter::repeat_n(b'x', (*seed >> 8) as usize % 3000)),
            _ => out.push(b'a' + (*seed >> 8) as u8 % 26),
        }
    }
    out
}

#[test]
fn random_inputs_keep_the_report_well_formed() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..200 {
        let text = |seed: &mut u64, len| String::from_utf8_lossy(&noise(seed, len)).into_owned();
        let recipients = [
            RecipientReport {
                address: text(&mut seed, 40),
                original_recipient: Some(text(&mut seed, 40)),
                status: text(&mut seed, 6),
                remote_mta: Some(text(&mut seed, 30)),
                diagnostic: Some(text(&mut seed, 300)),
                ..failed()
            },
            RecipientReport {
                diagnostic: Some(text(&mut seed, 5000)),
                ..delayed()
            },
        ];
        let (envid, boundary, sender) = (
            text(&mut seed, 20),
            text(&mut seed, 80),
            text(&mut seed, 30),
        );
        let mut r = report(&recipients, ReturnContent::Full);
        r.envelope_id = Some(&envid);
        r.sender = &sender;
        if round % 2 == 0 {
            r.boundary = &boundary;
        }
        let mut original = ORIGINAL.to_vec();
        original.extend_from_slice(&noise(&mut seed, 20_000));
        if round % 3 == 0 {
            original = noise(&mut seed, 20_000);
        }
        let dsn = build(&r, &original);
        assert_wire_form(&dsn);
        let msg = parse(&dsn);
        let (boundary, parts) = raw_parts(&dsn);
        let types = content_types(&msg);
        assert_eq!(types.len(), parts.len(), "round {round}: {types:?}");
        assert!(boundary.len() <= 70);
        assert!(!parts.iter().any(|p| find(p, boundary.as_bytes()).is_some()));
        let blocks = status_blocks(&msg);
        assert_eq!(blocks.len(), 3, "round {round}");
        assert_eq!(field(&blocks[1], "Action"), Some("failed"));
        assert_eq!(field(&blocks[2], "Action"), Some("delayed"));
        assert!(enhanced::is_valid(
            field(&blocks[1], "Status").expect("status")
        ));
    }
}

/// Writes sample reports for `tests/clients/parse_dsn.py` into the temporary directory
/// when `TERN_DSN_SAMPLE` is set:
/// `TERN_DSN_SAMPLE=1 cargo test -p tern-queue --lib dsn::tests::sample -- --nocapture`,
/// then `python3 tests/clients/parse_dsn.py /tmp/tern-dsn-sample.eml` (and `-hdrs`,
/// `-hostile`).
#[test]
fn sample() {
    if std::env::var_os("TERN_DSN_SAMPLE").is_none() {
        return;
    }
    let write = |name: &str, dsn: &[u8]| {
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, dsn).expect("write the sample");
        eprintln!("wrote {}", path.display());
    };
    let recipients = [failed(), delayed()];
    let mut original = ORIGINAL.to_vec();
    original.extend_from_slice("Grüße, Alice\n".as_bytes());
    write(
        "tern-dsn-sample.eml",
        &build(&report(&recipients, ReturnContent::Full), &original),
    );
    write(
        "tern-dsn-sample-hdrs.eml",
        &build(&report(&recipients, ReturnContent::HeadersOnly), &original),
    );

    // A hostile diagnostic and address, the caller's boundary inside the original, and a
    // 1 MB body with bare LFs.
    let recipients = [
        RecipientReport {
            diagnostic: Some(format!(
                "smtp; 550 5.1.1 nope\r\n--{BOUNDARY}\r\nX-Evil: 1\r\n\r\nevil\0 body"
            )),
            address: "bob@remote.test\r\nX-Evil: 3".to_string(),
            ..failed()
        },
        delayed(),
    ];
    let mut original = ORIGINAL.to_vec();
    original.extend_from_slice(format!("--{BOUNDARY}\nX-Evil: 4\n\n").as_bytes());
    while original.len() < 1 << 20 {
        original.extend_from_slice(b"a line of the long body, ending in a bare LF\n");
    }
    write(
        "tern-dsn-sample-hostile.eml",
        &build(&report(&recipients, ReturnContent::Full), &original),
    );
}
