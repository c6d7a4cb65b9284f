//! The bytes of `BODY[section]<partial>` (RFC 3501 §6.4.5), cut from the raw message by the
//! part offsets mail-parser records, so what a client reads is exactly what was stored.
//!
//! Part numbers follow RFC 3501: the children of a multipart are 1..n; a message that is not
//! multipart has one part, 1, its body; the part numbers below a message/rfc822 part are
//! those of the message it carries. HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT and TEXT apply
//! to the whole message (no part number) or to a message/rfc822 part; MIME to any numbered
//! part.

use mail_parser::{Message, MessagePart, PartType};

/// What of a part is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    /// The whole part (or message).
    All,
    /// The header, with the empty line that ends it.
    Header,
    /// Only these header fields (names compared without case), with the ending empty line.
    HeaderFields(Vec<String>),
    /// Every header field but these.
    HeaderFieldsNot(Vec<String>),
    /// The body of a message.
    Text,
    /// The MIME header of a numbered part.
    Mime,
}

/// A section spec: a part path (empty for the whole message) and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Part numbers, 1-based.
    pub part: Vec<u32>,
    /// What of the part.
    pub text: Text,
}

/// Deepest part path followed (more than any real message has).
const MAX_PATH: usize = 64;

/// Where a path led: a part of a message.
struct Target<'m, 'x> {
    msg: &'m Message<'x>,
    part: &'m MessagePart<'x>,
}

fn root<'m, 'x>(msg: &'m Message<'x>) -> Option<Target<'m, 'x>> {
    Some(Target {
        msg,
        part: msg.parts.first()?,
    })
}

/// Follows a part path; `None` when the message has no such part.
fn resolve<'m, 'x>(msg: &'m Message<'x>, path: &[u32]) -> Option<Target<'m, 'x>> {
    if path.len() > MAX_PATH {
        return None;
    }
    let mut at = root(msg)?;
    // Whether `at` is the root part of its message (where "1" means the body of a
    // non-multipart message).
    let mut at_message_root = true;
    for &n in path {
        let index = (n as usize).checked_sub(1)?;
        // Below a message/rfc822 part come the parts of the message it carries.
        if let PartType::Message(inner) = &at.part.body {
            if !at_message_root {
                at = root(inner)?;
                at_message_root = true;
            }
        }
        match &at.part.body {
            PartType::Multipart(children) => {
                let id = *children.get(index)? as usize;
                at = Target {
                    msg: at.msg,
                    part: at.msg.parts.get(id)?,
                };
                at_message_root = false;
            }
            _ if at_message_root && index == 0 => at_message_root = false,
            _ => return None,
        }
    }
    Some(at)
}

fn slice<'a>(msg: &'a Message<'_>, from: u32, to: u32) -> &'a [u8] {
    msg.raw_message
        .get(from as usize..to as usize)
        .unwrap_or_default()
}

/// Header lines of `header` (with its ending empty line) whose field names are, or with
/// `keep = false` are not, in `names`.
fn filter_header(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len().min(4096));
    let mut current_keep = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line
                .iter()
                .position(|b| *b == b':')
                .map(|i| line[..i].trim_ascii_end())
                .unwrap_or(b"");
            let listed = names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
            current_keep = !name.is_empty() && listed == keep;
        }
        if current_keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes of `section` in `msg`, or `None` when the message has no such part (the
/// caller answers with an empty string, as Dovecot does, rather than failing the FETCH).
pub fn section_bytes(msg: &Message<'_>, section: &Section) -> Option<Vec<u8>> {
    let target = resolve(msg, &section.part)?;
    // HEADER/TEXT of a numbered part are those of the message it carries.
    let message_view = |t: &Target<'_, '_>| -> Option<(Vec<u8>, Vec<u8>)> {
        let (m, p, end) = match (&t.part.body, section.part.is_empty()) {
            (_, true) => (t.msg, t.part, t.part.offset_end),
            (PartType::Message(inner), false) => {
                let p = inner.parts.first()?;
                // The carried message's text runs to the end of the message/rfc822 body.
                // mail-parser ends a multipart it carries at its close delimiter when no
                // outer delimiter follows (the CRLF and epilogue after it would be lost),
                // so the part's own end is used when both share the raw message (an
                // encoded message/rfc822 is parsed from its decoded copy instead).
                let shared = std::ptr::eq(inner.raw_message.as_ref(), t.msg.raw_message.as_ref());
                let end = if shared {
                    t.part.offset_end
                } else {
                    p.offset_end
                };
                (inner, p, end)
            }
            _ => return None,
        };
        Some((
            slice(m, p.offset_header, p.offset_body).to_vec(),
            slice(m, p.offset_body, end).to_vec(),
        ))
    };
    let bytes = match &section.text {
        Text::All if section.part.is_empty() => {
            slice(msg, target.part.offset_header, target.part.offset_end).to_vec()
        }
        Text::All => slice(target.msg, target.part.offset_body, target.part.offset_end).to_vec(),
        Text::Mime => {
            if section.part.is_empty() {
                return None;
            }
            slice(
                target.msg,
                target.part.offset_header,
                target.part.offset_body,
            )
            .to_vec()
        }
        Text::Header => message_view(&target)?.0,
        Text::Text => message_view(&target)?.1,
        Text::HeaderFields(names) => filter_header(&message_view(&target)?.0, names, true),
        Text::HeaderFieldsNot(names) => filter_header(&message_view(&target)?.0, names, false),
    };
    Some(bytes)
}

/// `<start.count>`: the octets from `start`, at most `count` of them (empty past the end).
pub fn partial(bytes: &[u8], start: u32, count: u32) -> &[u8] {
    let start = (start as usize).min(bytes.len());
    let end = start.saturating_add(count as usize).min(bytes.len());
    &bytes[start..end]
}

#[cfg(test)]
#[path = "section_tests.rs"]
mod tests;
