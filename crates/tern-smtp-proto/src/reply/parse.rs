//! Replies parsed incrementally from the bytes a server sent (the client side).
//!
//! [`parse`] is a pure function over a buffer so that it can be unit-tested and fuzzed without
//! sockets (`fuzz/`, target `smtp_reply`). The client keeps unparsed input in one buffer and
//! calls [`parse`] after every read: `Ok(None)` means "read more", `Ok(Some((reply, n)))`
//! hands back one complete reply and how many octets it used (with PIPELINING several replies
//! may sit in the buffer at once).
//!
//! **Bounds.** A server is not trusted to be well-behaved: a line longer than [`MAX_LINE`]
//! octets or a reply of more than [`MAX_LINES`] lines is an error as soon as it can be seen,
//! so a hostile or broken peer cannot make the client buffer without limit (RFC 5321
//! §4.5.3.1.5 asks for 512-octet reply lines; we allow four times that for real-world servers
//! that send long explanations). Malformed lines are refused as soon as their first octets
//! are wrong, without waiting for the line end.
//!
//! **Leniency.** Bare LF line ends are accepted (some servers and proxies send them), a code
//! without text ("250" CRLF) is accepted, and the text is decoded as lossy UTF-8 with control
//! characters removed so that it can be logged and copied into DSNs safely.

use super::Reply;
use crate::enhanced;

/// Longest reply line accepted, in octets including the line end; see the module docs.
pub const MAX_LINE: usize = 2048;

/// Most lines accepted in one reply; a real EHLO reply has a few dozen at most.
pub const MAX_LINES: usize = 100;

/// Why a server's reply could not be parsed; the client turns this into a protocol error and
/// drops the connection, since it can no longer tell where the next reply starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line had no line end within [`MAX_LINE`] octets.
    #[error("reply line longer than {MAX_LINE} octets")]
    LineTooLong,
    /// A reply had more than [`MAX_LINES`] lines.
    #[error("reply longer than {MAX_LINES} lines")]
    TooManyLines,
    /// A line did not start with a 2xx–5xx code followed by SP, "-" or the line end.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// A continuation line carried a code other than the first line's.
    #[error("reply code changed from {first} to {line} within one reply")]
    CodeMismatch {
        /// The code of the reply's first line.
        first: u16,
        /// The differing code of a later line.
        line: u16,
    },
}

/// Parses one reply from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only a (valid so far) prefix of a reply,
/// `Ok(Some((reply, consumed)))` when a complete reply occupies `buf[..consumed]`, and an
/// error as soon as the bytes cannot become a valid reply within the bounds.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code: Option<u16> = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let window = &rest[..rest.len().min(MAX_LINE)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            check_start(rest, code, false)?;
            if rest.len() >= MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let raw = &rest[..nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (line_code, last) = check_start(line, code, true)?;
        let text = if line.len() > 4 {
            sanitize(&line[4..])
        } else {
            String::new()
        };
        code = Some(line_code);
        lines.push(text);
        pos += nl + 1;
        if last {
            let code = line_code;
            let enhanced = lines.first().and_then(|l| enhanced_code(code, l));
            if let Some(enh) = &enhanced {
                for line in &mut lines {
                    strip_enhanced(line, enh);
                }
            }
            return Ok(Some((
                Reply {
                    code,
                    enhanced,
                    lines,
                },
                pos,
            )));
        }
        if lines.len() >= MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
    }
}

/// Checks a line without its line end, or (`complete == false`) the start of one still
/// arriving: returns the code and whether this is the reply's last line, and refuses what can
/// never become a valid line. For an incomplete line shorter than 3 octets the code is 0.
fn check_start(
    line: &[u8],
    expected: Option<u16>,
    complete: bool,
) -> Result<(u16, bool), ReplyError> {
    let malformed = || ReplyError::Malformed(snippet(line));
    if complete && line.len() < 3 {
        return Err(malformed());
    }
    for (i, &b) in line.iter().take(3).enumerate() {
        let ok = if i == 0 {
            (b'2'..=b'5').contains(&b)
        } else {
            b.is_ascii_digit()
        };
        if !ok {
            return Err(malformed());
        }
    }
    if line.len() < 3 {
        return Ok((0, true));
    }
    let code = line[..3]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if let Some(first) = expected {
        if first != code {
            return Err(ReplyError::CodeMismatch { first, line: code });
        }
    }
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        // "250\r" may still become "250\r\n".
        Some(b'\r') if !complete && line.len() == 4 => true,
        Some(_) => return Err(malformed()),
    };
    Ok((code, last))
}

/// Lossy UTF-8 with control characters removed (a tab becomes a space), so that the text can
/// go into logs and DSNs without carrying terminal escapes or line breaks.
fn sanitize(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// The first token of `text` when it is an RFC 3463 status code "class.subject.detail"
/// whose class is the reply code's first digit.
fn enhanced_code(code: u16, text: &str) -> Option<String> {
    let token = text.split(' ').next()?;
    enhanced::matches_code(token, code).then(|| token.to_owned())
}

/// Removes the enhanced code (and the spaces after it) from the start of a line that repeats
/// it, as multi-line replies do on every line.
fn strip_enhanced(line: &mut String, enh: &str) {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix(enh) {
        if rest.is_empty() || rest.starts_with(' ') {
            *line = rest.trim_start().to_owned();
        }
    }
}

/// A short, printable piece of a bad line for the error message.
fn snippet(line: &[u8]) -> String {
    let s = sanitize(&line[..line.len().min(40)]);
    if line.len() > 40 {
        format!("{s}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::MAX_DISPLAY;

    fn one(input: &[u8]) -> (Reply, usize) {
        parse(input).unwrap().unwrap()
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let (r, n) = one(b"550 5.1.1 <bob@x.test>: user unknown\r\nextra");
        assert_eq!(n, 38);
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced.as_deref(), Some("5.1.1"));
        assert_eq!(r.lines, ["<bob@x.test>: user unknown"]);
        assert!(r.is_permanent() && !r.is_transient() && !r.is_positive());
        assert_eq!(r.to_string(), "550 5.1.1 <bob@x.test>: user unknown");
    }

    #[test]
    fn multi_line_ehlo() {
        let input =
            b"250-mx.example.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";
        let (r, n) = one(input);
        assert_eq!(n, input.len());
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, None);
        assert_eq!(
            r.lines,
            [
                "mx.example.test hello",
                "PIPELINING",
                "SIZE 1000",
                "8BITMIME"
            ]
        );
        assert_eq!(
            r.to_string(),
            "250 mx.example.test hello PIPELINING SIZE 1000 8BITMIME"
        );
    }

    #[test]
    fn repeated_enhanced_codes_are_shown_once() {
        let input = b"550-5.1.1 The email account that you tried to reach does not exist.\r\n\
                      550-5.1.1 Please try double-checking.\r\n550 5.1.1 https://support.test x\r\n";
        let (r, _) = one(input);
        assert_eq!(r.enhanced.as_deref(), Some("5.1.1"));
        assert_eq!(
            r.to_string(),
            "550 5.1.1 The email account that you tried to reach does not exist. \
             Please try double-checking. https://support.test x"
        );
    }

    #[test]
    fn enhanced_code_must_match_class_and_shape() {
        assert_eq!(
            one(b"250 2.0.0 ok\r\n").0.enhanced.as_deref(),
            Some("2.0.0")
        );
        assert_eq!(
            one(b"451 4.7.1 later\r\n").0.enhanced.as_deref(),
            Some("4.7.1")
        );
        assert_eq!(one(b"550 4.2.2 full\r\n").0.enhanced, None);
        assert_eq!(one(b"250 2.0 ok\r\n").0.enhanced, None);
        assert_eq!(one(b"250 2.0.0.0 ok\r\n").0.enhanced, None);
        assert_eq!(one(b"250 2.0000.0 ok\r\n").0.enhanced, None);
        assert_eq!(one(b"250 mx.test\r\n").0.enhanced, None);
    }

    #[test]
    fn split_input_needs_more_at_every_cut() {
        let input = b"250-first\r\n250-second\r\n250 last\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(one(input).1, input.len());
    }

    #[test]
    fn pipelined_replies_come_one_at_a_time() {
        let input = b"250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n";
        let (a, n) = one(input);
        let (b, m) = one(&input[n..]);
        let (c, k) = one(&input[n + m..]);
        assert_eq!((a.code, b.code, c.code), (250, 550, 354));
        assert_eq!(n + m + k, input.len());
        assert!(c.is_intermediate());
    }

    #[test]
    fn bare_lf_and_code_only_lines() {
        let (r, n) = one(b"220-hi\n220\n");
        assert_eq!((r.code, n), (220, 11));
        assert_eq!(r.lines, ["hi", ""]);
        let (r, _) = one(b"250\r\n");
        assert_eq!(r.lines, [""]);
        assert_eq!(r.to_string(), "250");
        let (r, _) = one(b"250 \r\n");
        assert_eq!(r.lines, [""]);
    }

    #[test]
    fn control_characters_are_removed() {
        let (r, _) = one(b"550 bad\x1b[31m\tred\x00\rx\r\n");
        assert_eq!(r.lines, ["bad[31m redx"]);
        let (r, _) = one(b"550 caf\xc3\xa9 \xff\r\n");
        assert_eq!(r.lines, ["caf\u{e9} \u{fffd}"]);
    }

    #[test]
    fn garbage_is_refused_early() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"hello",
            b"2",
            b"25x",
            b"150 ok\r\n",
            b"650 ok\r\n",
            b"250_ok\r\n",
            b"250ok",
            b"\r\n",
            b"250\rx\r\n",
            b"250\r\r\n",
            b"250\r\r",
            b"25\r\n",
            b"2\n",
            b"+OK pop3\r\n",
        ] {
            if bad == b"2" {
                assert_eq!(parse(bad), Ok(None));
                continue;
            }
            assert!(
                matches!(parse(bad), Err(ReplyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn code_must_not_change() {
        assert_eq!(
            parse(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                line: 550
            })
        );
        // Seen before the second line is complete, and before a bad separator.
        assert_eq!(
            parse(b"250-a\r\n251"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                line: 251
            })
        );
        assert_eq!(
            parse(b"250-a\r\n2518\r\n"),
            Err(ReplyError::CodeMismatch {
                first: 250,
                line: 251
            })
        );
    }

    #[test]
    fn overlong_line_is_refused_without_waiting_for_its_end() {
        let mut line = b"250 ".to_vec();
        line.resize(MAX_LINE - 1, b'a');
        assert_eq!(parse(&line), Ok(None));
        line.push(b'\n');
        assert!(
            parse(&line).unwrap().is_some(),
            "exactly MAX_LINE with its LF"
        );
        line.pop();
        line.push(b'a');
        assert_eq!(parse(&line), Err(ReplyError::LineTooLong));
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line), Err(ReplyError::LineTooLong));
    }

    #[test]
    fn too_many_lines_are_refused() {
        let mut input = b"250-x\r\n".repeat(MAX_LINES - 1);
        input.extend_from_slice(b"250 end\r\n");
        assert_eq!(one(&input).0.lines.len(), MAX_LINES);
        let mut input = b"250-x\r\n".repeat(MAX_LINES);
        assert_eq!(parse(&input), Err(ReplyError::TooManyLines));
        input.extend_from_slice(b"250 end\r\n");
        assert_eq!(parse(&input), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn display_is_bounded_and_single_line() {
        let mut input = Vec::new();
        for _ in 0..50 {
            input.extend_from_slice(b"550-");
            input.extend_from_slice(&[b'x'; 1000]);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"550 end\r\n");
        let s = one(&input).0.to_string();
        assert_eq!(s.chars().count(), MAX_DISPLAY);
        assert!(s.starts_with("550 xxx") && s.ends_with("..."));
        assert!(!s.contains('\n') && !s.contains('\r'));
    }
}
