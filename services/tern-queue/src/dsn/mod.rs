//! Delivery status notifications (RFC 3464): what the queue sends back to a message's sender
//! when recipients fail permanently, outlive the queue lifetime, or (on request) are delayed
//! or delivered.
//!
//! [`build`] is a pure function: the caller passes the report's facts (times, ids, the MIME
//! boundary, the recipients' outcomes) and the original message, and gets the notification's
//! octets back, ready to enqueue with the null reverse-path `<>`. No clock, randomness or I/O
//! is used here, so the output is reproducible and the whole builder is unit-tested by
//! parsing what it writes.
//!
//! The notification is a `multipart/report; report-type=delivery-status` (RFC 6522) of three
//! parts: a `text/plain` explanation for people, the `message/delivery-status` fields for
//! programs, and the original (RFC 3461 RET): `message/rfc822` with the headers and the first
//! [`MAX_RETURNED_BODY`] octets of the body cut at a line boundary, or `text/rfc822-headers`.
//!
//! Choices worth knowing, and why:
//!
//! * Everything that came from outside — remote SMTP replies, addresses, ORCPT and ENVID,
//!   even the caller's ids — is *untrusted*: it is made single-line (line breaks become
//!   spaces, other control characters are dropped), capped in length, and folded so that no
//!   line exceeds 998 octets (RFC 5322 §2.1.1). Our own lines never start with `--`, and the
//!   boundary is checked against everything in the body and extended wherever it occurs
//!   (even mid-line, which some parsers also take for a delimiter), so no content can end a
//!   part or start a new one.
//! * `message/delivery-status` is kept 7-bit: non-ASCII in a field is written as RFC 6533's
//!   `\x{HEX}`, and a non-ASCII final recipient uses the `utf-8` address type. The human
//!   part and the returned message may carry UTF-8 / 8-bit octets, and are then labelled
//!   `Content-Transfer-Encoding: 8bit` (as is the whole report), so the caller knows to send
//!   it with `BODY=8BITMIME`.
//! * ORCPT and ENVID are passed as received in SMTP, that is xtext-encoded (RFC 3461 §4);
//!   the report carries them decoded, as RFC 3464 expects.
//! * RET=FULL applies to *failed* DSNs only (RFC 3461 §4.3): a report without a failed
//!   recipient (a delay warning, a success report) returns the headers only.
//! * The returned copy is the original in canonical CRLF form with two repairs that keep the
//!   report itself transmissible: NUL octets are removed and lines longer than 998 octets are
//!   broken (a header line is folded, at whitespace when there is some). The header block is
//!   capped at [`MAX_RETURNED_HEADERS`] at a field boundary, and only the first
//!   256 KiB of the original are read at all, however large it is.
//! * Syntactically invalid Status values are replaced by `X.0.0` of the action's class, so
//!   a report is never rejected by a strict parser for the caller's mistake.

mod text;
mod wire;

use std::fmt::Write as _;

use tern_mail::{date, lines};
use tern_smtp_proto::{enhanced, xtext};

use text::{address, message_id, one_line, push_field, wrap};
use wire::{
    cap_header_block, choose_boundary, limit_line_length, push_delimiter, push_line,
    truncate_at_line,
};

/// How much of the original body a failure report carries back (in octets, after conversion
/// to CRLF), so that the sender can recognise the message without the report growing as
/// large as the message it reports on.
pub const MAX_RETURNED_BODY: usize = 64 * 1024;

/// How much of the original header block a report carries back, cut at a field boundary,
/// so that a message with an absurd header block cannot make an absurd report.
pub const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// How much of the original is read: room for both limits and then some, so that a large
/// message is not copied whole only to return its first part.
const SCAN_LIMIT: usize = 2 * (MAX_RETURNED_HEADERS + MAX_RETURNED_BODY);
/// The longest line RFC 5322 §2.1.1 and RFC 5321 §4.5.3.1.6 allow, without its CRLF.
const MAX_LINE: usize = 998;
/// Where fields and text are folded or wrapped when possible (RFC 5322's SHOULD of 78).
const SOFT_LINE: usize = 76;
/// The most one untrusted value (a diagnostic, an address) contributes to a report.
const MAX_VALUE: usize = 4096;
/// The longest piece of an unbreakable word put on one folded line.
const MAX_WORD_PIECE: usize = 900;
/// The longest boundary we use: RFC 2046 allows 70 characters, the rest is room for a suffix.
const MAX_BOUNDARY: usize = 60;

/// What happened to one recipient (RFC 3464 §2.3.3); it decides the report's wording and,
/// for failures, whether the original's body is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Not delivered, and will not be: a permanent failure or an expired queue lifetime.
    Failed,
    /// Not delivered yet; still being retried (a delay warning).
    Delayed,
    /// Delivered to the recipient's mailbox (reported only on NOTIFY=SUCCESS).
    Delivered,
    /// Handed on to a system that does not send delivery notifications.
    Relayed,
    /// Delivered to an alias or list, which expanded it to further recipients.
    Expanded,
}

impl Action {
    /// The `Action:` field value, so callers and logs use RFC 3464's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }

    /// The status used when the caller's is not a valid RFC 3463 code.
    fn fallback_status(self) -> &'static str {
        match self {
            Action::Failed => "5.0.0",
            Action::Delayed => "4.0.0",
            Action::Delivered | Action::Relayed | Action::Expanded => "2.0.0",
        }
    }
}

/// How much of the original goes back with the report: the sender's RET parameter (RFC 3461
/// §4.3), `FULL` or `HDRS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReturnContent {
    /// RET=FULL (and the default): the headers and the first part of the body.
    #[default]
    Full,
    /// RET=HDRS: the header block only.
    HeadersOnly,
}

/// The outcome for one recipient, as it appears in the per-recipient block of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address delivery was attempted to (`Final-Recipient: rfc822; ADDRESS`).
    pub address: String,
    /// The RCPT's ORCPT parameter as received, still xtext-encoded, e.g. `rfc822;a+2Bb@x`
    /// (`Original-Recipient`); `None` when the client sent none.
    pub original_recipient: Option<String>,
    /// What happened (`Action`).
    pub action: Action,
    /// The RFC 3463 enhanced status, e.g. `5.1.1` (`Status`); see [`enhanced::status_for_reply`].
    pub status: String,
    /// The host that gave the final answer (`Remote-MTA: dns; HOST`), if any.
    pub remote_mta: Option<String>,
    /// `TYPE; TEXT` as in RFC 3464 §2.3.6, e.g. `smtp; 550 5.1.1 <x>: user unknown`. Without a
    /// type, `smtp` is assumed when the text starts with a reply code, else `X-Tern`. A
    /// multi-line reply may be passed with its line breaks: they become spaces.
    pub diagnostic: Option<String>,
    /// When delivery was last tried, Unix seconds (`Last-Attempt-Date`).
    pub last_attempt: Option<i64>,
    /// Until when a delayed recipient is retried, Unix seconds (`Will-Retry-Until`; written
    /// for [`Action::Delayed`] only, as RFC 3464 §2.3.9 defines it).
    pub will_retry_until: Option<i64>,
}

/// Everything a report says about the message as a whole; the caller supplies the ids and
/// times so that [`build`] stays pure.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Our host name (`Reporting-MTA: dns; HOST`, and the text's "mail system at").
    pub reporting_mta: &'a str,
    /// The MAIL FROM's ENVID as received (xtext-encoded), if any (`Original-Envelope-Id`).
    pub envelope_id: Option<&'a str>,
    /// When the original entered the queue, Unix seconds (`Arrival-Date`).
    pub arrival_date: i64,
    /// The original MAIL FROM, to whom the report goes (`To:`). Never call [`build`] for the
    /// null reverse-path: a notification about a notification is not sent (RFC 5321 §4.5.5).
    pub sender: &'a str,
    /// The report's author address, e.g. `MAILER-DAEMON@mx.example.test` (`From:`).
    pub from: &'a str,
    /// The report's own Message-ID without `<>`; the caller makes it unique.
    pub message_id: &'a str,
    /// The MIME boundary; the caller makes it random. Characters RFC 2046 does not allow are
    /// dropped, and it is extended if the content happens to contain it.
    pub boundary: &'a str,
    /// The report's date, Unix seconds (`Date:`).
    pub now: i64,
    /// One entry per recipient reported on; at least one is expected.
    pub recipients: &'a [RecipientReport],
    /// What the sender asked to get back (RET).
    pub return_content: ReturnContent,
}

/// Builds the complete notification (headers and body, CRLF line ends) for `report`, carrying
/// back `original` (the message as queued; any line ends) as [`Report::return_content`] and
/// the actions allow.
pub fn build(report: &Report<'_>, original: &[u8]) -> Vec<u8> {
    let kind = Kind::of(report.recipients);
    let mta = one_line(report.reporting_mta, true).replace(' ', "");
    let mta = if mta.is_empty() {
        "localhost".to_string()
    } else {
        mta
    };

    let returned = Returned::new(
        original,
        report.return_content == ReturnContent::Full && kind == Kind::Failure,
    );
    let text = human_part(report, kind, &mta, &returned);
    let status = status_part(report, &mta);
    let boundary = choose_boundary(
        report.boundary,
        &[text.as_bytes(), status.as_bytes(), &returned.content],
    );

    let text_8bit = !text.is_ascii();
    let returned_8bit = !returned.content.is_ascii();
    let mut out = Vec::with_capacity(text.len() + status.len() + returned.content.len() + 2048);

    // The report's own header.
    let from = address(report.from);
    let from = if from.is_empty() {
        format!("MAILER-DAEMON@{mta}")
    } else {
        from
    };
    push_line(&mut out, &format!("From: Mail Delivery System <{from}>"));
    push_line(&mut out, &format!("To: <{}>", address(report.sender)));
    push_line(&mut out, &format!("Subject: {}", kind.subject()));
    push_line(&mut out, &format!("Date: {}", date::rfc5322(report.now)));
    let id = message_id(report.message_id);
    let id = if id.is_empty() {
        format!("dsn.{}@{mta}", report.now)
    } else {
        id
    };
    push_line(&mut out, &format!("Message-ID: <{id}>"));
    push_line(&mut out, "MIME-Version: 1.0");
    push_line(&mut out, "Auto-Submitted: auto-replied");
    push_line(
        &mut out,
        "Content-Type: multipart/report; report-type=delivery-status;",
    );
    push_line(&mut out, &format!("\tboundary=\"{boundary}\""));
    if text_8bit || returned_8bit {
        push_line(&mut out, "Content-Transfer-Encoding: 8bit");
    }
    push_line(&mut out, "");
    push_line(&mut out, "This is a MIME-encapsulated message.");

    // Part 1: for people.
    push_delimiter(&mut out, &boundary);
    push_line(&mut out, "Content-Description: Notification");
    push_line(&mut out, "Content-Type: text/plain; charset=utf-8");
    if text_8bit {
        push_line(&mut out, "Content-Transfer-Encoding: 8bit");
    }
    push_line(&mut out, "");
    out.extend_from_slice(text.as_bytes());

    // Part 2: for programs.
    push_delimiter(&mut out, &boundary);
    push_line(&mut out, "Content-Description: Delivery report");
    push_line(&mut out, "Content-Type: message/delivery-status");
    push_line(&mut out, "");
    out.extend_from_slice(status.as_bytes());

    // Part 3: the original, or its headers.
    if let Some(carried) = returned.carried {
        push_delimiter(&mut out, &boundary);
        if carried == Carried::Message {
            push_line(&mut out, "Content-Description: Undelivered Message");
            push_line(&mut out, "Content-Type: message/rfc822");
        } else {
            push_line(&mut out, "Content-Description: Message Headers");
            push_line(&mut out, "Content-Type: text/rfc822-headers");
        }
        if returned_8bit {
            push_line(&mut out, "Content-Transfer-Encoding: 8bit");
        }
        push_line(&mut out, "");
        out.extend_from_slice(&returned.content);
    }

    push_line(&mut out, "");
    push_line(&mut out, &format!("--{boundary}--"));
    out
}

/// What the report as a whole is about; it picks the subject, the wording and RET handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// At least one recipient failed.
    Failure,
    /// None failed, at least one is delayed.
    Delay,
    /// Only successes (delivered, relayed, expanded).
    Success,
}

impl Kind {
    fn of(recipients: &[RecipientReport]) -> Kind {
        if recipients.is_empty() || recipients.iter().any(|r| r.action == Action::Failed) {
            Kind::Failure
        } else if recipients.iter().any(|r| r.action == Action::Delayed) {
            Kind::Delay
        } else {
            Kind::Success
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Kind::Failure => "Undelivered Mail Returned to Sender",
            Kind::Delay => "Delayed Mail (still being retried)",
            Kind::Success => "Successful Mail Delivery Report",
        }
    }
}

/// What the third part carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    /// A whole message: headers, blank line, the (possibly truncated) body.
    Message,
    /// Only the header block.
    Headers,
}

/// The part of the original that goes back, already made safe to carry.
struct Returned {
    /// `None` when there is nothing to return (an empty original).
    carried: Option<Carried>,
    content: Vec<u8>,
    /// Whether the body was cut to [`MAX_RETURNED_BODY`].
    body_truncated: bool,
}

impl Returned {
    fn new(original: &[u8], want_body: bool) -> Returned {
        // Only a prefix can be returned, so only a prefix is copied and converted; its last
        // line may be cut short, so it is dropped.
        let cut_short = original.len() > SCAN_LIMIT;
        let mut canonical = lines::canonical(&original[..original.len().min(SCAN_LIMIT)]);
        if cut_short {
            let before_last = canonical.len().saturating_sub(2);
            let keep = canonical[..before_last]
                .windows(2)
                .rposition(|w| w == b"\r\n")
                .map_or(0, |at| at + 2);
            canonical.truncate(keep);
        }
        canonical.retain(|&b| b != 0);
        let (headers, body) = tern_mail::header::split(&canonical);
        let headers = limit_line_length(headers, true);
        let headers = cap_header_block(&headers, MAX_RETURNED_HEADERS);
        match body {
            Some(body) if want_body => {
                let body = limit_line_length(body, false);
                let kept = truncate_at_line(&body, MAX_RETURNED_BODY);
                let mut content = Vec::with_capacity(headers.len() + 2 + kept.len());
                content.extend_from_slice(headers);
                content.extend_from_slice(b"\r\n");
                content.extend_from_slice(kept);
                Returned {
                    carried: Some(Carried::Message),
                    content,
                    body_truncated: cut_short || kept.len() < body.len(),
                }
            }
            _ if headers.is_empty() => Returned {
                carried: None,
                content: Vec::new(),
                body_truncated: false,
            },
            _ => Returned {
                carried: Some(Carried::Headers),
                content: headers.to_vec(),
                body_truncated: false,
            },
        }
    }
}

/// The human-readable first part.
fn human_part(report: &Report<'_>, kind: Kind, mta: &str, returned: &Returned) -> String {
    let mut t = String::new();
    wrap(
        &mut t,
        "",
        "    ",
        &format!("This is the mail system at {mta}."),
    );
    t.push_str("\r\n");
    let intro = match kind {
        Kind::Failure => {
            let mut s = "Your message could not be delivered to one or more of its \
                         recipients. The reason for each is given below."
                .to_string();
            if report
                .recipients
                .iter()
                .any(|r| r.action == Action::Delayed)
            {
                s.push_str(
                    " Recipients marked \"delayed\" are still being retried; you will be \
                     told if delivery to them fails too.",
                );
            }
            s
        }
        Kind::Delay => "Your message has not been delivered yet to the recipients listed \
                        below. The mail system is still trying, so you do not need to send \
                        it again; you will be told if delivery finally fails."
            .to_string(),
        Kind::Success => "This is the delivery report you asked for when you sent your \
                          message; what became of it is listed below for each recipient."
            .to_string(),
    };
    wrap(&mut t, "", "", &intro);
    let attached = match returned.carried {
        Some(Carried::Message) if returned.body_truncated => Some(format!(
            "A copy of your message is attached; only the first part of its body (up to {} \
             KiB) is included.",
            MAX_RETURNED_BODY / 1024
        )),
        Some(Carried::Message) => Some("A copy of your message is attached.".to_string()),
        Some(Carried::Headers) => Some("The headers of your message are attached.".to_string()),
        None => None,
    };
    if let Some(attached) = attached {
        t.push_str("\r\n");
        wrap(&mut t, "", "", &attached);
    }

    for r in report.recipients {
        t.push_str("\r\n");
        let outcome = match r.action {
            Action::Failed => "delivery failed",
            Action::Delayed => "delivery delayed, still trying",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed to a system that does not send delivery reports",
            Action::Expanded => "delivered to a list or alias, which passed it on",
        };
        let addr = one_line(
            r.address
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>'),
            false,
        );
        wrap(&mut t, "", "    ", &format!("<{addr}>: {outcome}"));
        let status = status_value(r);
        wrap(&mut t, "    ", "      ", &format!("Status: {status}"));
        if let Some(host) = r.remote_mta.as_deref().map(|h| one_line(h, false)) {
            if !host.is_empty() {
                wrap(&mut t, "    ", "      ", &format!("Remote server: {host}"));
            }
        }
        if let Some((kind, text)) = r.diagnostic.as_deref().and_then(|d| diagnostic(d, false)) {
            let label = if kind.eq_ignore_ascii_case("smtp") {
                "The remote server said"
            } else {
                "Reason"
            };
            wrap(&mut t, "    ", "      ", &format!("{label}: {text}"));
        }
        if let Some(at) = r.last_attempt {
            let line = format!("Last attempt: {}", date::rfc5322(at));
            wrap(&mut t, "    ", "      ", &line);
        }
        if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            let line = format!("Will keep trying until: {}", date::rfc5322(until));
            wrap(&mut t, "    ", "      ", &line);
        }
    }
    t
}

/// The `message/delivery-status` body: the per-message fields, then one block per recipient.
fn status_part(report: &Report<'_>, mta: &str) -> String {
    let mut s = String::new();
    push_field(&mut s, "Reporting-MTA", &format!("dns; {mta}"));
    if let Some(envid) = report.envelope_id {
        let envid = one_line(&String::from_utf8_lossy(&xtext::decode_lossy(envid)), true);
        if !envid.is_empty() {
            push_field(&mut s, "Original-Envelope-Id", &envid);
        }
    }
    push_field(&mut s, "Arrival-Date", &date::rfc5322(report.arrival_date));

    for r in report.recipients {
        s.push_str("\r\n");
        if let Some(orcpt) = r.original_recipient.as_deref().and_then(original_recipient) {
            push_field(&mut s, "Original-Recipient", &orcpt);
        }
        push_field(&mut s, "Final-Recipient", &final_recipient(&r.address));
        push_field(&mut s, "Action", r.action.as_str());
        push_field(&mut s, "Status", status_value(r));
        if let Some(host) = r.remote_mta.as_deref() {
            let host = one_line(host, true).replace(' ', "");
            if !host.is_empty() {
                push_field(&mut s, "Remote-MTA", &format!("dns; {host}"));
            }
        }
        if let Some((kind, text)) = r.diagnostic.as_deref().and_then(|d| diagnostic(d, true)) {
            push_field(&mut s, "Diagnostic-Code", &format!("{kind}; {text}"));
        }
        if let Some(at) = r.last_attempt {
            push_field(&mut s, "Last-Attempt-Date", &date::rfc5322(at));
        }
        if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            push_field(&mut s, "Will-Retry-Until", &date::rfc5322(until));
        }
    }
    s
}

/// The recipient's Status if it is a valid RFC 3463 code, else the action's fallback.
fn status_value(r: &RecipientReport) -> &str {
    let status = r.status.trim();
    if enhanced::is_valid(status) {
        status
    } else {
        r.action.fallback_status()
    }
}

/// `Final-Recipient`'s value: `rfc822; ADDR`, or RFC 6533's `utf-8; ` with `\x{HEX}` escapes
/// for an internationalised address, so that the part stays 7-bit.
fn final_recipient(address: &str) -> String {
    let addr = address.trim().trim_start_matches('<').trim_end_matches('>');
    if addr.is_ascii() {
        return format!("rfc822; {}", one_line(addr, true).replace(' ', ""));
    }
    let mut out = String::from("utf-8; ");
    let start = out.len();
    for c in addr.chars() {
        if out.len() - start >= MAX_VALUE {
            break;
        }
        match c {
            // QCHAR excludes "+", "=" and "\" (RFC 6533 §3); spaces and controls go too.
            '!'..='*' | ','..='<' | '>'..='[' | ']'..='~' => out.push(c),
            c if c.is_control() || c.is_whitespace() => {}
            c => {
                let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
            }
        }
    }
    out
}

/// `Original-Recipient`'s value from an ORCPT parameter `TYPE;XTEXT`: the address decoded
/// from xtext; `None` when the parameter is malformed.
fn original_recipient(orcpt: &str) -> Option<String> {
    let (kind, addr) = orcpt.split_once(';')?;
    let kind = kind.trim();
    let atom = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if kind.is_empty() || kind.len() > 32 || !kind.chars().all(atom) {
        return None;
    }
    let addr = one_line(
        &String::from_utf8_lossy(&xtext::decode_lossy(addr.trim())),
        true,
    );
    (!addr.is_empty()).then(|| format!("{kind}; {addr}"))
}

/// Splits a diagnostic `TYPE; TEXT` and cleans the text; `None` when there is no text.
fn diagnostic(d: &str, ascii: bool) -> Option<(String, String)> {
    let atom = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let (kind, text) = match d.split_once(';') {
        Some((k, t))
            if !k.trim().is_empty() && k.trim().len() <= 32 && k.trim().chars().all(atom) =>
        {
            (k.trim().to_string(), t)
        }
        _ => {
            let code = d.trim_start().as_bytes();
            let smtp = code.len() >= 3 && code[..3].iter().all(u8::is_ascii_digit);
            (if smtp { "smtp" } else { "X-Tern" }.to_string(), d)
        }
    };
    let text = one_line(text, ascii);
    (!text.is_empty()).then_some((kind, text))
}

#[cfg(test)]
mod tests;
