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
mod tests {
    use super::wire::find;
    use super::*;
    use mail_parser::{Message, MessageParser, MimeHeaders};
    use tern_smtp_proto::enhanced::status_for_reply;

    const BOUNDARY: &str = "tern-dsn-q1/0123456789abcdef";
    const ORIGINAL: &[u8] = b"From: Alice <alice@example.test>\n\
        To: bob@remote.test, carol@slow.test\n\
        Subject: Hello\n\
        Message-ID: <m1@example.test>\n\
        \n\
        Hello Bob,\n\
        see you on Monday.\n";
    const NOW: i64 = 1_672_653_600; // Mon, 02 Jan 2023 10:00:00 +0000

    fn failed() -> RecipientReport {
        RecipientReport {
            address: "bob@remote.test".into(),
            original_recipient: Some("rfc822;Bob+2Btag@remote.test".into()),
            action: Action::Failed,
            status: status_for_reply(550, Some("5.1.1")),
            remote_mta: Some("mx1.remote.test".into()),
            diagnostic: Some("smtp; 550 5.1.1 <bob@remote.test>: user unknown".into()),
            last_attempt: Some(NOW - 60),
            will_retry_until: None,
        }
    }

    fn delayed() -> RecipientReport {
        RecipientReport {
            address: "carol@slow.test".into(),
            original_recipient: None,
            action: Action::Delayed,
            status: status_for_reply(451, Some("4.4.1")),
            remote_mta: Some("mx.slow.test".into()),
            diagnostic: Some("smtp; 451 4.4.1 try again later".into()),
            last_attempt: Some(NOW - 30),
            will_retry_until: Some(NOW + 4 * 86_400),
        }
    }

    fn report(recipients: &[RecipientReport], ret: ReturnContent) -> Report<'_> {
        Report {
            reporting_mta: "mx.example.test",
            envelope_id: Some("QQ314159+2Bx"),
            arrival_date: NOW - 3600,
            sender: "alice@example.test",
            from: "MAILER-DAEMON@mx.example.test",
            message_id: "q1.dsn@mx.example.test",
            boundary: BOUNDARY,
            now: NOW,
            recipients,
            return_content: ret,
        }
    }

    fn parse(bytes: &[u8]) -> Message<'_> {
        let msg = MessageParser::default().parse(bytes);
        msg.unwrap_or_else(|| panic!("unparseable:\n{}", String::from_utf8_lossy(bytes)))
    }

    /// "type/subtype" of the report and each of its parts.
    fn content_types(msg: &Message<'_>) -> Vec<String> {
        msg.parts
            .iter()
            .map(|p| {
                let ct = p.content_type().expect("every part has a Content-Type");
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect()
    }

    /// The delivery-status part's field blocks, unfolded: per-message fields first.
    fn status_blocks(msg: &Message<'_>) -> Vec<Vec<(String, String)>> {
        let text = std::str::from_utf8(msg.parts[2].contents()).expect("7-bit");
        assert!(text.is_ascii(), "delivery-status must be 7-bit: {text}");
        let unfolded = text.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .map(|block| {
                block
                    .split("\r\n")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once(':').expect("a field");
                        (k.to_string(), v.trim().to_string())
                    })
                    .collect()
            })
            .collect()
    }

    fn field<'b>(block: &'b [(String, String)], name: &str) -> Option<&'b str> {
        block
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The octets of the body between `--boundary` lines: [preamble, part1, part2, ...].
    fn raw_parts(dsn: &[u8]) -> (String, Vec<Vec<u8>>) {
        let head_end = dsn
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = String::from_utf8_lossy(&dsn[..head_end]).replace("\r\n\t", " ");
        let b = head
            .split("boundary=\"")
            .nth(1)
            .expect("boundary")
            .split('"')
            .next();
        let boundary = b.expect("quoted").to_string();
        let delimiter = format!("\r\n--{boundary}");
        let mut parts = Vec::new();
        let mut rest = &dsn[head_end + 2..];
        while let Some(at) = rest
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes())
        {
            parts.push(rest[..at].to_vec());
            rest = &rest[at + delimiter.len()..];
        }
        assert_eq!(rest, b"--\r\n", "the report ends with the close delimiter");
        (boundary, parts)
    }

    /// CRLF everywhere, no bare CR or LF, no line over 998 octets.
    fn assert_wire_form(dsn: &[u8]) {
        for (i, &b) in dsn.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && dsn[i - 1] == b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(dsn.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        assert!(dsn.ends_with(b"\r\n"));
        for line in dsn.split(|&b| b == b'\n') {
            assert!(line.len() <= MAX_LINE + 1, "line of {} octets", line.len());
        }
        assert!(!dsn.contains(&0), "NUL in the report");
    }

    #[test]
    fn structure_headers_and_content_types() {
        let recipients = [failed(), delayed()];
        let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
        assert_wire_form(&dsn);
        let msg = parse(&dsn);

        let ct = msg.content_type().expect("Content-Type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(ct.attribute("boundary"), Some(BOUNDARY));
        assert_eq!(
            content_types(&msg),
            [
                "multipart/report",
                "text/plain",
                "message/delivery-status",
                "message/rfc822"
            ]
        );
        assert_eq!(msg.parts[0].sub_parts().map(<[_]>::len), Some(3));
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(to, Some("alice@example.test"));
        let from = msg.from().and_then(|a| a.first());
        assert_eq!(from.and_then(|a| a.name()), Some("Mail Delivery System"));
        assert_eq!(
            from.and_then(|a| a.address()),
            Some("MAILER-DAEMON@mx.example.test")
        );
        assert_eq!(msg.message_id(), Some("q1.dsn@mx.example.test"));
        assert_eq!(msg.date().map(|d| d.to_timestamp()), Some(NOW));
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
        let text = std::str::from_utf8(&dsn).expect("utf-8");
        assert!(text.contains("Date: Mon, 02 Jan 2023 10:00:00 +0000\r\n"));
        assert!(!text.contains("Content-Transfer-Encoding"), "all 7-bit");

        // The human part names each recipient with its reason.
        let human = msg.parts[1].text_contents().expect("text");
        assert!(human.contains("This is the mail system at mx.example.test."));
        assert!(human.contains("<bob@remote.test>: delivery failed"));
        assert!(human.contains("550 5.1.1 <bob@remote.test>: user unknown"));
        assert!(human.contains("<carol@slow.test>: delivery delayed"));
        assert!(human.contains("Will keep trying until: Fri, 06 Jan 2023 10:00:00 +0000"));
        assert!(human.contains("A copy of your message is attached."));

        // The returned message is the original, in CRLF form.
        let returned = msg.parts[3].message().expect("message/rfc822");
        assert_eq!(returned.subject(), Some("Hello"));
        assert_eq!(returned.message_id(), Some("m1@example.test"));
        assert_eq!(
            msg.parts[3].contents(),
            lines::canonical(ORIGINAL).as_slice()
        );
    }

    #[test]
    fn per_message_and_per_recipient_fields() {
        let recipients = [failed(), delayed()];
        let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
        let msg = parse(&dsn);
        let blocks = status_blocks(&msg);
        assert_eq!(blocks.len(), 3, "{blocks:?}");

        assert_eq!(
            blocks[0],
            [
                ("Reporting-MTA".into(), "dns; mx.example.test".into()),
                ("Original-Envelope-Id".into(), "QQ314159+x".into()),
                (
                    "Arrival-Date".into(),
                    "Mon, 02 Jan 2023 09:00:00 +0000".into()
                ),
            ]
        );
        let bob = &blocks[1];
        assert_eq!(
            field(bob, "Original-Recipient"),
            Some("rfc822; Bob+tag@remote.test")
        );
        assert_eq!(
            field(bob, "Final-Recipient"),
            Some("rfc822; bob@remote.test")
        );
        assert_eq!(field(bob, "Action"), Some("failed"));
        assert_eq!(field(bob, "Status"), Some("5.1.1"));
        assert_eq!(field(bob, "Remote-MTA"), Some("dns; mx1.remote.test"));
        assert_eq!(
            field(bob, "Diagnostic-Code"),
            Some("smtp; 550 5.1.1 <bob@remote.test>: user unknown")
        );
        assert_eq!(
            field(bob, "Last-Attempt-Date"),
            Some("Mon, 02 Jan 2023 09:59:00 +0000")
        );
        assert_eq!(field(bob, "Will-Retry-Until"), None);
        // RFC 3464 §2.3: Original-Recipient, if present, comes first.
        assert_eq!(bob[0].0, "Original-Recipient");

        let carol = &blocks[2];
        assert_eq!(field(carol, "Original-Recipient"), None);
        assert_eq!(
            field(carol, "Final-Recipient"),
            Some("rfc822; carol@slow.test")
        );
        assert_eq!(field(carol, "Action"), Some("delayed"));
        assert_eq!(field(carol, "Status"), Some("4.4.1"));
        assert_eq!(field(carol, "Remote-MTA"), Some("dns; mx.slow.test"));
        assert_eq!(
            field(carol, "Diagnostic-Code"),
            Some("smtp; 451 4.4.1 try again later")
        );
        assert_eq!(
            field(carol, "Will-Retry-Until"),
            Some("Fri, 06 Jan 2023 10:00:00 +0000")
        );
    }

    #[test]
    fn headers_only_returns_text_rfc822_headers_without_the_body() {
        let recipients = [failed()];
        let dsn = build(&report(&recipients, ReturnContent::HeadersOnly), ORIGINAL);
        assert_wire_form(&dsn);
        let msg = parse(&dsn);
        assert_eq!(
            content_types(&msg),
            [
                "multipart/report",
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );
        let headers = msg.parts[3].text_contents().expect("text");
        assert!(headers.starts_with("From: Alice <alice@example.test>\r\n"));
        assert!(headers.contains("Subject: Hello\r\n"));
        assert!(!headers.contains("Hello Bob"), "{headers}");
        let human = msg.parts[1].text_contents().expect("text");
        assert!(human.contains("The headers of your message are attached."));
    }

    #[test]
    fn an_original_without_a_body_separator_returns_headers() {
        let recipients = [failed()];
        let original = b"Subject: no body\nFrom: alice@example.test";
        let dsn = build(&report(&recipients, ReturnContent::Full), original);
        let msg = parse(&dsn);
        assert_eq!(content_types(&msg)[3], "text/rfc822-headers");
        let headers = msg.parts[3].text_contents().expect("text");
        assert!(headers.contains("Subject: no body\r\nFrom: alice@example.test"));

        // An empty original: nothing to return, no third part.
        let dsn = build(&report(&recipients, ReturnContent::Full), b"");
        assert_eq!(content_types(&parse(&dsn)).len(), 3);
    }

    #[test]
    fn delay_warnings_return_only_the_headers() {
        let recipients = [delayed()];
        let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
        let msg = parse(&dsn);
        assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
        assert_eq!(content_types(&msg)[3], "text/rfc822-headers");
        let blocks = status_blocks(&msg);
        assert_eq!(field(&blocks[1], "Action"), Some("delayed"));
        assert!(field(&blocks[1], "Will-Retry-Until").is_some());

        let delivered = RecipientReport {
            action: Action::Delivered,
            status: "2.0.0".into(),
            will_retry_until: Some(NOW),
            ..failed()
        };
        let recipients = [delivered];
        let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
        let msg = parse(&dsn);
        assert_eq!(msg.subject(), Some("Successful Mail Delivery Report"));
        let blocks = status_blocks(&msg);
        assert_eq!(field(&blocks[1], "Action"), Some("delivered"));
        assert_eq!(field(&blocks[1], "Will-Retry-Until"), None);
    }

    #[test]
    fn a_large_original_is_cut_at_a_line_boundary() {
        let mut original = ORIGINAL.to_vec();
        let mut n = 0;
        while original.len() < 1 << 20 {
            original.extend_from_slice(format!("line {n:07} of the long body text\n").as_bytes());
            n += 1;
        }
        let recipients = [failed()];
        let dsn = build(&report(&recipients, ReturnContent::Full), &original);
        assert_wire_form(&dsn);
        assert!(
            dsn.len() < MAX_RETURNED_BODY + 8 * 1024,
            "{} octets",
            dsn.len()
        );
        let msg = parse(&dsn);
        assert_eq!(content_types(&msg)[3], "message/rfc822");
        assert_eq!(
            msg.parts[3].message().and_then(|m| m.subject()),
            Some("Hello")
        );

        let (_, parts) = raw_parts(&dsn);
        let part3 = &parts[3];
        let content_start = part3
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("part header");
        let returned = &part3[content_start + 4..];
        let body_start = returned
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("sep")
            + 4;
        let body = &returned[body_start..];
        let canonical = lines::canonical(&original);
        let (_, full_body) = tern_mail::header::split(&canonical);
        let full_body = full_body.expect("a body");
        assert!(body.len() <= MAX_RETURNED_BODY, "{}", body.len());
        assert!(body.ends_with(b"\r\n"));
        assert!(
            full_body.starts_with(body),
            "the body's first part, unchanged"
        );
        // Cut at the last whole line that fits: the next one would not have.
        let next_line = full_body[body.len()..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("more lines")
            + 2;
        assert!(body.len() + next_line > MAX_RETURNED_BODY);
        let human = msg.parts[1]
            .text_contents()
            .expect("text")
            .replace("\r\n", " ");
        assert!(
            human.contains("only the first part of its body (up to 64 KiB)"),
            "{human}"
        );
    }

    #[test]
    fn a_huge_header_block_is_capped_at_a_field_boundary() {
        // 100 KiB of header fields: cut to the limit, the body still follows. 300 KiB: the
        // separator lies beyond what is read, so only the (capped) header block comes back.
        for (size, expected) in [(100, "message/rfc822"), (300, "text/rfc822-headers")] {
            let mut original = Vec::new();
            let mut n = 0;
            while original.len() < size * 1024 {
                let field = format!("X-Filler-{n}: some value\n\tfolded\n");
                original.extend_from_slice(field.as_bytes());
                n += 1;
            }
            original.extend_from_slice(b"Subject: last\n\nbody\n");
            let recipients = [failed()];
            let dsn = build(&report(&recipients, ReturnContent::Full), &original);
            assert_wire_form(&dsn);
            let msg = parse(&dsn);
            assert_eq!(content_types(&msg)[3], expected);
            let (_, parts) = raw_parts(&dsn);
            let part3 = &parts[3];
            let start = part3
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header")
                + 4;
            let returned = &part3[start..];
            let headers = match returned.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(at) => {
                    assert_eq!(&returned[at + 4..], b"body\r\n");
                    &returned[..at + 2]
                }
                None => returned,
            };
            assert!(headers.len() <= MAX_RETURNED_HEADERS, "{}", headers.len());
            assert!(
                headers.ends_with(b"\tfolded\r\n"),
                "cut at a field boundary"
            );
            assert!(lines::canonical(&original).starts_with(headers));
        }
    }

    #[test]
    fn a_hostile_diagnostic_cannot_add_headers_or_parts() {
        let evil = format!(
            "smtp; 550 5.1.1 nope\r\n--{BOUNDARY}\r\nX-Evil: 1\r\n\r\nevil\0 body\x1b[31m\u{202e}"
        );
        let recipients = [RecipientReport {
            diagnostic: Some(evil),
            remote_mta: Some(format!("mx.remote.test\r\nX-Evil: 2\r\n--{BOUNDARY}")),
            address: "bob@remote.test\r\nX-Evil: 3".to_string(),
            original_recipient: Some(format!("rfc822;x+0D+0AX-Evil:+204+0D+0A--{BOUNDARY}")),
            ..failed()
        }];
        let mut r = report(&recipients, ReturnContent::Full);
        let envid = format!("id+0D+0AX-Evil:+205+0A--{BOUNDARY}");
        r.envelope_id = Some(&envid);
        let dsn = build(&r, ORIGINAL);
        assert_wire_form(&dsn);
        let msg = parse(&dsn);
        assert_eq!(
            content_types(&msg),
            [
                "multipart/report",
                "text/plain",
                "message/delivery-status",
                "message/rfc822"
            ]
        );
        for part in &msg.parts {
            assert!(part
                .headers()
                .iter()
                .all(|h| !h.name().eq_ignore_ascii_case("X-Evil")));
        }
        // The caller's boundary now occurs in the content (mid-line): a fresh one is used.
        let (boundary, parts) = raw_parts(&dsn);
        assert_eq!(boundary, format!("{BOUNDARY}=_0"));
        assert_eq!(parts.len(), 4);
        let delimiter = format!("--{boundary}");
        let starts: Vec<_> = dsn
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"X-Evil") || l.starts_with(delimiter.as_bytes()))
            .collect();
        assert_eq!(starts.len(), 4, "three delimiters and the close delimiter");
        let original = format!("--{BOUNDARY}");
        let lines = dsn.split(|&b| b == b'\n');
        assert_eq!(
            lines.filter(|l| l.starts_with(original.as_bytes())).count(),
            4
        );

        let blocks = status_blocks(&msg);
        let diag = field(&blocks[1], "Diagnostic-Code").expect("diagnostic");
        assert_eq!(
            diag,
            format!("smtp; 550 5.1.1 nope --{BOUNDARY} X-Evil: 1 evil body[31m")
        );
        assert_eq!(
            field(&blocks[1], "Final-Recipient"),
            Some("rfc822; bob@remote.testX-Evil:3")
        );
        let human = msg.parts[1].text_contents().expect("text");
        assert!(!human.contains('\u{1b}') && !human.contains('\u{202e}'));
    }

    #[test]
    fn a_boundary_found_in_the_original_is_replaced() {
        let mut original = ORIGINAL.to_vec();
        original.extend_from_slice(format!("--{BOUNDARY}\n--{BOUNDARY}=_0--\nend\n").as_bytes());
        let recipients = [failed()];
        let dsn = build(&report(&recipients, ReturnContent::Full), &original);
        let msg = parse(&dsn);
        let (boundary, parts) = raw_parts(&dsn);
        assert_eq!(boundary, format!("{BOUNDARY}=_1"));
        assert_eq!(parts.len(), 4);
        assert_eq!(content_types(&msg).len(), 4);
        assert_eq!(
            msg.parts[3].contents(),
            lines::canonical(&original).as_slice()
        );
    }

    #[test]
    fn bad_boundaries_are_repaired() {
        let recipients = [failed()];
        let mut r = report(&recipients, ReturnContent::Full);
        r.boundary = "\"a b\"\r\nc;";
        let msg_bytes = build(&r, ORIGINAL);
        assert_eq!(raw_parts(&msg_bytes).0, "abc");
        r.boundary = "";
        let msg_bytes = build(&r, ORIGINAL);
        assert_eq!(raw_parts(&msg_bytes).0, "tern-dsn");
        assert_eq!(content_types(&parse(&msg_bytes)).len(), 4);
    }

    #[test]
    fn bare_lf_long_lines_and_8bit_originals_are_made_transmissible() {
        let long_header = format!("X-Long: {}\n", "word ".repeat(1000));
        let unbroken = format!("X-Unbroken: {}\n", "x".repeat(3000));
        let long_body = format!("{}\n", "é".repeat(2000));
        let original =
            format!("Subject: Grüße\n{long_header}{unbroken}\nfirst\r\n{long_body}last\0line\n");
        let recipients = [failed()];
        let dsn = build(
            &report(&recipients, ReturnContent::Full),
            original.as_bytes(),
        );
        assert_wire_form(&dsn);
        let msg = parse(&dsn);
        assert_eq!(
            msg.header_raw("Content-Transfer-Encoding").map(str::trim),
            Some("8bit")
        );
        assert_eq!(msg.parts[3].content_transfer_encoding(), Some("8bit"));
        assert_eq!(msg.parts[1].content_transfer_encoding(), None, "ASCII text");
        let returned = msg.parts[3].contents();
        let returned = std::str::from_utf8(returned).expect("no UTF-8 sequence split");
        let nested = msg.parts[3].message().expect("message/rfc822");
        assert_eq!(nested.subject(), Some("Grüße"));
        // Folding at whitespace leaves the field's value as it was.
        let long = nested.header_raw("X-Long").expect("X-Long");
        assert_eq!(long.replace("\r\n", "").trim(), "word ".repeat(1000).trim());
        assert!(nested.header_raw("X-Unbroken").is_some());
        assert!(returned.contains("\r\nfirst\r\n"));
        assert!(returned.contains("lastline\r\n"));
        assert_eq!(
            returned.matches('é').count(),
            2000,
            "the long body line is broken, not shortened"
        );
    }

    #[test]
    fn internationalised_addresses_keep_the_status_part_7bit() {
        let recipients = [RecipientReport {
            address: "jörg@bücher.test".into(),
            diagnostic: Some("smtp; 550 5.1.1 jörg: unknown".into()),
            ..failed()
        }];
        let dsn = build(&report(&recipients, ReturnContent::HeadersOnly), ORIGINAL);
        assert_wire_form(&dsn);
        let msg = parse(&dsn);
        let blocks = status_blocks(&msg);
        assert_eq!(
            field(&blocks[1], "Final-Recipient"),
            Some("utf-8; j\\x{F6}rg@b\\x{FC}cher.test")
        );
        assert_eq!(
            field(&blocks[1], "Diagnostic-Code"),
            Some("smtp; 550 5.1.1 j\\x{F6}rg: unknown")
        );
        let human = msg.parts[1].text_contents().expect("text");
        assert!(human.contains("<jörg@bücher.test>: delivery failed"));
        assert_eq!(msg.parts[1].content_transfer_encoding(), Some("8bit"));
    }

    #[test]
    fn long_values_are_folded_and_capped() {
        let recipients = [RecipientReport {
            diagnostic: Some(format!("smtp; 550 {}", "too many words ".repeat(2000))),
            remote_mta: Some("h".repeat(5000)),
            ..failed()
        }];
        let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
        assert_wire_form(&dsn);
        for line in dsn.split(|&b| b == b'\n') {
            if line.starts_with(b"Diagnostic-Code") || line.starts_with(b" too") {
                assert!(
                    line.len() <= SOFT_LINE + 2,
                    "{}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        let msg = parse(&dsn);
        let blocks = status_blocks(&msg);
        let diag = field(&blocks[1], "Diagnostic-Code").expect("diagnostic");
        assert!(
            diag.len() <= MAX_VALUE + 16 && diag.ends_with(" ..."),
            "{}",
            diag.len()
        );
        assert_eq!(content_types(&msg).len(), 4);
    }

    #[test]
    fn diagnostics_without_a_type_get_one() {
        assert_eq!(
            diagnostic("550 5.1.1 no; such user", true),
            Some(("smtp".into(), "550 5.1.1 no; such user".into()))
        );
        assert_eq!(
            diagnostic("connection refused", true),
            Some(("X-Tern".into(), "connection refused".into()))
        );
        assert_eq!(
            diagnostic("X-Tern; queue lifetime expired", true),
            Some(("X-Tern".into(), "queue lifetime expired".into()))
        );
        assert_eq!(diagnostic("smtp;  \r\n", true), None);
    }

    #[test]
    fn invalid_statuses_fall_back_to_the_actions_class() {
        let recipients = [
            RecipientReport {
                status: "bogus".into(),
                ..failed()
            },
            RecipientReport {
                status: "4.4".into(),
                ..delayed()
            },
        ];
        let dsn = build(&report(&recipients, ReturnContent::Full), ORIGINAL);
        let blocks = status_blocks(&parse(&dsn));
        assert_eq!(field(&blocks[1], "Status"), Some("5.0.0"));
        assert_eq!(field(&blocks[2], "Status"), Some("4.0.0"));
    }

    #[test]
    fn original_recipients_are_decoded_from_xtext() {
        assert_eq!(
            original_recipient("rfc822;bob+40x@y"),
            Some("rfc822; bob@x@y".into())
        );
        assert_eq!(original_recipient("no-type"), None);
        assert_eq!(original_recipient("bad type;x@y"), None);
        assert_eq!(original_recipient("rfc822;"), None);
    }

    /// Random octets, biased towards what breaks MIME: line ends, NULs, dashes, the boundary,
    /// non-ASCII and very long lines.
    fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
        let pieces: [&[u8]; 10] = [
            b"\r",
            b"\n",
            b"\r\n\r\n",
            b"\0",
            b"--",
            BOUNDARY.as_bytes(),
            "é€\u{202e}".as_bytes(),
            b": ",
            b"\t ",
            b"\xff\xfe",
        ];
        let mut out = Vec::new();
        while out.len() < len {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            match *seed % 16 {
                0..=9 => out.extend_from_slice(pieces[(*seed >> 8) as usize % pieces.len()]),
                10 => out.extend(std::iter::repeat_n(b'x', (*seed >> 8) as usize % 3000)),
                _ => out.push(b'a' + (*seed >> 8) as u8 % 26),
            }
        }
        out
    }

    #[test]
    fn random_inputs_keep_the_report_well_formed() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..200 {
            let text =
                |seed: &mut u64, len| String::from_utf8_lossy(&noise(seed, len)).into_owned();
            let recipients = [
                RecipientReport {
                    address: text(&mut seed, 40),
                    original_recipient: Some(text(&mut seed, 40)),
                    status: text(&mut seed, 6),
                    remote_mta: Some(text(&mut seed, 30)),
                    diagnostic: Some(text(&mut seed, 300)),
                    ..failed()
                },
                RecipientReport {
                    diagnostic: Some(text(&mut seed, 5000)),
                    ..delayed()
                },
            ];
            let (envid, boundary, sender) = (
                text(&mut seed, 20),
                text(&mut seed, 80),
                text(&mut seed, 30),
            );
            let mut r = report(&recipients, ReturnContent::Full);
            r.envelope_id = Some(&envid);
            r.sender = &sender;
            if round % 2 == 0 {
                r.boundary = &boundary;
            }
            let mut original = ORIGINAL.to_vec();
            original.extend_from_slice(&noise(&mut seed, 20_000));
            if round % 3 == 0 {
                original = noise(&mut seed, 20_000);
            }
            let dsn = build(&r, &original);
            assert_wire_form(&dsn);
            let msg = parse(&dsn);
            let (boundary, parts) = raw_parts(&dsn);
            let types = content_types(&msg);
            assert_eq!(types.len(), parts.len(), "round {round}: {types:?}");
            assert!(boundary.len() <= 70);
            assert!(!parts.iter().any(|p| find(p, boundary.as_bytes()).is_some()));
            let blocks = status_blocks(&msg);
            assert_eq!(blocks.len(), 3, "round {round}");
            assert_eq!(field(&blocks[1], "Action"), Some("failed"));
            assert_eq!(field(&blocks[2], "Action"), Some("delayed"));
            assert!(enhanced::is_valid(
                field(&blocks[1], "Status").expect("status")
            ));
        }
    }

    /// Writes sample reports for `tests/clients/parse_dsn.py` into the temporary directory
    /// when `TERN_DSN_SAMPLE` is set:
    /// `TERN_DSN_SAMPLE=1 cargo test -p tern-queue --lib dsn::tests::sample -- --nocapture`,
    /// then `python3 tests/clients/parse_dsn.py /tmp/tern-dsn-sample.eml` (and `-hdrs`,
    /// `-hostile`).
    #[test]
    fn sample() {
        if std::env::var_os("TERN_DSN_SAMPLE").is_none() {
            return;
        }
        let write = |name: &str, dsn: &[u8]| {
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, dsn).expect("write the sample");
            eprintln!("wrote {}", path.display());
        };
        let recipients = [failed(), delayed()];
        let mut original = ORIGINAL.to_vec();
        original.extend_from_slice("Grüße, Alice\n".as_bytes());
        write(
            "tern-dsn-sample.eml",
            &build(&report(&recipients, ReturnContent::Full), &original),
        );
        write(
            "tern-dsn-sample-hdrs.eml",
            &build(&report(&recipients, ReturnContent::HeadersOnly), &original),
        );

        // A hostile diagnostic and address, the caller's boundary inside the original, and a
        // 1 MB body with bare LFs.
        let recipients = [
            RecipientReport {
                diagnostic: Some(format!(
                    "smtp; 550 5.1.1 nope\r\n--{BOUNDARY}\r\nX-Evil: 1\r\n\r\nevil\0 body"
                )),
                address: "bob@remote.test\r\nX-Evil: 3".to_string(),
                ..failed()
            },
            delayed(),
        ];
        let mut original = ORIGINAL.to_vec();
        original.extend_from_slice(format!("--{BOUNDARY}\nX-Evil: 4\n\n").as_bytes());
        while original.len() < 1 << 20 {
            original.extend_from_slice(b"a line of the long body, ending in a bare LF\n");
        }
        write(
            "tern-dsn-sample-hostile.eml",
            &build(&report(&recipients, ReturnContent::Full), &original),
        );
    }
}
