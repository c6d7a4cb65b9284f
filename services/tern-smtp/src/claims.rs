//! Authentication-Results fields (RFC 8601) that claim to be this host's verdict are
//! removed from every incoming message, as §5 of the RFC asks of a border MTA: otherwise a
//! sender could write `Authentication-Results: mx.provider.example; dkim=pass` into its own
//! message, and a filter or a user trusting fields that name this host would believe it.
//! Fields naming other hosts stay (they are other hosts' claims, and say so).
//!
//! The filter streams: the header is examined one field at a time as it arrives, holding at
//! most one field of up to [`MAX_FIELD`] octets. An Authentication-Results field longer than
//! that cannot be checked and is removed whatever it says (a sender padding a forged field
//! with comments gains nothing); any other field that long passes unchanged. After the empty
//! line that ends the header section, everything passes through untouched.
//!
//! It fails closed: an Authentication-Results field whose authserv-id cannot be read (an
//! unterminated comment or quoted string) is removed too, since some reader might take it as
//! this host's. Quoted-pairs in a quoted authserv-id are undone before comparing.
//!
//! Its input is what the DATA and BDAT decoders produce: every line ending is CRLF (a bare
//! CR or LF was made one), so a line starts only after LF.
//!
//! Pure code over bytes: unit-tested here and fuzzed (`fuzz/fuzz_targets/auth_results.rs`).

/// Longest header field held while deciding whether it is a forged claim.
pub const MAX_FIELD: usize = 64 << 10;

/// The field name RFC 8601 registers.
const FIELD: &[u8] = b"Authentication-Results";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the header, at the start of a line.
    LineStart,
    /// In the header, inside a line of the field being held.
    InLine,
    /// Past the header: everything passes.
    Body,
}

/// What happens to the field being held once it is too long to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    /// Still held.
    No,
    /// An Authentication-Results field: the rest of it is dropped.
    Drop,
    /// Another field: the rest of it passes.
    Pass,
}

/// Removes this host's Authentication-Results claims from a message as it streams.
#[derive(Debug)]
pub struct ClaimFilter {
    /// This host's authserv-id, lowercased, without a trailing dot.
    ours: String,
    state: State,
    field: Vec<u8>,
    overflow: Overflow,
}

impl ClaimFilter {
    /// A filter for the authserv-id `ours` (this server's host name).
    pub fn new(ours: &str) -> Self {
        Self {
            ours: normalize_id(ours.as_bytes()),
            state: State::LineStart,
            field: Vec::new(),
            overflow: Overflow::No,
        }
    }

    /// Takes the next octets of the message; writes what may go on to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut rest = bytes;
        while let Some((&b, tail)) = rest.split_first() {
            match self.state {
                State::Body => {
                    out.extend_from_slice(rest);
                    return;
                }
                State::LineStart if b == b' ' || b == b'\t' => {
                    // A continuation line of the field being held.
                    self.take(b, out);
                    self.state = State::InLine;
                }
                State::LineStart if b == b'\r' || b == b'\n' => {
                    // The empty line: the header section ends here.
                    self.decide(out);
                    self.state = State::Body;
                    out.extend_from_slice(rest);
                    return;
                }
                State::LineStart => {
                    // A new field begins: the one held is complete.
                    self.decide(out);
                    self.take(b, out);
                    self.state = State::InLine;
                }
                State::InLine => {
                    self.take(b, out);
                    if b == b'\n' {
                        self.state = State::LineStart;
                    }
                }
            }
            rest = tail;
        }
    }

    /// The message ended: a field still held is decided.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.state != State::Body {
            self.decide(out);
        }
    }

    /// Adds one octet to the field being held (or passes or drops it once too long).
    fn take(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.overflow {
            Overflow::Drop => {}
            Overflow::Pass => out.push(b),
            Overflow::No => {
                self.field.push(b);
                if self.field.len() > MAX_FIELD {
                    self.overflow =
                        if is_results_field(&self.field) || may_become_results_field(&self.field) {
                            Overflow::Drop
                        } else {
                            out.append(&mut self.field);
                            Overflow::Pass
                        };
                    self.field.clear();
                }
            }
        }
    }

    /// The held field is complete: out with it, unless it is a claim of ours.
    fn decide(&mut self, out: &mut Vec<u8>) {
        if self.overflow == Overflow::No && !self.is_our_claim(&self.field) {
            out.extend_from_slice(&self.field);
        }
        self.field.clear();
        self.overflow = Overflow::No;
    }

    fn is_our_claim(&self, field: &[u8]) -> bool {
        if !is_results_field(field) {
            return false;
        }
        let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
        let value = field.get(colon + 1..).unwrap_or_default();
        // Unreadable: removed as if it were ours (fail closed).
        authserv_id(value).is_none_or(|id| normalize_id(&id) == self.ours)
    }
}

/// Whether `field` (a whole field, or its start) is named Authentication-Results.
fn is_results_field(field: &[u8]) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    // RFC 5322's obsolete syntax allows white space before the colon.
    field[..colon].trim_ascii_end().eq_ignore_ascii_case(FIELD)
}

/// Whether a field start with no colon yet could still be named Authentication-Results
/// (its name so far, white space after it aside, is a prefix of that name).
fn may_become_results_field(start: &[u8]) -> bool {
    if start.contains(&b':') {
        return false;
    }
    let name = start.trim_ascii_end();
    name.len() <= FIELD.len() && FIELD[..name.len()].eq_ignore_ascii_case(name)
}

/// The authserv-id of an Authentication-Results value: its first token, or its first
/// quoted string with quoted-pairs undone and folds dropped, after any white space, line
/// folds and comments (RFC 8601 §2.2, CFWS of RFC 5322); `None` when it cannot be read.
pub fn authserv_id(value: &[u8]) -> Option<Vec<u8>> {
    let mut i = skip_cfws(value, 0)?;
    if value.get(i) == Some(&b'"') {
        i += 1;
        let mut id = Vec::new();
        while i < value.len() {
            match value[i] {
                b'\\' => {
                    id.push(*value.get(i + 1)?);
                    i += 2;
                }
                b'"' => return Some(id),
                b'\r' | b'\n' => i += 1,
                b => {
                    id.push(b);
                    i += 1;
                }
            }
        }
        return None;
    }
    let start = i;
    while i < value.len() && !matches!(value[i], b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(') {
        i += 1;
    }
    (i > start).then(|| value[start..i].to_vec())
}

/// The index of the first octet at or after `i` that is not white space or a comment;
/// `None` when a comment does not end.
fn skip_cfws(value: &[u8], mut i: usize) -> Option<usize> {
    while i < value.len() {
        match value[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut depth = 0usize;
                loop {
                    match value.get(i)? {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => break,
        }
    }
    Some(i.min(value.len()))
}

/// An authserv-id compared as a domain name: case-insensitive, a trailing dot ignored.
fn normalize_id(id: &[u8]) -> String {
    let id = id.strip_suffix(b".").unwrap_or(id);
    String::from_utf8_lossy(id).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(message: &[u8], piece: usize) -> Vec<u8> {
        let mut f = ClaimFilter::new("mx.tern.test");
        let mut out = Vec::new();
        for chunk in message.chunks(piece.max(1)) {
            f.push(chunk, &mut out);
        }
        f.finish(&mut out);
        out
    }

    fn every_cut(message: &[u8]) -> Vec<u8> {
        let whole = filter(message, message.len());
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(filter(message, piece), whole, "cut into pieces of {piece}");
        }
        whole
    }

    #[test]
    fn removes_claims_of_this_host_only() {
        let m = b"Received: from a\r\n\tby b; date\r\n\
Authentication-Results: mx.tern.test; dkim=pass\r\n\
Authentication-Results: other.example; spf=fail\r\n\
authentication-results :  (a comment (nested)) MX.Tern.Test. ;\r\n\tdmarc=pass\r\n\
Authentication-Results: \"mx.tern.test\"; none\r\n\
Subject: Authentication-Results: mx.tern.test\r\n\
\r\n\
Authentication-Results: mx.tern.test; body text stays\r\n";
        let out = every_cut(m);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from a\r\n\tby b; date\r\n\
Authentication-Results: other.example; spf=fail\r\n\
Subject: Authentication-Results: mx.tern.test\r\n\
\r\n\
Authentication-Results: mx.tern.test; body text stays\r\n"
        );
    }

    #[test]
    fn a_message_without_claims_passes_unchanged() {
        for m in [
            &b"Subject: hi\r\n\r\nbody\r\n"[..],
            b"\r\nno header at all\r\n",
            b"Subject: no body",
            b"Subject: bare\nFrom: lf\n\nbody\n",
            b"",
        ] {
            assert_eq!(every_cut(m), m, "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn a_claim_too_long_to_check_is_removed_and_other_long_fields_pass() {
        let mut m = b"Authentication-Results: (".to_vec();
        m.extend(std::iter::repeat_n(b'x', MAX_FIELD));
        m.extend_from_slice(b") mx.tern.test; dkim=pass\r\nSubject: s\r\n");
        let mut long = b"X-Long: ".to_vec();
        long.extend(std::iter::repeat_n(b'y', MAX_FIELD + 10));
        long.extend_from_slice(b"\r\n");
        m.extend_from_slice(&long);
        m.extend_from_slice(b"\r\nbody\r\n");
        let out = every_cut(&m);
        let mut expected = b"Subject: s\r\n".to_vec();
        expected.extend_from_slice(&long);
        expected.extend_from_slice(b"\r\nbody\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn authserv_ids_are_read_past_comments_and_folds() {
        let id = |v: &[u8]| authserv_id(v).map(|i| String::from_utf8(i).unwrap());
        assert_eq!(id(b" mx.a; spf=pass").as_deref(), Some("mx.a"));
        assert_eq!(id(b"\r\n\t(c) mx.a 1; none").as_deref(), Some("mx.a"));
        assert_eq!(id(b" (a\\) b) \"q.id\"; x").as_deref(), Some("q.id"));
        assert_eq!(id(b" \"mx\\.a\r\n\t\"; x").as_deref(), Some("mx.a\t"));
        assert_eq!(id(b"   "), None);
        assert_eq!(id(b" \"unterminated"), None);
        assert_eq!(id(b" (unterminated comment mx.a; x"), None);
        assert_eq!(
            id(b" (\\) mx.a; x"),
            None,
            "the escaped ) leaves the comment open"
        );
    }

    #[test]
    fn unreadable_or_escaped_claims_are_removed_too() {
        let m = b"Authentication-Results: \"mx.tern\\.test\"; dkim=pass\r\n\
Authentication-Results: (\\) mx.tern.test; dkim=pass\r\n\
Authentication-Results: other.example; spf=pass\r\n\r\nbody\r\n";
        assert_eq!(
            String::from_utf8(every_cut(m)).unwrap(),
            "Authentication-Results: other.example; spf=pass\r\n\r\nbody\r\n"
        );
        // A name padded past the bound before its colon is still removed.
        let mut m = b"Authentication-Results".to_vec();
        m.extend(std::iter::repeat_n(b' ', MAX_FIELD + 1));
        m.extend_from_slice(b": mx.tern.test; dkim=pass\r\n\r\nbody\r\n");
        assert_eq!(every_cut(&m), b"\r\nbody\r\n");
    }
}
