//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034), formatted
//! for the wire.

/// One reply: a code, an enhanced status code (absent on the greeting and on replies to
/// HELO/EHLO, as RFC 2034 §3 says) and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// `class.subject.detail`, if the reply carries one.
    pub enhanced: Option<String>,
    /// Text lines (at least one).
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
}
