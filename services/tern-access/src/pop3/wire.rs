//! POP3-only wire rules; the line-ending and byte-stuffing rules shared with the store and
//! SMTP live in [`tern_mail::lines`].

/// TOP: the header, the blank line after it, and the first `lines` lines of the body, of a
/// canonical message. A message without a blank line is all header.
pub fn top(canonical: &[u8], lines: u32) -> &[u8] {
    let Some(header_end) = tern_mail::header::section_end(canonical) else {
        return canonical;
    };
    let mut end = header_end;
    for _ in 0..lines {
        match find(&canonical[end..], b"\r\n") {
            Some(pos) => end += pos + 2,
            None => return canonical,
        }
    }
    &canonical[..end]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_mail::lines::canonical;

    #[test]
    fn top_returns_header_blank_line_and_n_body_lines() {
        let m = canonical(b"Subject: x\nFrom: y\n\nline1\nline2\nline3\n");
        assert_eq!(top(&m, 0), b"Subject: x\r\nFrom: y\r\n\r\n");
        assert_eq!(
            top(&m, 2),
            b"Subject: x\r\nFrom: y\r\n\r\nline1\r\nline2\r\n"
        );
        assert_eq!(top(&m, 10), &m[..]);
        assert_eq!(top(b"Subject: only\r\n", 3), b"Subject: only\r\n");
    }
}
