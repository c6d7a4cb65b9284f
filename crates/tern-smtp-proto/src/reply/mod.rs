//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034): one
//! [`Reply`] type that the server writes ([`Reply::write_to`]) and the client parses from a
//! remote server's bytes ([`parse`], bounded and incremental).
//!
//! A reply's `lines` hold the text after the code and after the enhanced code, so that
//! writing a parsed reply gives the same reply back, and logs show the enhanced code once.

mod parse;

use std::fmt;

pub use parse::{parse, ReplyError, MAX_LINE, MAX_LINES};

/// Longest [`Reply`] `Display` form, in characters, so that a server's essay does not end up
/// whole in every log line and DSN diagnostic.
pub const MAX_DISPLAY: usize = 512;

/// One reply: a code, an enhanced status code (absent on the greeting and on replies to
/// HELO/EHLO, as RFC 2034 §3 says) and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// `class.subject.detail`, if the reply carries one. A parsed reply has one when its
    /// first line's text starts with a valid code of the reply code's class (RFC 2034 §4),
    /// for DSN `Status:` fields.
    pub enhanced: Option<String>,
    /// Text lines (at least one), without the enhanced code. Parsed text is lossy UTF-8 with
    /// control characters removed (a code-only line gives "").
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced.to_string()),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced code (greeting, HELO/EHLO).
    pub fn plain(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines,
        }
    }

    /// Whether the reply refuses (4xx or 5xx).
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// 2yz: the command was accepted, so the caller can go on (or the message was delivered).
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3yz: the server waits for more (354 after DATA), so the caller must send it.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4yz: a temporary failure, so the caller retries later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5yz: a permanent failure, so the caller bounces instead of retrying.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The reply on the wire: `code-text` for all lines but the last, `code text` for the
    /// last, each with the enhanced code after the reply code.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(sep as u8);
            if let Some(e) = &self.enhanced {
                out.extend_from_slice(e.as_bytes());
                out.push(b' ');
            }
            // A CR or LF inside a text would let a value echoed back (an address, say)
            // forge a reply line.
            out.extend(text.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The reply as a string, for logs and tests.
    pub fn to_wire_string(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The text of every line, joined with spaces; what `Display` shows after the codes.
    fn text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(t);
            if out.len() > MAX_DISPLAY * 4 {
                break;
            }
        }
        out
    }
}

/// One line, "550 5.1.1 user unknown": multi-line replies joined with spaces and the whole
/// bounded to [`MAX_DISPLAY`] characters, for logs and DSN `Diagnostic-Code` fields.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.code.to_string();
        if let Some(enh) = &self.enhanced {
            s.push(' ');
            s.push_str(enh);
        }
        let text = self.text();
        if !text.is_empty() {
            s.push(' ');
            s.push_str(&text);
        }
        if s.chars().count() > MAX_DISPLAY {
            s = s.chars().take(MAX_DISPLAY - 3).collect();
            s.push_str("...");
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(
            Reply::new(250, "2.1.0", "Sender OK").to_wire_string(),
            "250 2.1.0 Sender OK\r\n"
        );
        assert_eq!(
            Reply::plain(
                250,
                vec!["mx.test".into(), "PIPELINING".into(), "SIZE 10".into()]
            )
            .to_wire_string(),
            "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        assert_eq!(
            Reply::new(550, "5.1.1", "no\r\n250 forged").to_wire_string(),
            "550 5.1.1 no250 forged\r\n"
        );
    }

    #[test]
    fn written_replies_parse_back_to_themselves() {
        for reply in [
            Reply::new(250, "2.1.0", "Sender OK"),
            Reply::plain(250, vec!["mx.test".into(), "PIPELINING".into()]),
            Reply {
                code: 214,
                enhanced: Some("2.0.0".into()),
                lines: vec!["Commands: HELO".into(), "See RFC 5321".into()],
            },
        ] {
            let wire = reply.to_wire_string();
            let (parsed, used) = parse(wire.as_bytes()).unwrap().unwrap();
            assert_eq!(used, wire.len());
            assert_eq!(parsed, reply);
        }
    }
}
