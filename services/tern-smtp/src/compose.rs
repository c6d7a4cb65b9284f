//! What the server adds to a message on its way in: the Received trace field (RFC 5321
//! §4.4) naming the trace id, and on submission a Message-ID and a Date when the client left
//! them out (RFC 6409 §8).
//!
//! The header section is looked at in a bounded buffer while the message streams on: at most
//! [`MAX_SCAN`] octets are held; a header section longer than that is passed on unchanged.

use crate::claims::ClaimFilter;

/// Largest header section examined for a missing Message-ID or Date.
pub const MAX_SCAN: usize = 64 << 10;

/// Streams a message through, adding header fields. Feed decoded message octets to
/// [`Composer::push`]; [`Composer::finish`] flushes what is still held.
pub struct Composer {
    scanning: bool,
    /// Octets of the message (after the prefix) already searched for the header's end.
    scanned: usize,
    prefix_len: usize,
    held: Vec<u8>,
    add_if_missing: Vec<(&'static str, String)>,
    /// The client's header section, kept when it was found within [`MAX_SCAN`] octets
    /// (submission checks its From field).
    header: Option<Vec<u8>>,
    /// Removes this host's Authentication-Results claims before anything else looks.
    claims: Option<ClaimFilter>,
    /// What the claim filter let through, reused between pieces.
    kept: Vec<u8>,
}

impl Composer {
    /// A composer that puts `prefix` (complete header lines) first and, when
    /// `add_if_missing` is not empty, adds those fields if the header section lacks them.
    pub fn new(prefix: Vec<u8>, add_if_missing: Vec<(&'static str, String)>) -> Self {
        Self {
            scanning: !add_if_missing.is_empty(),
            scanned: 0,
            prefix_len: prefix.len(),
            held: prefix,
            add_if_missing,
            header: None,
            claims: None,
            kept: Vec::new(),
        }
    }

    /// Also removes the client's Authentication-Results fields that claim to be
    /// `authserv_id`'s verdict ([`crate::claims`]).
    pub fn removing_claims_of(mut self, authserv_id: &str) -> Self {
        self.claims = Some(ClaimFilter::new(authserv_id));
        self
    }

    /// Takes the next octets of the message; returns what may be sent on now.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match self.claims.as_mut() {
            Some(filter) => {
                let mut kept = std::mem::take(&mut self.kept);
                kept.clear();
                filter.push(bytes, &mut kept);
                self.compose(&kept, out);
                self.kept = kept;
            }
            None => self.compose(bytes, out),
        }
    }

    fn compose(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if !self.scanning {
            out.append(&mut self.held);
            out.extend_from_slice(bytes);
            return;
        }
        self.held.extend_from_slice(bytes);
        let message = &self.held[self.prefix_len..];
        // Only the new octets (and the three before them, for a CRLFCRLF cut in two) are
        // searched, so one octet per read costs no more than one read of everything.
        let from = self.scanned.saturating_sub(3);
        let found =
            message.starts_with(b"\r\n") || message[from..].windows(4).any(|w| w == b"\r\n\r\n");
        self.scanned = message.len();
        if found || message.len() > MAX_SCAN {
            self.release(out);
        }
    }

    /// The message ended: whatever is held goes out.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(filter) = self.claims.as_mut() {
            let mut kept = Vec::new();
            filter.finish(&mut kept);
            self.compose(&kept, out);
        }
        if self.scanning {
            self.release(out);
        }
        out.append(&mut self.held);
    }

    /// The client's header section (without the fields this server added), when the
    /// composer scanned for it and found its end within [`MAX_SCAN`] octets, or the whole
    /// message was shorter than that.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    fn release(&mut self, out: &mut Vec<u8>) {
        self.scanning = false;
        let message = &self.held[self.prefix_len..];
        let header_len = tern_mail::header::section_end(message);
        let mut added = Vec::new();
        if header_len.is_some() || message.len() <= MAX_SCAN {
            let header = &message[..header_len.unwrap_or(message.len())];
            self.header = Some(header.to_vec());
            // The added fields go after the trace fields this server put first.
            for (name, value) in &self.add_if_missing {
                if !has_field(header, name) {
                    added.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
            }
        }
        out.extend_from_slice(&self.held[..self.prefix_len]);
        out.extend_from_slice(&added);
        out.extend_from_slice(&self.held[self.prefix_len..]);
        self.held.clear();
    }
}

/// Whether a field named `name` starts a line of `header`.
fn has_field(header: &[u8], name: &str) -> bool {
    header
        .split(|b| *b == b'\n')
        .filter(|line| !line.starts_with(b" ") && !line.starts_with(b"\t"))
        .any(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()..].trim_ascii_start().starts_with(b":")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prefix: &str, adds: Vec<(&'static str, String)>, msg: &[u8], piece: usize) -> String {
        let mut c = Composer::new(prefix.as_bytes().to_vec(), adds);
        let mut out = Vec::new();
        for chunk in msg.chunks(piece) {
            c.push(chunk, &mut out);
        }
        c.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn adds() -> Vec<(&'static str, String)> {
        vec![
            ("Message-ID", "<id@host>".into()),
            ("Date", "Mon, 30 Nov 2026 12:00:00 +0000".into()),
        ]
    }

    #[test]
    fn forged_results_go_before_the_prefix_and_the_scan_see_the_message() {
        let msg = b"Authentication-Results: mx.t; dkim=pass\r\nSubject: a\r\n\r\nbody\r\n";
        for piece in [1, 5, msg.len()] {
            let mut c =
                Composer::new(b"Received: x\r\n".to_vec(), adds()).removing_claims_of("mx.t");
            let mut out = Vec::new();
            for chunk in msg.chunks(piece) {
                c.push(chunk, &mut out);
            }
            c.finish(&mut out);
            let out = String::from_utf8(out).unwrap();
            assert!(
                out.starts_with("Received: x\r\nMessage-ID: <id@host>\r\n"),
                "{out}"
            );
            assert!(out.ends_with("Subject: a\r\n\r\nbody\r\n"), "{out}");
            assert!(!out.contains("dkim=pass"), "{out}");
            assert!(c.header().is_some_and(|h| h.starts_with(b"Subject: a\r\n")));
        }
    }

    #[test]
    fn prefix_only_on_mx() {
        assert_eq!(
            run("Received: x\r\n", vec![], b"Subject: a\r\n\r\nbody\r\n", 3),
            "Received: x\r\nSubject: a\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn adds_missing_fields_only() {
        let out = run(
            "R: x\r\n",
            adds(),
            b"Subject: a\r\ndate: Sun, 1 Nov 2026 00:00:00 +0000\r\n\r\nbody\r\n",
            5,
        );
        assert_eq!(out, "R: x\r\nMessage-ID: <id@host>\r\nSubject: a\r\ndate: Sun, 1 Nov 2026 00:00:00 +0000\r\n\r\nbody\r\n");
        let out = run(
            "",
            adds(),
            b"Message-Id : <a@b>\r\nSubject: a\r\n\r\nDate: not a header\r\n",
            1,
        );
        assert!(out.starts_with("Date: Mon"), "{out}");
        assert!(!out.contains("<id@host>"), "{out}");
    }

    #[test]
    fn header_without_body_and_oversized_header() {
        let out = run("", adds(), b"Subject: only\r\n", 4);
        assert!(out.starts_with("Message-ID: <id@host>\r\nDate: "), "{out}");
        let mut big = Vec::new();
        for i in 0..5000 {
            big.extend_from_slice(format!("X-Filler-{i}: some value\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\nbody\r\n");
        let out = run("", adds(), &big, 1000);
        assert_eq!(out.as_bytes(), &big[..]);
    }
}
