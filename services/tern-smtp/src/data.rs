//! The DATA phase (RFC 5321 §4.1.1.4, §4.5.2): finding the end marker and undoing the
//! client's dot-stuffing, over input that arrives in arbitrary pieces, in constant memory.
//!
//! The rules, one each, as the crate documentation promises:
//!
//! - **End of data** is only `CRLF . CRLF`, with both line endings real CRLFs (the CRLF that
//!   ended the DATA command counts as the first). `LF . LF`, `CR . CR` and mixtures do not end
//!   the message: accepting them is what made "SMTP smuggling" (2023) possible, where a
//!   second message hides inside the first.
//! - **Bare LF and bare CR** inside the message are taken as line endings and stored as CRLF,
//!   so the stored message is in canonical form and a later relay or POP3/IMAP reader sees
//!   well-formed lines. A line that follows a bare line ending is never an end marker (above).
//! - **Dot-unstuffing**: a line that starts with a period and has more characters loses the
//!   period; a line of one period that is not the end marker (it followed a bare line ending)
//!   is kept as one period.
//! - **Long lines**: RFC 5321 bounds a line at 1,000 octets with its CRLF, but real senders
//!   exceed it (HTML mail from some clients), so lines are accepted verbatim up to
//!   [`MAX_LINE`] octets. A message with a longer line is read to its end and refused
//!   ([`Outcome::LineTooLong`], answered 554 5.6.0). Nothing is buffered per line, so the
//!   bound is about what is stored, not about memory.
//! - **Size**: octets of the decoded message are counted; past the limit nothing more is
//!   produced, the rest is read off the wire, and the message is refused with 552.

/// Longest line accepted in a message, without its CRLF.
pub const MAX_LINE: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `real` when the previous line ended with a real CRLF.
    Start { real: bool },
    /// A period at the start of a line.
    Dot { real: bool },
    /// A period at the start of a line after a real CRLF, then CR: LF ends the message.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside or at the end of a line.
    Cr,
}

/// How a finished message came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Complete and within the bounds.
    Complete,
    /// Larger than the size limit.
    TooBig,
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
}

/// The DATA decoder: feed it what arrives; it writes the message's octets to `out`.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    line_len: usize,
    produced: u64,
    max_size: u64,
    too_big: bool,
    long_line: bool,
}

impl DataDecoder {
    /// A decoder for a message of at most `max_size` octets.
    pub fn new(max_size: u64) -> Self {
        Self {
            state: State::Start { real: true },
            line_len: 0,
            produced: 0,
            max_size,
            too_big: false,
            long_line: false,
        }
    }

    /// Octets of the decoded message so far (counting past the limit).
    pub fn size(&self) -> u64 {
        self.produced
    }

    /// Decodes as much of `input` as belongs to the message. Returns how many octets were
    /// used and, when the end marker was among them, how the message came out; the octets
    /// after the marker belong to the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<Outcome>) {
        for (i, &b) in input.iter().enumerate() {
            if self.step(b, out) {
                let outcome = if self.too_big {
                    Outcome::TooBig
                } else if self.long_line {
                    Outcome::LineTooLong
                } else {
                    Outcome::Complete
                };
                return (i + 1, Some(outcome));
            }
        }
        (input.len(), None)
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.produced += bytes.len() as u64;
        if self.produced > self.max_size {
            self.too_big = true;
        }
        if !self.too_big && !self.long_line {
            out.extend_from_slice(bytes);
        }
    }

    fn text_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        self.line_len += 1;
        if self.line_len > MAX_LINE {
            self.long_line = true;
        }
        self.emit(&[b], out);
    }

    fn line_end(&mut self, out: &mut Vec<u8>) {
        self.line_len = 0;
        self.emit(b"\r\n", out);
    }

    /// One octet; true when it completed the end marker.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match self.state {
            State::Start { real } => match b {
                b'.' => self.state = State::Dot { real },
                b'\r' => self.state = State::Cr,
                b'\n' => {
                    self.line_end(out);
                    self.state = State::Start { real: false };
                }
                _ => {
                    self.text_byte(b, out);
                    self.state = State::Text;
                }
            },
            State::Dot { real } => match b {
                b'\r' if real => self.state = State::DotCr,
                b'\r' => {
                    self.text_byte(b'.', out);
                    self.state = State::Cr;
                }
                b'\n' => {
                    self.text_byte(b'.', out);
                    self.line_end(out);
                    self.state = State::Start { real: false };
                }
                _ => {
                    // The stuffed period is dropped; this octet starts the line's text.
                    self.text_byte(b, out);
                    self.state = State::Text;
                }
            },
            State::DotCr => {
                if b == b'\n' {
                    return true;
                }
                // "." CR and something else: a line of one period ended by a bare CR.
                self.text_byte(b'.', out);
                self.line_end(out);
                self.state = State::Start { real: false };
                return self.step(b, out);
            }
            State::Text => match b {
                b'\r' => self.state = State::Cr,
                b'\n' => {
                    self.line_end(out);
                    self.state = State::Start { real: false };
                }
                _ => self.text_byte(b, out),
            },
            State::Cr => match b {
                b'\n' => {
                    self.line_end(out);
                    self.state = State::Start { real: true };
                }
                b'\r' => self.line_end(out),
                _ => {
                    self.line_end(out);
                    self.state = State::Start { real: false };
                    return self.step(b, out);
                }
            },
        }
        false
    }
}

/// BDAT content (RFC 3030) has no dot-stuffing and no end marker, but the same line rules
/// apply: bare CR and bare LF become CRLF, and a line over [`MAX_LINE`] is flagged. A message
/// that came in by BDAT can therefore be relayed with DATA without reviving the smuggling
/// shapes.
#[derive(Debug, Default)]
pub struct LineNormalizer {
    pending_cr: bool,
    line_len: usize,
    long_line: bool,
}

impl LineNormalizer {
    /// Normalizes the next octets.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            match b {
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.pending_cr = false;
                    self.line_len = 0;
                }
                _ if self.pending_cr => {
                    out.extend_from_slice(b"\r\n");
                    self.line_len = 0;
                    self.pending_cr = b == b'\r';
                    if !self.pending_cr {
                        self.text(b, out);
                    }
                }
                b'\r' => self.pending_cr = true,
                _ => self.text(b, out),
            }
        }
    }

    fn text(&mut self, b: u8, out: &mut Vec<u8>) {
        self.line_len += 1;
        if self.line_len > MAX_LINE {
            self.long_line = true;
        }
        out.push(b);
    }

    /// The content ended: a CR left waiting becomes a line ending.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.extend_from_slice(b"\r\n");
            self.pending_cr = false;
        }
    }

    /// Whether some line was longer than [`MAX_LINE`].
    pub fn long_line(&self) -> bool {
        self.long_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` octets; returns (message, consumed, outcome).
    fn decode(input: &[u8], piece: usize, max: u64) -> (Vec<u8>, usize, Option<Outcome>) {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let mut used = 0;
        for chunk in input.chunks(piece.max(1)) {
            let (n, done) = d.feed(chunk, &mut out);
            used += n;
            if done.is_some() {
                return (out, used, done);
            }
        }
        (out, used, None)
    }

    #[test]
    fn end_marker_split_across_every_boundary() {
        let input = b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        for piece in 1..input.len() {
            let (msg, used, done) = decode(input, piece, 1000);
            assert_eq!(done, Some(Outcome::Complete), "piece {piece}");
            assert_eq!(msg, b"Subject: x\r\n\r\nbody\r\n");
            assert_eq!(&input[used..], b"QUIT\r\n", "piece {piece}");
        }
    }

    #[test]
    fn empty_message_and_unstuffing() {
        assert_eq!(
            decode(b".\r\n", 1, 10),
            (vec![], 3, Some(Outcome::Complete))
        );
        let (msg, _, done) = decode(b"..\r\n...x\r\n.a\r\n.\r\n", 3, 1000);
        assert_eq!(done, Some(Outcome::Complete));
        assert_eq!(msg, b".\r\n..x\r\na\r\n");
    }

    #[test]
    fn bare_line_endings_never_end_the_message() {
        // The smuggling shapes: LF.LF, LF.CRLF, CRLF.LF, CR.CR.
        for input in [
            &b"a\n.\nb\r\n.\r\n"[..],
            b"a\n.\r\nb\r\n.\r\n",
            b"a\r\n.\nb\r\n.\r\n",
            b"a\r.\rb\r\n.\r\n",
        ] {
            let (msg, used, done) = decode(input, 1, 1000);
            assert_eq!(done, Some(Outcome::Complete), "{input:?}");
            assert_eq!(used, input.len(), "{input:?}");
            assert_eq!(msg, b"a\r\n.\r\nb\r\n", "{input:?}");
        }
    }

    #[test]
    fn bare_cr_and_lf_become_crlf() {
        let (msg, _, _) = decode(b"a\rb\nc\r\r\nd\r\n.\r\n", 2, 1000);
        assert_eq!(msg, b"a\r\nb\r\nc\r\n\r\nd\r\n");
    }

    #[test]
    fn size_limit_reads_to_the_end() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\r\nmore\r\n.\r\nNEXT");
        let (msg, used, done) = decode(&input, 7, 50);
        assert_eq!(done, Some(Outcome::TooBig));
        assert_eq!(&input[used..], b"NEXT");
        assert!(msg.len() <= 50);
    }

    #[test]
    fn bdat_content_is_normalized_across_chunks() {
        let input = b"a\rb\nc\r\nd\r\r\n.\r";
        for piece in 1..input.len() {
            let mut n = LineNormalizer::default();
            let mut out = Vec::new();
            for c in input.chunks(piece) {
                n.feed(c, &mut out);
            }
            n.finish(&mut out);
            assert_eq!(out, b"a\r\nb\r\nc\r\nd\r\n\r\n.\r\n", "piece {piece}");
        }
        let mut n = LineNormalizer::default();
        n.feed(&vec![b'x'; MAX_LINE + 1], &mut Vec::new());
        assert!(n.long_line());
    }

    #[test]
    fn long_lines_up_to_the_bound() {
        let mut ok = vec![b'y'; MAX_LINE];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode(&ok, 4096, 1 << 20).2, Some(Outcome::Complete));
        let mut long = vec![b'y'; MAX_LINE + 1];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(decode(&long, 4096, 1 << 20).2, Some(Outcome::LineTooLong));
    }
}
