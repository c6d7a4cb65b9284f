//! Line endings and byte-stuffing: how a stored message goes on a line-oriented wire.
//!
//! A stored message may end lines with CRLF, a bare LF or a bare CR, and may lack a final
//! line ending. On the wire every line ends with CRLF (RFC 5321 §2.3.8, RFC 1939 §3, RFC 3501
//! §2.2), so the octets sent are the *canonical* form: every line ending turned into CRLF and
//! a final CRLF added when missing. The store records the size of exactly that form
//! ([`size`]) as the message's wire size, so POP3's STAT/LIST and IMAP's RFC822.SIZE announce
//! the number of octets a client then reads.

/// The canonical form: every line ending (CRLF, bare LF, bare CR) as CRLF, ending in CRLF.
pub fn canonical(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 2);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                i += if message.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `canonical(message).len()`, without building it.
pub fn size(message: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut i = 0;
    let mut last_was_eol = false;
    while i < message.len() {
        match message[i] {
            b'\r' => {
                n += 2;
                i += if message.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                last_was_eol = true;
            }
            b'\n' => {
                n += 2;
                i += 1;
                last_was_eol = true;
            }
            _ => {
                n += 1;
                i += 1;
                last_was_eol = false;
            }
        }
    }
    if n > 0 && !last_was_eol {
        n += 2;
    }
    n
}

/// Appends a multi-line response body: `canonical` byte-stuffed (a line starting with "."
/// gets another "." in front) and the terminating ".\r\n".
pub fn dot_stuff(canonical: &[u8], out: &mut Vec<u8>) {
    out.reserve(canonical.len() + 8);
    let mut at_line_start = true;
    for &b in canonical {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Writes a stored message as a multi-line response body chunk by chunk, with the same
/// bytes as [`canonical`], then (for POP3 TOP) the header and the first lines of the body
/// (`wire::top`), then [`dot_stuff`]: so a RETR of a large message needs one chunk in memory,
/// not the message three times. Feed every chunk to [`Self::push`], then call
/// [`Self::finish`].
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// The last byte was a CR whose CRLF is written: a LF right after it belongs to it.
    pending_cr: bool,
    at_line_start: bool,
    /// Octets of the current line written so far (0: an empty line so far).
    line_len: usize,
    /// For TOP: `None` sends everything; otherwise where the header ends and how many body
    /// lines are still wanted.
    top: Option<Top>,
    /// TOP has all it wants: the rest is dropped.
    done: bool,
}

#[derive(Debug, Clone, Copy)]
enum Top {
    Header { body_lines: u32 },
    Body { left: u32 },
}

impl DotStuffer {
    /// The whole message (RETR).
    pub fn whole() -> Self {
        Self::new(None)
    }

    /// The header and the first `lines` lines of the body (POP3 TOP). A message without an
    /// empty line is all header and is sent whole.
    pub fn top(lines: u32) -> Self {
        Self::new(Some(Top::Header { body_lines: lines }))
    }

    fn new(top: Option<Top>) -> Self {
        Self {
            pending_cr: false,
            at_line_start: true,
            line_len: 0,
            top,
            done: false,
        }
    }

    /// Appends the wire form of the next piece of the stored message to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 32 + 2);
        for &b in chunk {
            if self.done {
                return;
            }
            if std::mem::take(&mut self.pending_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' => {
                    self.end_line(out);
                    self.pending_cr = true;
                }
                b'\n' => self.end_line(out),
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.at_line_start = false;
                    self.line_len += 1;
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.at_line_start = true;
        let empty = self.line_len == 0;
        self.line_len = 0;
        self.top = match self.top {
            Some(Top::Header { body_lines }) if empty => Some(Top::Body { left: body_lines }),
            Some(Top::Body { left }) => Some(Top::Body {
                left: left.saturating_sub(1),
            }),
            other => other,
        };
        if let Some(Top::Body { left: 0 }) = self.top {
            self.done = true;
        }
    }

    /// Whether TOP has all it wants: nothing more that is pushed is written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the body: a last line without its line ending gets one, then the terminating
    /// ".\r\n".
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if !self.done && !self.at_line_start {
            self.end_line(out);
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_become_crlf_and_size_matches() {
        for (stored, wire) in [
            (&b"a\r\nb\r\n"[..], &b"a\r\nb\r\n"[..]),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n"),
            (b"no newline", b"no newline\r\n"),
            (b"", b""),
            (b"\xff\xfe8bit\n", b"\xff\xfe8bit\r\n"),
        ] {
            assert_eq!(canonical(stored), wire, "{stored:?}");
            assert_eq!(size(stored), wire.len() as u64, "{stored:?}");
        }
    }

    #[test]
    fn byte_stuffing_and_termination() {
        let mut out = Vec::new();
        dot_stuff(b".hidden\r\nplain\r\n..two\r\n.\r\n", &mut out);
        assert_eq!(out, b"..hidden\r\nplain\r\n...two\r\n..\r\n.\r\n");
        let mut empty = Vec::new();
        dot_stuff(b"", &mut empty);
        assert_eq!(empty, b".\r\n");
    }

    /// What a client does: split at CRLF, drop the terminator, undo the stuffing, join.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("terminated");
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn what_a_client_reads_back_has_the_announced_size() {
        for stored in [
            &b"From: a\n\n.leading dot\n..two\nbare\rcr\n"[..],
            b"x",
            b".",
            b"\n\n\n",
        ] {
            let c = canonical(stored);
            let mut wire = Vec::new();
            dot_stuff(&c, &mut wire);
            let read = unstuff(&wire);
            assert_eq!(read, c);
            assert_eq!(read.len() as u64, size(stored));
        }
    }

    /// The streaming writer gives the same bytes as canonical + top + dot_stuff, however the
    /// message is cut into chunks.
    #[test]
    fn streaming_matches_the_whole_message_functions_for_every_split() {
        let mut inputs: Vec<Vec<u8>> = [
            &b""[..],
            b"a",
            b".",
            b"\r",
            b"\n",
            b"\r\n",
            b"Subject: x\r\n\r\n.body\r\n..two\r\nthree",
            b"H: v\n\nl1\nl2\rl3\r\n.\r\n",
            b"no header end\r\nat all\r\n",
            b"\r\n\r\nleading blank lines\r\n",
            b"H: v\r\r\n\r\nbody\r",
        ]
        .iter()
        .map(|m| m.to_vec())
        .collect();
        // Every message of up to 7 octets over the interesting alphabet.
        let alphabet = b".a\r\n";
        for len in 0..=7u32 {
            for n in 0..4usize.pow(len) {
                let mut m = Vec::new();
                let mut k = n;
                for _ in 0..len {
                    m.push(alphabet[k % 4]);
                    k /= 4;
                }
                inputs.push(m);
            }
        }
        for message in &inputs {
            let canonical = canonical(message);
            for top in [None, Some(0u32), Some(1), Some(2)] {
                let mut expected = Vec::new();
                let body = match top {
                    None => &canonical[..],
                    Some(n) => top_of(&canonical, n),
                };
                dot_stuff(body, &mut expected);
                for split in 1..=message.len().max(1) {
                    let mut w = match top {
                        None => DotStuffer::whole(),
                        Some(n) => DotStuffer::top(n),
                    };
                    let mut got = Vec::new();
                    for chunk in message.chunks(split) {
                        w.push(chunk, &mut got);
                    }
                    w.finish(&mut got);
                    assert_eq!(
                        got,
                        expected,
                        "{:?} top {top:?} in chunks of {split}",
                        String::from_utf8_lossy(message)
                    );
                }
            }
        }
    }

    /// POP3 TOP as it was computed on a whole canonical message.
    fn top_of(canonical: &[u8], lines: u32) -> &[u8] {
        let Some(header_end) = crate::header::section_end(canonical) else {
            return canonical;
        };
        let mut end = header_end;
        for _ in 0..lines {
            match canonical[end..].windows(2).position(|w| w == b"\r\n") {
                Some(pos) => end += pos + 2,
                None => return canonical,
            }
        }
        &canonical[..end]
    }
}
