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
}
