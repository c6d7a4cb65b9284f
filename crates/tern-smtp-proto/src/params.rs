//! MAIL and RCPT parameters (RFC 5321 §4.1.2 Mail-parameters) as typed values: what the
//! server checks and keeps, what travels to the queue, and the canonical text the store
//! keeps on a queue entry (`BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=...`, the form entries
//! have always been stored in, so old entries read back the same).
//!
//! The MAIL parameters understood: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
//! RET and ENVID (RFC 3461) and AUTH (RFC 4954 §5); the RCPT parameters: NOTIFY and ORCPT
//! (RFC 3461). Anything else is refused, since every extension the server offers is listed.

use std::fmt;

use crate::command::Param;
use crate::xtext;

/// Longest ENVID value accepted (RFC 3461 §4.4 allows 100 characters).
pub const MAX_ENVID: usize = 100;
/// Longest submitter identity a queue entry keeps (an address is at most 254 octets; a SASL
/// identity is bounded the same way).
pub const MAX_SUBMITTER: usize = 320;
/// Longest ORCPT value accepted, type and address (RFC 3461 §4.2 allows 500 characters).
pub const MAX_ORCPT: usize = 500;

/// BODY (RFC 6152): how the sender says the content is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// RET (RFC 3461 §4.3): what a failure DSN carries back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: only its header section.
    Hdrs,
}

/// The parameters of one MAIL command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE: the size the client announced (checked, not trusted: the real size is counted).
    pub size: Option<u64>,
    /// BODY, if given.
    pub body: Option<Body>,
    /// SMTPUTF8: the addresses and headers may be UTF-8.
    pub smtputf8: bool,
    /// RET, if given.
    pub ret: Option<Ret>,
    /// ENVID as received, still xtext-encoded (it is relayed as it came).
    pub envid: Option<String>,
    /// AUTH= (RFC 4954 §5), xtext. As received from a client it is accepted and trusted from
    /// no one, so tern-smtp does not pass it on. In a queue entry's stored parameters it is
    /// what tern-queue wrote from the envelope's `submitter` (the identity tern-smtp
    /// authenticated, or `<>` for mail from outside); see [`MailParams::submitter`].
    pub auth: Option<String>,
}

/// The parameters of one RCPT command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// NOTIFY, upper-cased (`NEVER` or a list of SUCCESS, FAILURE, DELAY); "" when absent.
    pub notify: String,
    /// ORCPT as received (`type;xtext`); "" when absent.
    pub orcpt: String,
}

/// Why a parameter list is refused; the session turns each into its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A keyword given twice (501 5.5.4).
    #[error("Duplicate parameter {0}")]
    Duplicate(String),
    /// SIZE with a value that is not a number (501 5.5.4).
    #[error("Bad SIZE value")]
    BadSize,
    /// SIZE over the server's limit (552 5.3.4).
    #[error("Message size exceeds fixed maximum message size")]
    TooBig,
    /// BODY with a value other than 7BIT or 8BITMIME (555 5.5.4).
    #[error("Unsupported BODY value")]
    UnsupportedBody,
    /// Any other unknown keyword or malformed value (555 5.5.4).
    #[error("Unsupported or malformed parameter {0}")]
    Unsupported(String),
}

/// Refuses a keyword seen before in the same command.
fn check_unique<'a>(seen: &mut Vec<&'a str>, keyword: &'a str) -> Result<(), ParamError> {
    if seen.contains(&keyword) {
        return Err(ParamError::Duplicate(keyword.to_string()));
    }
    seen.push(keyword);
    Ok(())
}

impl MailParams {
    /// Checks the parameters of a MAIL command in order (the first bad one is the one
    /// reported), refusing a SIZE over `max_size`.
    pub fn from_params(params: &[Param], max_size: u64) -> Result<MailParams, ParamError> {
        let mut out = MailParams::default();
        let mut seen = Vec::new();
        for p in params {
            check_unique(&mut seen, &p.keyword)?;
            match (p.keyword.as_str(), p.value.as_deref()) {
                ("SIZE", Some(v)) => {
                    let size = v.parse::<u64>().map_err(|_| ParamError::BadSize)?;
                    if size > max_size {
                        return Err(ParamError::TooBig);
                    }
                    out.size = Some(size);
                }
                ("BODY", v) => {
                    out.body = Some(v.and_then(body).ok_or(ParamError::UnsupportedBody)?)
                }
                ("SMTPUTF8", None) => out.smtputf8 = true,
                ("RET", Some(v)) if ret(v).is_some() => out.ret = ret(v),
                ("ENVID", Some(v)) if v.len() <= MAX_ENVID && xtext::decode(v).is_some() => {
                    out.envid = Some(v.to_string());
                }
                ("AUTH", Some(v)) => out.auth = Some(v.to_string()),
                _ => return Err(ParamError::Unsupported(p.keyword.clone())),
            }
        }
        Ok(out)
    }

    /// Reads the canonical text a queue entry keeps ([`MailParams`]'s `Display`), leniently:
    /// what does not parse is skipped, since the entry was accepted long ago and must still
    /// be delivered.
    pub fn from_stored(text: &str) -> MailParams {
        let mut out = MailParams::default();
        for word in text.split_whitespace() {
            let (keyword, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            match (keyword.to_ascii_uppercase().as_str(), value) {
                ("SIZE", Some(v)) => out.size = v.parse().ok(),
                ("BODY", Some(v)) => out.body = body(v),
                ("SMTPUTF8", _) => out.smtputf8 = true,
                ("RET", Some(v)) => out.ret = ret(v),
                ("ENVID", Some(v)) => out.envid = Some(v.to_string()),
                ("AUTH", Some(v)) => out.auth = Some(v.to_string()),
                _ => {}
            }
        }
        out
    }

    /// Who submitted a queued message, from its stored `AUTH=`: the authenticated identity,
    /// or `None` for mail from a client that did not authenticate (`AUTH=<>`), from an entry
    /// queued before the queue kept it, or an unreadable value.
    pub fn submitter(&self) -> Option<String> {
        match self.auth.as_deref() {
            None | Some("<>") => None,
            Some(v) => xtext::decode(v).filter(|s| !s.is_empty()),
        }
    }

    /// The DSN parameters relayed to the next hop when it offers DSN: `RET=` and `ENVID=`.
    pub fn dsn_params(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.ret {
            out.push(format!("RET={}", ret_name(r)));
        }
        if let Some(e) = &self.envid {
            out.push(format!("ENVID={e}"));
        }
        out
    }
}

/// The canonical text of what travels with the message (BODY, SMTPUTF8, RET, ENVID, in that
/// order; SIZE and AUTH stay with the session), as queue entries keep it.
impl fmt::Display for MailParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if let Some(b) = self.body {
            words.push(format!("BODY={}", body_name(b)));
        }
        if self.smtputf8 {
            words.push("SMTPUTF8".to_string());
        }
        words.extend(self.dsn_params());
        if let Some(a) = &self.auth {
            words.push(format!("AUTH={a}"));
        }
        f.write_str(&words.join(" "))
    }
}

impl RcptParams {
    /// Checks the parameters of a RCPT command in order.
    pub fn from_params(params: &[Param]) -> Result<RcptParams, ParamError> {
        let mut out = RcptParams::default();
        let mut seen = Vec::new();
        for p in params {
            check_unique(&mut seen, &p.keyword)?;
            match (p.keyword.as_str(), p.value.as_deref()) {
                ("NOTIFY", Some(v)) if valid_notify(v) => out.notify = v.to_ascii_uppercase(),
                ("ORCPT", Some(v)) if valid_orcpt(v) => out.orcpt = v.to_string(),
                _ => return Err(ParamError::Unsupported(p.keyword.clone())),
            }
        }
        Ok(out)
    }
}

fn body(v: &str) -> Option<Body> {
    if v.eq_ignore_ascii_case("7BIT") {
        Some(Body::SevenBit)
    } else if v.eq_ignore_ascii_case("8BITMIME") {
        Some(Body::EightBitMime)
    } else {
        None
    }
}

fn body_name(b: Body) -> &'static str {
    match b {
        Body::SevenBit => "7BIT",
        Body::EightBitMime => "8BITMIME",
    }
}

fn ret(v: &str) -> Option<Ret> {
    if v.eq_ignore_ascii_case("FULL") {
        Some(Ret::Full)
    } else if v.eq_ignore_ascii_case("HDRS") {
        Some(Ret::Hdrs)
    } else {
        None
    }
}

fn ret_name(r: Ret) -> &'static str {
    match r {
        Ret::Full => "FULL",
        Ret::Hdrs => "HDRS",
    }
}

/// NOTIFY (RFC 3461 §4.1): `NEVER`, or a list of SUCCESS, FAILURE and DELAY.
fn valid_notify(v: &str) -> bool {
    if v.eq_ignore_ascii_case("NEVER") {
        return true;
    }
    v.split(',').all(|w| {
        ["SUCCESS", "FAILURE", "DELAY"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    })
}

/// ORCPT (RFC 3461 §4.2): `addr-type ";" xtext` (RFC 6533's `utf-8` type is not xtext).
fn valid_orcpt(v: &str) -> bool {
    v.split_once(';').is_some_and(|(kind, addr)| {
        !kind.is_empty()
            && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && v.len() <= MAX_ORCPT
            && (xtext::decode(addr).is_some() || kind.eq_ignore_ascii_case("utf-8"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> Vec<Param> {
        text.split(' ')
            .map(|w| match w.split_once('=') {
                Some((k, v)) => Param {
                    keyword: k.into(),
                    value: Some(v.into()),
                },
                None => Param {
                    keyword: w.into(),
                    value: None,
                },
            })
            .collect()
    }

    #[test]
    fn mail_parameters_are_typed_and_kept_in_canonical_form() {
        let p = MailParams::from_params(
            &params("SIZE=10 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=x+2By AUTH=<>"),
            100,
        )
        .unwrap();
        assert_eq!(p.size, Some(10));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("x+2By"));
        assert_eq!(p.auth.as_deref(), Some("<>"));
        // The canonical form names AUTH= too: tern-smtp never passes a client's on (the
        // queue writes the one tern-smtp asserts, see `the_submitter_is_kept_...`).
        let stored = p.to_string();
        assert_eq!(
            stored,
            "BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x+2By AUTH=<>"
        );
        let back = MailParams::from_stored(&stored);
        assert_eq!(
            back,
            MailParams {
                size: None,
                ..p.clone()
            }
        );
        assert_eq!(p.dsn_params(), ["RET=HDRS", "ENVID=x+2By"]);
        assert_eq!(MailParams::default().to_string(), "");
    }

    #[test]
    fn the_submitter_is_kept_as_auth_and_read_back() {
        let authenticated = MailParams {
            body: Some(Body::EightBitMime),
            auth: Some(xtext::encode("alice+x=y@example.test")),
            ..MailParams::default()
        };
        let text = authenticated.to_string();
        assert_eq!(text, "BODY=8BITMIME AUTH=alice+2Bx+3Dy@example.test");
        assert_eq!(
            MailParams::from_stored(&text).submitter().as_deref(),
            Some("alice+x=y@example.test")
        );
        // From outside, from an entry queued before AUTH= was kept, or unreadable: nobody.
        for stored in ["AUTH=<>", "BODY=7BIT", "AUTH=bad+zz", "AUTH="] {
            assert_eq!(
                MailParams::from_stored(stored).submitter(),
                None,
                "{stored}"
            );
        }
    }

    #[test]
    fn stored_text_of_old_entries_reads_back() {
        let p = MailParams::from_stored("BODY=8BITMIME RET=HDRS ENVID=x1 junk FOO=1");
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("x1"));
        assert!(!p.smtputf8);
        assert_eq!(MailParams::from_stored(""), MailParams::default());
    }

    #[test]
    fn mail_refusals_in_order() {
        let check = |t: &str| MailParams::from_params(&params(t), 100);
        assert_eq!(
            check("SIZE=1 SIZE=2"),
            Err(ParamError::Duplicate("SIZE".into()))
        );
        assert_eq!(check("SIZE=x"), Err(ParamError::BadSize));
        assert_eq!(check("SIZE=101 BODY=x"), Err(ParamError::TooBig));
        assert_eq!(check("BODY=BINARYMIME"), Err(ParamError::UnsupportedBody));
        assert_eq!(check("BODY"), Err(ParamError::UnsupportedBody));
        assert_eq!(
            check("SMTPUTF8=1"),
            Err(ParamError::Unsupported("SMTPUTF8".into()))
        );
        assert_eq!(check("RET=ALL"), Err(ParamError::Unsupported("RET".into())));
        assert_eq!(
            check("ENVID=a+zz"),
            Err(ParamError::Unsupported("ENVID".into()))
        );
        let long = format!("ENVID={}", "a".repeat(MAX_ENVID + 1));
        assert_eq!(check(&long), Err(ParamError::Unsupported("ENVID".into())));
        assert_eq!(check("XFOO"), Err(ParamError::Unsupported("XFOO".into())));
    }

    #[test]
    fn rcpt_parameters() {
        let p = RcptParams::from_params(&params("NOTIFY=success,Failure ORCPT=rfc822;a+2Bb@x"))
            .unwrap();
        assert_eq!(p.notify, "SUCCESS,FAILURE");
        assert_eq!(p.orcpt, "rfc822;a+2Bb@x");
        assert!(RcptParams::from_params(&params("NOTIFY=NEVER")).is_ok());
        assert!(RcptParams::from_params(&params("ORCPT=utf-8;caf\u{e9}@x")).is_ok());
        for bad in [
            "NOTIFY=SOMETIMES",
            "ORCPT=noseparator",
            "ORCPT=;x",
            "ORCPT=rfc822;a=b",
            "X=1",
        ] {
            assert!(RcptParams::from_params(&params(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            RcptParams::from_params(&params("NOTIFY=NEVER NOTIFY=NEVER")),
            Err(ParamError::Duplicate("NOTIFY".into()))
        );
    }
}
