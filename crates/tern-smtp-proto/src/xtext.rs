//! xtext (RFC 3461 §4), the encoding of the DSN parameters ENVID and ORCPT: printable ASCII
//! other than `+` and `=` stands for itself, anything else is `+HH` (upper-case hex).
//!
//! Two decoders share one scanner: [`decode`] is strict, for what a client sends the server
//! (malformed xtext is refused with a 555); [`decode_lossy`] never fails, for text already
//! accepted and stored, which the DSN only has to show (a malformed escape stands for
//! itself).

/// Encodes `s` as xtext: `+`, `=` and octets outside 33..=126 become `+HH`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push('+');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes strict xtext into UTF-8 text: `None` for an octet outside 33..=126, an `=`, a `+`
/// not followed by two upper-case hex digits, or a result that is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    String::from_utf8(scan(s, true)?).ok()
}

/// Decodes xtext leniently: `+HH` (either case) is the octet 0xHH, and anything else,
/// including a malformed escape, stands for itself.
pub fn decode_lossy(s: &str) -> Vec<u8> {
    // Not strict, so the scanner never refuses.
    scan(s, false).unwrap_or_default()
}

fn scan(s: &str, strict: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let digit = |at: usize| b.get(at).and_then(|c| hex_digit(*c, strict));
            if let (Some(h), Some(l)) = (digit(i + 1), digit(i + 2)) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            if strict {
                return None;
            }
        } else if strict && (!(33..=126).contains(&b[i]) || b[i] == b'=') {
            return None;
        }
        out.push(b[i]);
        i += 1;
    }
    Some(out)
}

/// A hex digit's value; RFC 3461 allows only upper case, which `strict` enforces.
fn hex_digit(c: u8, strict: bool) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' if !strict => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        assert_eq!(
            decode("rfc822;a+2Bb@x.test").as_deref(),
            Some("rfc822;a+b@x.test")
        );
        assert_eq!(decode("a+2"), None);
        assert_eq!(decode("a+zz"), None);
        assert_eq!(decode("a+2b"), None);
        assert_eq!(decode("a b"), None);
        assert_eq!(decode("a=b"), None);
        assert_eq!(decode("+FF"), None, "not UTF-8");
    }

    #[test]
    fn lossy_decoding() {
        assert_eq!(decode_lossy("a+2Bb+3Dc"), b"a+b=c");
        assert_eq!(decode_lossy("a+2"), b"a+2");
        assert_eq!(decode_lossy("a+zz"), b"a+zz");
        assert_eq!(decode_lossy("a+2b c"), b"a+ c");
    }

    #[test]
    fn encoding_round_trips() {
        for s in ["plain@x.test", "a+b=c", "sp ace", "caf\u{e9}", "", "+"] {
            let e = encode(s);
            assert!(e.bytes().all(|b| (33..=126).contains(&b) && b != b'='));
            assert_eq!(decode(&e).as_deref(), Some(s));
        }
        assert_eq!(encode("a+b"), "a+2Bb");
    }
}
