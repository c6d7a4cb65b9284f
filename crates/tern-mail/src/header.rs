//! Reading one field of a message's header section without parsing the whole message.
//!
//! The queue records a message's Message-ID (for `ternctl trace` and the logs) from the
//! bytes it is given; a full MIME parse of a 25 MiB message for one field would be waste, and
//! the bytes are untrusted, so the scan is bounded: it stops at the end of the header
//! section or after [`MAX_HEADER_SCAN`] octets, and returns at most [`MAX_FIELD`] octets.

/// Most octets of a message examined for a header field.
pub const MAX_HEADER_SCAN: usize = 256 * 1024;
/// Longest field value returned (RFC 5322's line limit).
pub const MAX_FIELD: usize = 998;

/// Length of the header section of `message`, through the empty line that ends it, if that
/// line is in `message`. A message that starts with an empty line has an empty header
/// section (length 2 with CRLF). Lines may end in CRLF or a bare LF, so the same rule serves
/// canonical store copies and raw client input.
///
/// This is the one definition of "where the header ends" in Tern: SMTP's header additions,
/// IMAP's HEADER/TEXT sections, POP3's TOP and the DSN's returned headers all use it, so they
/// can never disagree about which bytes are header.
pub fn section_end(message: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' {
            let line = &message[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// The header section of `message` with the empty line that ends it, or all of `message`
/// when it has no empty line (then it is all header): what IMAP's `BODY[HEADER]` sends.
pub fn section(message: &[u8]) -> &[u8] {
    match section_end(message) {
        Some(end) => &message[..end],
        None => message,
    }
}

/// Splits `message` into its header section (without the empty line that ends it) and its
/// body. Without an empty line it is all header and has no body.
pub fn split(message: &[u8]) -> (&[u8], Option<&[u8]>) {
    match section_end(message) {
        Some(end) => {
            let blank = if message[..end].ends_with(b"\r\n") {
                2
            } else {
                1
            };
            (&message[..end - blank], Some(&message[end..]))
        }
        None => (message, None),
    }
}

/// The unfolded, trimmed value of the first header field named `name` (case-insensitive),
/// if the header section has one with a non-empty value. Lines may end in CRLF or LF.
pub fn first_field(message: &[u8], name: &str) -> Option<String> {
    let head = &message[..message.len().min(MAX_HEADER_SCAN)];
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // end of the header section
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        let mut value = line[colon + 1..].to_vec();
        // Continuation lines start with white space (RFC 5322 §2.2.3).
        while let Some(next) = lines.peek() {
            if !matches!(next.first(), Some(b' ' | b'\t')) {
                break;
            }
            let next = next.strip_suffix(b"\r").unwrap_or(next);
            value.push(b' ');
            value.extend_from_slice(next.trim_ascii());
            lines.next();
        }
        let value = String::from_utf8_lossy(value.trim_ascii());
        let value: String = value.chars().filter(|c| !c.is_control()).collect();
        if value.is_empty() {
            return None;
        }
        let mut end = value.len().min(MAX_FIELD);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        return Some(value[..end].to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_the_header_with_its_empty_line_or_everything() {
        assert_eq!(section(b"A: 1\r\n\r\nbody"), b"A: 1\r\n\r\n");
        assert_eq!(section(b"A: 1\r\nB: 2\r\n"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(section(b"\r\nbody"), b"\r\n");
    }

    #[test]
    fn the_header_section_ends_at_the_first_empty_line() {
        assert_eq!(section_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(section_end(b"\r\nbody"), Some(2));
        assert_eq!(section_end(b"A: b\nC: d\n\nbody\n\n"), Some(11));
        assert_eq!(section_end(b"A: b\r\nC: d\r\n"), None);
        assert_eq!(section_end(b""), None);
        assert_eq!(
            split(b"A: b\r\n\r\nbody"),
            (&b"A: b\r\n"[..], Some(&b"body"[..]))
        );
        assert_eq!(split(b"\r\nbody"), (&b""[..], Some(&b"body"[..])));
        assert_eq!(split(b"A: b\r\n"), (&b"A: b\r\n"[..], None));
        assert_eq!(split(b"A: b\n\nx"), (&b"A: b\n"[..], Some(&b"x"[..])));
    }

    #[test]
    fn finds_folded_fields_case_insensitively_in_the_header_only() {
        let m =
            b"Received: x\r\nmessage-id:\r\n <a@b>\r\nSubject: s\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(first_field(m, "Message-ID").as_deref(), Some("<a@b>"));
        assert_eq!(
            first_field(b"Subject: s\n\nMessage-ID: <x>\n", "Message-ID"),
            None
        );
        assert_eq!(first_field(b"Message-ID:   \r\n\r\n", "Message-ID"), None);
        assert_eq!(first_field(b"", "Message-ID"), None);
        assert_eq!(
            first_field(b"Message-ID : <sp@x>\n\n", "message-id").as_deref(),
            Some("<sp@x>")
        );
        let long = format!("Message-ID: <{}>\r\n\r\n", "x".repeat(5000));
        assert_eq!(
            first_field(long.as_bytes(), "Message-ID").map(|v| v.len()),
            Some(MAX_FIELD)
        );
        assert_eq!(
            first_field(b"Message-ID: <a\x01b@x>\n\n", "Message-ID").as_deref(),
            Some("<ab@x>")
        );
    }
}
