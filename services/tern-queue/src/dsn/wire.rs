//! The report's MIME structure on the wire: lines and delimiters, a boundary that the content
//! cannot contain, and the returned original made transmissible (line lengths, a capped
//! header block, a body cut at a line boundary).

use super::{MAX_BOUNDARY, MAX_LINE};

pub(super) fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Ends the previous part's content (keeping its last CRLF) and opens the next part.
pub(super) fn push_delimiter(out: &mut Vec<u8>, boundary: &str) {
    push_line(out, "");
    push_line(out, &format!("--{boundary}"));
}

/// The caller's boundary, reduced to RFC 2046's characters and made unique: while it occurs
/// anywhere in `contents`, a suffix is added. RFC 2046 only forbids it at the start of a
/// line, but some parsers (mail-parser 0.11 among them) take `--boundary` in the middle of a
/// line for a delimiter too, so any occurrence counts.
pub(super) fn choose_boundary(wanted: &str, contents: &[&[u8]]) -> String {
    let allowed = |c: &char| c.is_ascii_alphanumeric() || "'()+_,-./:=?".contains(*c);
    let mut base: String = wanted.chars().filter(allowed).take(MAX_BOUNDARY).collect();
    if base.is_empty() {
        base = "tern-dsn".to_string();
    }
    // What follows each occurrence of the base: a candidate clashes if one starts with it.
    let needle = base.as_bytes();
    let mut tails: Vec<&[u8]> = Vec::new();
    for content in contents {
        let mut at = 0;
        while let Some(i) = find(&content[at..], needle) {
            let tail = &content[at + i + needle.len()..];
            tails.push(&tail[..tail.len().min(32)]);
            at += i + 1;
        }
    }
    if tails.is_empty() {
        return base;
    }
    let mut n = 0u64;
    loop {
        let suffix = format!("=_{n}");
        if !tails.iter().any(|t| t.starts_with(suffix.as_bytes())) {
            return base + &suffix;
        }
        n += 1;
    }
}

/// The position of the first occurrence of `needle` in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = 0;
    while let Some(i) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + i;
        if haystack[start..].starts_with(needle) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Breaks every line of canonical `text` longer than 998 octets. In a header block the
/// break is a fold (before whitespace when there is some in reach, else with a space
/// inserted) so the field continues; in a body it is a plain line break. Breaks avoid
/// splitting a UTF-8 sequence.
pub(super) fn limit_line_length(text: &[u8], header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 512);
    for line in text.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if content.len() <= MAX_LINE {
            out.extend_from_slice(line);
            continue;
        }
        let mut rest = content;
        if header {
            while rest.last().is_some_and(|&b| is_wsp(b)) {
                rest = &rest[..rest.len() - 1];
            }
        }
        let mut prefix = false;
        loop {
            let budget = MAX_LINE - usize::from(prefix);
            if prefix {
                out.push(b' ');
            }
            if rest.len() <= budget {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
                break;
            }
            let at_space = if header {
                rest[1..=budget]
                    .iter()
                    .rposition(|&b| is_wsp(b))
                    .map(|p| p + 1)
            } else {
                None
            };
            let cut = at_space.unwrap_or_else(|| {
                let mut cut = budget;
                while cut > budget - 3 && (rest[cut] & 0xC0) == 0x80 {
                    cut -= 1;
                }
                if (rest[cut] & 0xC0) == 0x80 {
                    budget
                } else {
                    cut
                }
            });
            out.extend_from_slice(&rest[..cut]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[cut..];
            prefix = header && !rest.first().is_some_and(|&b| is_wsp(b));
        }
    }
    out
}

/// A header block cut to at most `max` octets at the start of a field (or, if the first
/// field alone is longer, at a line).
pub(super) fn cap_header_block(h: &[u8], max: usize) -> &[u8] {
    if h.len() <= max {
        return h;
    }
    let (mut field_end, mut line_end) = (0, 0);
    for line in h.split_inclusive(|&b| b == b'\n') {
        let end = line_end + line.len();
        if end > max {
            break;
        }
        line_end = end;
        if h.get(end).is_some_and(|&b| !is_wsp(b)) {
            field_end = end;
        }
    }
    &h[..if field_end > 0 { field_end } else { line_end }]
}

/// The longest prefix of canonical `body` of at most `max` octets that ends a line.
pub(super) fn truncate_at_line(body: &[u8], max: usize) -> &[u8] {
    if body.len() <= max {
        return body;
    }
    match body[..max].windows(2).rposition(|w| w == b"\r\n") {
        Some(at) => &body[..at + 2],
        None => &[],
    }
}
