//! What one transaction sends and gets back: the server's extensions read from its EHLO
//! reply, the envelope (checked for command injection before anything is sent), and the
//! per-recipient outcome.

use tern_smtp_proto::reply::Reply;

use super::ClientError;

/// The ESMTP extensions the server announced in its (last) EHLO reply that change how the
/// client talks; all false after a HELO fallback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING (RFC 2920): MAIL, RCPTs and DATA are sent in one write.
    pub pipelining: bool,
    /// SIZE (RFC 1870): `None` when not offered, `Some(0)` when offered without a fixed
    /// limit, `Some(n)` for a limit of n octets, checked before sending.
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152): 8-bit bodies are announced with BODY=8BITMIME.
    pub eightbitmime: bool,
    /// SMTPUTF8 (RFC 6531): required for non-ASCII addresses.
    pub smtputf8: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// DSN (RFC 3461): the envelope's DSN parameters are sent only when offered.
    pub dsn: bool,
    /// CHUNKING (RFC 3030); detected, not used.
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034): replies carry "x.y.z" codes.
    pub enhanced_status_codes: bool,
}

impl Extensions {
    /// Reads the keywords of an EHLO reply (every line but the first, RFC 5321 §4.1.1.1).
    pub(super) fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => {
                    ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => ext.eightbitmime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "STARTTLS" => ext.starttls = true,
                "DSN" => ext.dsn = true,
                "CHUNKING" => ext.chunking = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                _ => {}
            }
        }
        ext
    }
}

/// The envelope of one transaction: one sender and the recipients at one destination host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path without angle brackets; "" is the null path (`MAIL FROM:<>`) of
    /// bounces.
    pub from: String,
    /// Extra MAIL parameters (RFC 3461 `RET=HDRS`, `ENVID=...`), sent only when the server
    /// offers DSN; SIZE, BODY and SMTPUTF8 are added by the client itself.
    pub mail_params: Vec<String>,
    /// The recipients, in the order their replies come back in [`Transaction::rcpts`].
    pub rcpts: Vec<Rcpt>,
}

/// One recipient of an [`Envelope`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rcpt {
    /// The forward path without angle brackets.
    pub address: String,
    /// RFC 3461 RCPT parameters (`NOTIFY=...`, `ORCPT=...`), sent only when the server offers
    /// DSN.
    pub dsn_params: Vec<String>,
}

/// The outcome of one mail transaction whose MAIL was accepted.
///
/// Recipient `i` was delivered when `rcpts[i]` and `data` are both positive; otherwise the
/// reply that decided its fate is [`Transaction::outcome`]. A reply that is neither 2xx nor
/// 5xx should be treated as a temporary failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The reply to MAIL (positive: a refused MAIL is [`ClientError::Rejected`]).
    pub mail: Reply,
    /// The reply to each RCPT, in the envelope's order.
    pub rcpts: Vec<Reply>,
    /// The reply after the message data, or the refusal of DATA itself; `None` when no
    /// recipient was accepted, so no message was sent.
    pub data: Option<Reply>,
}

impl Transaction {
    /// The reply that decided recipient `index`: its RCPT reply when refused, else the reply
    /// to the message data (or to a refused DATA). `None` for an index out of range; what a
    /// worker puts in the recipient's DSN `Diagnostic-Code`.
    pub fn outcome(&self, index: usize) -> Option<&Reply> {
        let rcpt = self.rcpts.get(index)?;
        if rcpt.is_positive() {
            self.data.as_ref().or(Some(rcpt))
        } else {
            Some(rcpt)
        }
    }
}

/// A HELO name must be one token: no spaces or control characters that would end or extend
/// the command.
pub(super) fn check_helo_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ClientError::Protocol(format!("invalid HELO name {name:?}")));
    }
    Ok(())
}

/// Refuses envelopes that would inject commands (CR, LF or other control characters in an
/// address or parameter) or have no recipient, before anything is sent.
pub(super) fn check_envelope(envelope: &Envelope) -> Result<(), ClientError> {
    if envelope.rcpts.is_empty() {
        return Err(ClientError::Protocol(
            "envelope has no recipients".to_owned(),
        ));
    }
    let bad = |s: &String| s.chars().any(char::is_control);
    let fields = std::iter::once(&envelope.from)
        .chain(&envelope.mail_params)
        .chain(
            envelope
                .rcpts
                .iter()
                .flat_map(|r| std::iter::once(&r.address).chain(&r.dsn_params)),
        );
    for field in fields {
        if bad(field) {
            return Err(ClientError::Protocol(format!(
                "control character in envelope field {field:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_smtp_proto::reply;

    fn ehlo(text: &[u8]) -> Extensions {
        let (reply, _) = reply::parse(text).unwrap().unwrap();
        Extensions::from_ehlo(&reply)
    }

    #[test]
    fn ehlo_keywords() {
        let ext = ehlo(
            b"250-mx.test greets you\r\n250-pipelining\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n\
              250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(
            ext,
            Extensions {
                pipelining: true,
                size: Some(35882577),
                eightbitmime: true,
                smtputf8: true,
                starttls: true,
                dsn: true,
                chunking: true,
                enhanced_status_codes: true,
            }
        );
        assert_eq!(ehlo(b"250-mx\r\n250 SIZE\r\n").size, Some(0));
        // The greeting line is not a keyword list.
        assert_eq!(ehlo(b"250 PIPELINING\r\n"), Extensions::default());
    }

    #[test]
    fn outcome_per_recipient() {
        let reply = |code| Reply {
            code,
            enhanced: None,
            lines: vec![code.to_string()],
        };
        let t = Transaction {
            mail: reply(250),
            rcpts: vec![reply(250), reply(550)],
            data: Some(reply(451)),
        };
        assert_eq!(t.outcome(0).map(|r| r.code), Some(451));
        assert_eq!(t.outcome(1).map(|r| r.code), Some(550));
        assert_eq!(t.outcome(2), None);
    }

    #[test]
    fn envelope_injection_is_refused() {
        let env = |from: &str, rcpt: &str| Envelope {
            from: from.into(),
            mail_params: vec![],
            rcpts: vec![Rcpt {
                address: rcpt.into(),
                dsn_params: vec![],
            }],
        };
        assert!(check_envelope(&env("a@x.test", "b@y.test")).is_ok());
        assert!(check_envelope(&env("", "b@y.test")).is_ok());
        assert!(check_envelope(&env("a@x.test>\r\nRCPT TO:<evil@z", "b@y.test")).is_err());
        assert!(check_envelope(&env("a@x.test", "b@y.test\n")).is_err());
        assert!(check_envelope(&Envelope::default()).is_err());
        assert!(check_helo_name("mta.example.test").is_ok());
        assert!(check_helo_name("a b").is_err());
        assert!(check_helo_name("").is_err());
    }
}
