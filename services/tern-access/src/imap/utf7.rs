//! Mailbox names in modified UTF-7 (RFC 3501 §5.1.3): what IMAP4rev1 clients send and expect,
//! converted to and from the UTF-8 names the store keeps.
//!
//! Decoding is strict, because a lenient decoder would let two spellings name one mailbox (or
//! smuggle a `/` past the hierarchy check): `&` must be followed by `-` or by modified base64
//! of UTF-16 that ends with `-`; the base64 must be minimal (no leftover bits set), must not
//! encode printable ASCII that could have been written directly, must not be empty, and must
//! be valid UTF-16 (paired surrogates); two encoded runs must not be adjacent. Anything else
//! is an error the session answers with NO/BAD.
//!
//! Hand-written rather than taken from a crate: the only crates for it are small, unmaintained
//! and lenient in exactly the ways listed above; this one is pinned by unit tests and the
//! `imap_utf7` fuzz target (every UTF-8 name survives encode then decode).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    /// A byte outside printable ASCII.
    #[error("mailbox names must be 7-bit printable ASCII in modified UTF-7")]
    NotPrintable,
    /// An `&` run without its closing `-`.
    #[error("unterminated modified UTF-7 run")]
    Unterminated,
    /// Bad base64, leftover bits, an empty or needless run, or broken UTF-16.
    #[error("invalid modified UTF-7 run")]
    Invalid,
}

fn value(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|c| *c == b).map(|p| p as u32)
}

/// Decodes a modified UTF-7 mailbox name to UTF-8.
pub fn decode(name: &[u8]) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    let mut last_run_end = None;
    while i < name.len() {
        let b = name[i];
        if !(0x20..0x7f).contains(&b) {
            return Err(Utf7Error::NotPrintable);
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let end = name[i + 1..]
            .iter()
            .position(|c| *c == b'-')
            .map(|p| i + 1 + p)
            .ok_or(Utf7Error::Unterminated)?;
        let run = &name[i + 1..end];
        if run.is_empty() {
            out.push('&');
        } else {
            if last_run_end == Some(i) {
                // Two adjacent encoded runs should have been one.
                return Err(Utf7Error::Invalid);
            }
            decode_run(run, &mut out)?;
            last_run_end = Some(end + 1);
        }
        i = end + 1;
    }
    Ok(out)
}

fn decode_run(run: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let mut bits = 0u32;
    let mut nbits = 0u32;
    let mut units = Vec::with_capacity(run.len() * 6 / 16);
    for &c in run {
        bits = (bits << 6) | value(c).ok_or(Utf7Error::Invalid)?;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            units.push(((bits >> nbits) & 0xffff) as u16);
            bits &= (1 << nbits) - 1;
        }
    }
    // Minimal encoding: fewer than 6 leftover bits, all zero.
    if nbits >= 6 || bits != 0 || units.is_empty() {
        return Err(Utf7Error::Invalid);
    }
    let start = out.len();
    for ch in char::decode_utf16(units) {
        let ch = ch.map_err(|_| Utf7Error::Invalid)?;
        out.push(ch);
    }
    // Printable ASCII must be written directly, not encoded.
    if out[start..].chars().any(|c| (' '..='~').contains(&c)) {
        return Err(Utf7Error::Invalid);
    }
    Ok(())
}

/// Encodes a UTF-8 mailbox name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let (mut bits, mut nbits) = (0u32, 0u32);
        for u in pending.drain(..) {
            bits = (bits << 16) | u32::from(u);
            nbits += 16;
            while nbits >= 6 {
                nbits -= 6;
                out.push(ALPHABET[((bits >> nbits) & 0x3f) as usize] as char);
            }
            bits &= (1 << nbits) - 1;
        }
        if nbits > 0 {
            out.push(ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize] as char);
        }
        out.push('-');
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_and_round_trips() {
        // RFC 3501 §5.1.3: "~peter/mail/台北/日本語".
        let utf8 = "~peter/mail/台北/日本語";
        let utf7 = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(utf8), utf7);
        assert_eq!(decode(utf7.as_bytes()).unwrap(), utf8);
        for name in [
            "INBOX",
            "Tom & Jerry",
            "Entwürfe",
            "Ünïcödé/Ä",
            "😀 emoji",
            "&",
            "a&b&c",
            "",
        ] {
            assert_eq!(decode(encode(name).as_bytes()).unwrap(), name, "{name}");
        }
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
    }

    #[test]
    fn invalid_spellings_are_refused() {
        for bad in [
            &b"&U,BTFw"[..], // unterminated
            b"&U,BTF-",      // leftover bits (not a whole UTF-16 unit)
            b"&AGE-",        // encodes "a", printable ASCII
            b"&2D0-",        // lone high surrogate
            b"&U,A-&U,A-",   // adjacent runs
            b"&U*A-",        // not in the alphabet
            b"caf\xc3\xa9",  // 8-bit
            b"tab\there",    // control character
            b"&APx-",        // non-zero leftover bits
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
