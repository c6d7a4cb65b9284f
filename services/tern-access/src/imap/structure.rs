//! IMAP's views of a message's MIME structure (RFC 3501 §7.4.2): ENVELOPE, BODY and
//! BODYSTRUCTURE, computed from the parse of `mail-parser` (chosen because it is maintained,
//! tolerant of broken mail, and keeps the byte offsets of every part's header and body, so
//! sizes, line counts and BODY[section] bytes come from the raw message, never from a decoded
//! copy).
//!
//! The rules where RFC 3501 leaves a choice, one each:
//! - ENVELOPE's date, subject, in-reply-to and message-id are the raw field values, unfolded
//!   (encoded words stay encoded: the client decodes them, as RFC 3501 intends).
//! - Address display names are the decoded phrase; a name with non-ASCII characters is sent
//!   as one RFC 2047 encoded word (`=?utf-8?b?...?=`), so the response stays 7-bit.
//! - An address without a domain gets the host `MISSING_DOMAIN`, as Dovecot does, because
//!   NIL there means group syntax.
//! - A part without Content-Type is `text/plain; charset=us-ascii` (RFC 2045 §5.2), and inside
//!   multipart/digest `message/rfc822` (RFC 2046 §5.1.5); a part without
//!   Content-Transfer-Encoding is `7BIT`. So is a multipart whose parts cannot be found (no
//!   boundary parameter, or a boundary that never occurs): RFC 3501 cannot show a multipart
//!   without parts, and its body, which BODY[1] returns, is then plain text.
//! - Parameters are sent as written, names in lower case, except that RFC 2231 continuations
//!   (`name*0`, `name*1`) are joined, as RFC 2231 §3 asks of IMAP servers. A charset-encoded
//!   value (`name*=utf-8''...`) stays encoded under its `name*`, so the response stays 7-bit.
//! - An address that is a bare word without `@` (`postmaster`) is a mailbox name.
//! - Part sizes are the octets of the body as stored; line counts are the number of line
//!   ends, plus one for a last line without one.
//! - Malformed input never fails: whatever mail-parser recovers is described.
//!
//! Output is the exact response syntax (parenthesized lists of quoted strings, literals for
//! anything that cannot be quoted), ready to go after `ENVELOPE ` or `BODYSTRUCTURE `.

use base64::Engine;
use mail_parser::{
    Addr, Address, ContentType, HeaderName, HeaderValue, Message, MessageParser, MessagePart,
    PartType,
};
use std::collections::HashMap;

/// Appends an IMAP `nstring`: NIL, a quoted string, or a literal when the text has CR, LF,
/// NUL or 8-bit octets (RFC 3501 §4.3).
pub fn nstring(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.extend_from_slice(b"NIL"),
        Some(v) => string(out, v),
    }
}

/// Appends an IMAP `string` (quoted, or a literal when quoting cannot carry it).
pub fn string(out: &mut Vec<u8>, v: &[u8]) {
    let quotable = v.len() <= 1024
        && v.iter()
            .all(|b| (0x01..0x80).contains(b) && *b != b'\r' && *b != b'\n');
    if quotable {
        out.push(b'"');
        for &b in v {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", v.len()).as_bytes());
        out.extend_from_slice(v);
    }
}

/// A raw header value: the octets after the colon, unfolded (CRLF before whitespace
/// removed) and trimmed.
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    let start = out
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    out[start..end].to_vec()
}

/// The raw value of the first `name` field of `part`, unfolded.
fn raw_field(msg: &Message<'_>, part: &MessagePart<'_>, name: HeaderName<'_>) -> Option<Vec<u8>> {
    let h = part.headers.iter().find(|h| h.name == name)?;
    let raw = msg
        .raw_message
        .get(h.offset_start as usize..h.offset_end as usize)?;
    Some(unfold(raw))
}

/// A display name for ENVELOPE: ASCII as is, anything else as one encoded word.
fn encode_name(name: &str) -> Vec<u8> {
    if name.is_ascii() {
        name.as_bytes().to_vec()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        format!("=?utf-8?b?{b64}?=").into_bytes()
    }
}

fn address(out: &mut Vec<u8>, a: &Addr<'_>) {
    // mail-parser reads a bare word without "@" ("postmaster") as a name without an
    // address; it is the mailbox name.
    let (name, full) = match (a.address.as_deref(), a.name.as_deref()) {
        (None, Some(word)) if !word.is_empty() && !word.contains(char::is_whitespace) => {
            (None, word)
        }
        (address, name) => (name, address.unwrap_or("")),
    };
    out.push(b'(');
    nstring(
        out,
        name.filter(|n| !n.is_empty()).map(encode_name).as_deref(),
    );
    out.extend_from_slice(b" NIL ");
    let (local, host) = match full.rsplit_once('@') {
        Some((l, h)) => (l, h),
        None => (full, "MISSING_DOMAIN"),
    };
    string(out, local.as_bytes());
    out.push(b' ');
    string(out, host.as_bytes());
    out.push(b')');
}

/// Whether an address names a domain (`local@domain`).
fn has_domain(a: &Addr<'_>) -> bool {
    a.address.as_deref().is_some_and(|full| full.contains('@'))
}

/// An address list (RFC 3501 `env-from` etc.), with RFC 2822 groups as start and end
/// markers.
fn address_list(out: &mut Vec<u8>, value: Option<&HeaderValue<'_>>) {
    let Some(HeaderValue::Address(addr)) = value else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut items = Vec::new();
    match addr {
        Address::List(list) => {
            for a in list {
                address(&mut items, a);
            }
        }
        Address::Group(groups) => {
            for g in groups {
                match &g.name {
                    Some(name) => {
                        items.extend_from_slice(b"(NIL NIL ");
                        string(&mut items, &encode_name(name));
                        items.extend_from_slice(b" NIL)");
                        // A member without a domain is left out of a group (as Dovecot
                        // does): MISSING_DOMAIN is for a bare local part outside one.
                        for a in g.addresses.iter().filter(|a| has_domain(a)) {
                            address(&mut items, a);
                        }
                        items.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => {
                        for a in &g.addresses {
                            address(&mut items, a);
                        }
                    }
                }
            }
        }
    }
    if items.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        out.extend_from_slice(&items);
        out.push(b')');
    }
}

/// ENVELOPE of `msg` (the top-level message or a message/rfc822 part's message).
pub fn envelope(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let Some(root) = msg.parts.first() else {
        return b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_vec();
    };
    let value = |name: HeaderName<'_>| {
        root.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    };
    out.push(b'(');
    nstring(&mut out, raw_field(msg, root, HeaderName::Date).as_deref());
    out.push(b' ');
    nstring(
        &mut out,
        raw_field(msg, root, HeaderName::Subject).as_deref(),
    );
    let from = value(HeaderName::From);
    for (field, fallback) in [
        (from, None),
        (value(HeaderName::Sender), from),
        (value(HeaderName::ReplyTo), from),
        (value(HeaderName::To), None),
        (value(HeaderName::Cc), None),
        (value(HeaderName::Bcc), None),
    ] {
        out.push(b' ');
        let usable = |v: Option<&HeaderValue<'_>>| matches!(v, Some(HeaderValue::Address(_)));
        address_list(&mut out, if usable(field) { field } else { fallback });
    }
    out.push(b' ');
    nstring(
        &mut out,
        raw_field(msg, root, HeaderName::InReplyTo).as_deref(),
    );
    out.push(b' ');
    nstring(
        &mut out,
        raw_field(msg, root, HeaderName::MessageId).as_deref(),
    );
    out.push(b')');
    out
}

fn part_value<'a, 'x>(
    part: &'a MessagePart<'x>,
    name: HeaderName<'_>,
) -> Option<&'a HeaderValue<'x>> {
    part.headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| &h.value)
}

fn content_type<'a, 'x>(part: &'a MessagePart<'x>) -> Option<&'a ContentType<'x>> {
    part_value(part, HeaderName::ContentType).and_then(HeaderValue::as_content_type)
}

/// `("name" "value" ...)` or NIL: the parameters of the raw field value `raw` (a
/// Content-Type or Content-Disposition), with RFC 2231 continuations joined.
fn params(out: &mut Vec<u8>, raw: Option<&[u8]>) {
    let list = raw
        .map(|r| join_continuations(raw_params(r)))
        .unwrap_or_default();
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (name, value)) in list.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, name.as_bytes());
        out.push(b' ');
        string(out, value);
    }
    out.push(b')');
}

/// Index after white space and comments (nested, with quoted pairs) from `i`.
fn skip_cfws(v: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = v.get(i) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            _ if depth > 0 || b.is_ascii_whitespace() => {}
            _ => break,
        }
        i += 1;
    }
    i.min(v.len())
}

/// Index of the next `;` outside quotes and comments from `i` (or the end).
fn next_semicolon(v: &[u8], mut i: usize) -> usize {
    let (mut quoted, mut depth) = (false, 0usize);
    while let Some(&b) = v.get(i) {
        match b {
            b'\\' if quoted || depth > 0 => i += 1,
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            b';' if !quoted && depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    v.len()
}

/// The `attribute=value` pairs after the first `;` of a field value: names in lower case,
/// values unquoted, comments dropped. Anything else is skipped to the next `;`.
fn raw_params(v: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut list = Vec::new();
    let mut i = next_semicolon(v, 0);
    while i < v.len() {
        i = skip_cfws(v, i + 1);
        let start = i;
        while v
            .get(i)
            .is_some_and(|b| !matches!(b, b'=' | b';' | b'(' | b'"') && !b.is_ascii_whitespace())
        {
            i += 1;
        }
        let name = String::from_utf8_lossy(&v[start..i]).to_ascii_lowercase();
        i = skip_cfws(v, i);
        if name.is_empty() || v.get(i) != Some(&b'=') {
            i = next_semicolon(v, i);
            continue;
        }
        i = skip_cfws(v, i + 1);
        let mut value = Vec::new();
        if v.get(i) == Some(&b'"') {
            i += 1;
            while let Some(&b) = v.get(i) {
                i += 1;
                match b {
                    b'"' => break,
                    b'\\' if i < v.len() => {
                        value.push(v[i]);
                        i += 1;
                    }
                    _ => value.push(b),
                }
            }
        } else {
            while let Some(&b) = v.get(i) {
                if matches!(b, b';' | b'(') || b.is_ascii_whitespace() {
                    break;
                }
                value.push(b);
                i += 1;
            }
        }
        list.push((name, value));
        i = next_semicolon(v, i);
    }
    list
}

/// Joins RFC 2231 continuations (`n*0`, `n*1*`, ...) into one parameter, in section
/// order, where the first piece stood: `n` if no piece is charset-encoded, else `n*` with
/// the pieces as written (a plain piece percent-encoded, so the whole stays one encoded
/// value). Other parameters pass unchanged, in order.
fn join_continuations(list: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(list.len());
    // Base name -> (its slot in `out`, pieces as (section, encoded, value)).
    type Pieces = Vec<(u32, bool, Vec<u8>)>;
    let mut continued: HashMap<String, (usize, Pieces)> = HashMap::new();
    for (name, value) in list {
        let (name, encoded) = match name.strip_suffix('*') {
            Some(n) => (n.to_string(), true),
            None => (name, false),
        };
        let section = name
            .rsplit_once('*')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(base, n)| Some((base.to_string(), n.parse::<u32>().ok()?)));
        match section {
            Some((base, n)) => {
                let slot = out.len();
                let entry = continued.entry(base).or_insert_with(|| {
                    out.push((String::new(), Vec::new()));
                    (slot, Vec::new())
                });
                entry.1.push((n, encoded, value));
            }
            None if encoded => out.push((format!("{name}*"), value)),
            None => out.push((name, value)),
        }
    }
    for (base, (slot, mut pieces)) in continued {
        pieces.sort_by_key(|p| p.0);
        let any_encoded = pieces.iter().any(|p| p.1);
        let mut value = Vec::new();
        for (_, encoded, piece) in pieces {
            if any_encoded && !encoded {
                for b in piece {
                    // RFC 2231 attribute-char: printable US-ASCII but "*", "'", "%" and
                    // the tspecials.
                    if b.is_ascii_graphic() && !b"*'%()<>@,;:\\\"/[]?=".contains(&b) {
                        value.push(b);
                    } else {
                        value.extend_from_slice(format!("%{b:02X}").as_bytes());
                    }
                }
            } else {
                value.extend_from_slice(&piece);
            }
        }
        out[slot] = (
            if any_encoded {
                format!("{base}*")
            } else {
                base
            },
            value,
        );
    }
    out
}

/// Extension data shared by single and multipart bodies: disposition, language, location.
fn disposition_language_location(out: &mut Vec<u8>, msg: &Message<'_>, part: &MessagePart<'_>) {
    out.push(b' ');
    match part_value(part, HeaderName::ContentDisposition).and_then(HeaderValue::as_content_type) {
        None => out.extend_from_slice(b"NIL"),
        Some(d) => {
            out.push(b'(');
            string(out, d.c_type.as_bytes());
            out.push(b' ');
            params(
                out,
                raw_field(msg, part, HeaderName::ContentDisposition).as_deref(),
            );
            out.push(b')');
        }
    }
    out.push(b' ');
    match part_value(part, HeaderName::ContentLanguage) {
        Some(HeaderValue::Text(t)) => string(out, t.as_bytes()),
        Some(HeaderValue::TextList(l)) if !l.is_empty() => {
            out.push(b'(');
            for (i, t) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string(out, t.as_bytes());
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(
        out,
        raw_field(msg, part, HeaderName::ContentLocation).as_deref(),
    );
}

fn lines(body: &[u8]) -> usize {
    let n = body.iter().filter(|b| **b == b'\n').count();
    n + usize::from(!body.is_empty() && !body.ends_with(b"\n"))
}

/// BODYSTRUCTURE (`extensible`) or BODY of `msg`.
pub fn body_structure(msg: &Message<'_>, extensible: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    part_structure(&mut out, msg, 0, extensible, false, 0);
    out
}

/// Nesting bound: deeper structures are described as opaque parts.
const MAX_DEPTH: usize = 32;

fn part_structure(
    out: &mut Vec<u8>,
    msg: &Message<'_>,
    id: usize,
    ext: bool,
    in_digest: bool,
    depth: usize,
) {
    let Some(part) = msg.parts.get(id) else {
        out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 0 0)");
        return;
    };
    let ct = content_type(part);
    if let (PartType::Multipart(children), true) = (&part.body, depth < MAX_DEPTH) {
        out.push(b'(');
        let digest = ct
            .and_then(|c| c.c_subtype.as_deref())
            .is_some_and(|s| s.eq_ignore_ascii_case("digest"));
        for &child in children {
            part_structure(out, msg, child as usize, ext, digest, depth + 1);
        }
        if children.is_empty() {
            // RFC 3501 needs at least one part; an empty multipart is shown as an empty text.
            out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 0 0)");
        }
        out.push(b' ');
        let subtype = ct.and_then(|c| c.c_subtype.as_deref()).unwrap_or("mixed");
        string(out, subtype.as_bytes());
        if ext {
            out.push(b' ');
            params(
                out,
                raw_field(msg, part, HeaderName::ContentType).as_deref(),
            );
            disposition_language_location(out, msg, part);
        }
        out.push(b')');
        return;
    }
    // A multipart mail-parser could not split (no boundary, or one that never occurs), or
    // one past the nesting bound, is described with the defaults of a part without
    // Content-Type, as plain text: a one-part body cannot have a multipart type.
    let unsplit_multipart = ct.is_some_and(|c| c.c_type.eq_ignore_ascii_case("multipart"));
    let ct = ct.filter(|_| !unsplit_multipart);
    let in_digest = in_digest && !unsplit_multipart;
    let (ctype, subtype): (String, String) = match ct {
        Some(c) => (
            c.c_type.to_string(),
            c.c_subtype
                .as_deref()
                .unwrap_or(if c.c_type.eq_ignore_ascii_case("text") {
                    "plain"
                } else {
                    "octet-stream"
                })
                .to_string(),
        ),
        None if in_digest => ("message".into(), "rfc822".into()),
        None => ("text".into(), "plain".into()),
    };
    let body = msg
        .raw_message
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    out.push(b'(');
    string(out, ctype.as_bytes());
    out.push(b' ');
    string(out, subtype.as_bytes());
    out.push(b' ');
    if ct.is_none() && !in_digest {
        out.extend_from_slice(b"(\"charset\" \"us-ascii\")");
    } else if ct.is_none() {
        out.extend_from_slice(b"NIL");
    } else {
        params(
            out,
            raw_field(msg, part, HeaderName::ContentType).as_deref(),
        );
    }
    out.push(b' ');
    // Content-ID, -Description and -Transfer-Encoding are sent as written (mail-parser's
    // decoded forms drop the angle brackets of an id, for one).
    nstring(out, raw_field(msg, part, HeaderName::ContentId).as_deref());
    out.push(b' ');
    nstring(
        out,
        raw_field(msg, part, HeaderName::ContentDescription).as_deref(),
    );
    out.push(b' ');
    let encoding = raw_field(msg, part, HeaderName::ContentTransferEncoding)
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| b"7BIT".to_vec());
    string(out, &encoding);
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let is_message =
        ctype.eq_ignore_ascii_case("message") && subtype.eq_ignore_ascii_case("rfc822");
    if is_message {
        // message/rfc822 always carries an envelope, a body and a line count; a body
        // mail-parser did not take as a message is parsed here (and an empty one described
        // as such) so the syntax holds for any input.
        let reparsed;
        let inner = match &part.body {
            PartType::Message(inner) => Some(inner),
            _ => {
                reparsed = MessageParser::default().parse(body);
                reparsed.as_ref()
            }
        };
        out.push(b' ');
        match inner {
            Some(inner) if depth < MAX_DEPTH => {
                out.extend_from_slice(&envelope(inner));
                out.push(b' ');
                part_structure(out, inner, 0, ext, false, depth + 1);
            }
            _ => out.extend_from_slice(
                b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" NIL NIL NIL \"7BIT\" 0 0)",
            ),
        }
        out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
    } else if ctype.eq_ignore_ascii_case("text") {
        out.extend_from_slice(format!(" {}", lines(body)).as_bytes());
    }
    if ext {
        out.push(b' ');
        nstring(out, raw_field(msg, part, HeaderName::ContentMd5).as_deref());
        disposition_language_location(out, msg, part);
    }
    out.push(b')');
}

#[cfg(test)]
#[path = "structure_tests.rs"]
mod tests;
