//! Untrusted text made safe for a report's fields: one clean line, addresses and message ids
//! without what could end or extend a field, and folding at the line limits.

use std::fmt::Write as _;

use super::{MAX_VALUE, MAX_WORD_PIECE, SOFT_LINE};

/// Untrusted text made into one clean line: line breaks, tabs and other whitespace become a
/// single space, control and bidirectional-formatting characters are dropped, and the
/// result is capped at [`MAX_VALUE`] octets. With `ascii`, non-ASCII characters are written
/// as RFC 6533's `\x{HEX}`.
pub(super) fn one_line(s: &str, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE + 8));
    let mut space = false;
    for c in s.chars() {
        if out.len() >= MAX_VALUE {
            out.push_str(" ...");
            break;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        // Bidirectional marks, embeddings, overrides and isolates could make the text read
        // differently from what it says.
        let bidi = matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}');
        if c.is_control() || bidi || ('\u{2066}'..='\u{2069}').contains(&c) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if ascii && !c.is_ascii() {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// An address for the report's own header (`From:`, `To:`): one line, no angle brackets.
pub(super) fn address(s: &str) -> String {
    let s = one_line(s, false).replace(['<', '>'], "");
    let s = s.trim();
    s[..floor_char_boundary(s, MAX_WORD_PIECE)].to_string()
}

/// The Message-ID's id-left@id-right: visible ASCII only, no angle brackets.
pub(super) fn message_id(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '<' && *c != '>')
        .take(MAX_WORD_PIECE)
        .collect()
}

/// The largest char boundary of `s` at or below `max`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Appends `Name: value` folded at spaces near [`SOFT_LINE`], never beyond 998 octets; a
/// word too long for one line is broken into pieces on continuation lines.
pub(super) fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut line = name.len() + 1;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        let mut rest = word;
        while !rest.is_empty() {
            let (piece, tail) = next_piece(rest);
            if line > name.len() + 1 && line + 1 + piece.len() > SOFT_LINE {
                out.push_str("\r\n");
                line = 0;
            }
            out.push(' ');
            out.push_str(piece);
            line += 1 + piece.len();
            rest = tail;
        }
    }
    out.push_str("\r\n");
}

/// Appends `text` as lines of at most about [`SOFT_LINE`] octets, the first starting with
/// `first`, the others with `next`; words too long for a line are broken.
pub(super) fn wrap(out: &mut String, first: &str, next: &str, text: &str) {
    out.push_str(first);
    let mut line = first.len();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut rest = word;
        while !rest.is_empty() {
            let (piece, tail) = next_piece(rest);
            if !empty && line + 1 + piece.len() > SOFT_LINE {
                out.push_str("\r\n");
                out.push_str(next);
                line = next.len();
                empty = true;
            }
            if !empty {
                out.push(' ');
                line += 1;
            }
            out.push_str(piece);
            line += piece.len();
            empty = false;
            rest = tail;
        }
    }
    out.push_str("\r\n");
}

/// The next piece of an unbreakable word: at most [`MAX_WORD_PIECE`] octets, at least one
/// character, never splitting one.
fn next_piece(s: &str) -> (&str, &str) {
    let mut cut = floor_char_boundary(s, MAX_WORD_PIECE);
    if cut == 0 {
        cut = s.chars().next().map_or(0, char::len_utf8);
    }
    s.split_at(cut)
}
