//! SMTP command lines (RFC 5321 §4.1, with the ESMTP verbs of RFC 3207, 4954 and 3030) parsed
//! into [`Command`]s: a pure function over the bytes of one line, without its CRLF.
//!
//! The grammar is applied strictly where ambiguity would be dangerous (paths must be in angle
//! brackets, parameters are `keyword[=value]`) and leniently where real clients differ
//! harmlessly (a space after `FROM:`/`TO:`, verbs in any case, a source route, which RFC 5321
//! §4.1.1.3 says to accept and ignore). Addresses may carry UTF-8 (RFC 6531); whether that is
//! allowed in a given transaction (SMTPUTF8 given) is the session's decision, so
//! [`Mailbox::is_ascii`] tells it. The parameters are checked and typed in
//! [`crate::params`].

use std::fmt;

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path including the angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Most ESMTP parameters on one MAIL or RCPT line: real clients send at most five or six.
pub const MAX_PARAMS: usize = 16;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`.
    Helo(String),
    /// `EHLO domain-or-address-literal`.
    Ehlo(String),
    /// `MAIL FROM:<reverse-path> [params]`; `from` is `None` for the null path `<>`.
    Mail {
        /// The sender, or `None` for `<>`.
        from: Option<Mailbox>,
        /// ESMTP parameters in order, keywords upper-cased.
        params: Vec<Param>,
    },
    /// `RCPT TO:<forward-path> [params]`.
    Rcpt {
        /// The recipient (`<Postmaster>` without a domain is given the domain `""`).
        to: Mailbox,
        /// ESMTP parameters in order, keywords upper-cased.
        params: Vec<Param>,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets of the chunk that follows the command line.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `HELP [topic]`.
    Help(Option<String>),
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// Mechanism name, upper-cased.
        mechanism: String,
        /// The initial response, if given (`=` stands for an empty one).
        initial: Option<String>,
    },
    /// TURN, SEND, SOML, SAML: obsolete commands (RFC 5321 §4.1 leaves them unimplemented),
    /// answered 502.
    Obsolete(&'static str),
}

/// An ESMTP parameter: `KEYWORD` or `KEYWORD=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Upper-cased keyword.
    pub keyword: String,
    /// The value as sent, if any.
    pub value: Option<String>,
}

/// A mailbox `local@domain` from a path. The local part keeps its quotes if it had them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Local part as written (dot-string, or quoted-string with its quotes).
    pub local: String,
    /// Domain or address literal as written.
    pub domain: String,
}

impl Mailbox {
    /// Whether the address is all ASCII (otherwise it needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// `local@domain`, or just the local part for `<Postmaster>`.
    pub fn address(&self) -> String {
        if self.domain.is_empty() {
            self.local.clone()
        } else {
            format!("{}@{}", self.local, self.domain)
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())
    }
}

/// Why a line is not a command the server can act on; each maps to one reply code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a command this server knows: 500.
    #[error("unrecognized command")]
    Unknown,
    /// A known command with arguments that do not parse: 501.
    #[error("{0}")]
    Syntax(&'static str),
    /// An address that does not parse or is too long: 501 with 5.1.3 (or 5.1.7 for senders).
    #[error("{0}")]
    BadAddress(&'static str),
}

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| {
        // Non-UTF-8 bytes can only appear in arguments; a verb is ASCII.
        if line.iter().take_while(|b| **b != b' ').all(u8::is_ascii) {
            ParseError::Syntax("invalid UTF-8 in the arguments")
        } else {
            ParseError::Unknown
        }
    })?;
    if text.bytes().any(|b| b < 0x20 && b != b'\t') || text.contains('\u{7f}') {
        return Err(ParseError::Syntax("control characters in the command"));
    }
    let (verb, rest) = match text.find(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    if verb.len() > 12 || !verb.is_ascii() {
        return Err(ParseError::Unknown);
    }
    let verb = verb.to_ascii_uppercase();
    let rest = rest.trim_end_matches([' ', '\t']);
    match verb.as_str() {
        "HELO" => domain_arg(rest).map(Command::Helo),
        "EHLO" => domain_arg(rest).map(Command::Ehlo),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(rest, Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(rest, Command::Rset),
        "QUIT" => no_args(rest, Command::Quit),
        "STARTTLS" => no_args(rest, Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "VRFY" | "EXPN" => {
            let arg = rest.trim();
            if arg.is_empty() {
                return Err(ParseError::Syntax("an argument is required"));
            }
            Ok(if verb == "VRFY" {
                Command::Vrfy(arg.to_string())
            } else {
                Command::Expn(arg.to_string())
            })
        }
        "HELP" => {
            let arg = rest.trim();
            Ok(Command::Help((!arg.is_empty()).then(|| arg.to_string())))
        }
        "AUTH" => parse_auth(rest),
        "TURN" => Ok(Command::Obsolete("TURN")),
        "SEND" => Ok(Command::Obsolete("SEND")),
        "SOML" => Ok(Command::Obsolete("SOML")),
        "SAML" => Ok(Command::Obsolete("SAML")),
        _ => Err(ParseError::Unknown),
    }
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, ParseError> {
    if rest.trim().is_empty() {
        Ok(cmd)
    } else {
        Err(ParseError::Syntax("this command takes no arguments"))
    }
}

/// HELO/EHLO argument: a domain or an address literal. Clients are lenient here (some send
/// a bare IP, or an underscore in a host name), so only emptiness, spaces and length are
/// refused: the argument is only recorded, never trusted.
fn domain_arg(rest: &str) -> Result<String, ParseError> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(ParseError::Syntax("a domain name is required"));
    }
    if arg.contains([' ', '\t']) || arg.len() > MAX_DOMAIN {
        return Err(ParseError::Syntax("invalid domain name"));
    }
    Ok(arg.to_string())
}

/// Strips a case-insensitive `prefix` ("FROM:" / "TO:") and an optional space after it.
fn after_prefix<'a>(rest: &'a str, prefix: &str) -> Option<&'a str> {
    let head = rest.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    Some(rest[prefix.len()..].trim_start_matches(' '))
}

fn parse_mail(rest: &str) -> Result<Command, ParseError> {
    let arg =
        after_prefix(rest, "FROM:").ok_or(ParseError::Syntax("syntax: MAIL FROM:<address>"))?;
    let (path, params) = split_path(arg)?;
    let from = if path == "<>" {
        None
    } else {
        Some(parse_path(path)?)
    };
    Ok(Command::Mail {
        from,
        params: parse_params(params)?,
    })
}

fn parse_rcpt(rest: &str) -> Result<Command, ParseError> {
    let arg = after_prefix(rest, "TO:").ok_or(ParseError::Syntax("syntax: RCPT TO:<address>"))?;
    let (path, params) = split_path(arg)?;
    let inner = &path[1..path.len() - 1];
    let to = if inner.eq_ignore_ascii_case("postmaster") {
        Mailbox {
            local: "postmaster".into(),
            domain: String::new(),
        }
    } else {
        parse_path(path)?
    };
    Ok(Command::Rcpt {
        to,
        params: parse_params(params)?,
    })
}

/// Splits `<path> params` at the closing bracket (a quoted local part may contain `>`).
fn split_path(arg: &str) -> Result<(&str, &str), ParseError> {
    if !arg.starts_with('<') {
        return Err(ParseError::Syntax("the address must be in angle brackets"));
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in arg.char_indices().skip(1) {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let path = &arg[..=i];
                if path.len() > MAX_PATH {
                    return Err(ParseError::BadAddress("address too long"));
                }
                let rest = &arg[i + 1..];
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(ParseError::Syntax("a space must follow the address"));
                }
                return Ok((path, rest.trim_start_matches(' ')));
            }
            _ => {}
        }
    }
    Err(ParseError::Syntax("the address must be in angle brackets"))
}

/// Parses `<[source-route:]local@domain>`.
fn parse_path(path: &str) -> Result<Mailbox, ParseError> {
    let mut inner = &path[1..path.len() - 1];
    if inner.starts_with('@') {
        // A source route (RFC 5321 §4.1.1.3 / Appendix C): accepted and ignored.
        let colon = inner
            .find(':')
            .ok_or(ParseError::BadAddress("invalid source route"))?;
        inner = &inner[colon + 1..];
    }
    parse_mailbox(inner)
}

/// Parses `local@domain` (RFC 5321 §4.1.2 Mailbox, with RFC 6531's UTF-8).
pub fn parse_mailbox(text: &str) -> Result<Mailbox, ParseError> {
    let at = text
        .rfind('@')
        .ok_or(ParseError::BadAddress("the address has no domain"))?;
    let (local, domain) = (&text[..at], &text[at + 1..]);
    if local.is_empty() {
        return Err(ParseError::BadAddress("empty local part"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(ParseError::BadAddress("local part longer than 64 octets"));
    }
    if local.starts_with('"') {
        if !valid_quoted(local) {
            return Err(ParseError::BadAddress("invalid quoted local part"));
        }
    } else if !valid_dot_string(local) {
        return Err(ParseError::BadAddress("invalid local part"));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(ParseError::BadAddress("domain longer than 255 octets"));
    }
    if !(valid_domain(domain) || valid_address_literal(domain)) {
        return Err(ParseError::BadAddress("invalid domain"));
    }
    Ok(Mailbox {
        local: local.to_string(),
        domain: domain.to_string(),
    })
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn valid_dot_string(s: &str) -> bool {
    s.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn valid_quoted(s: &str) -> bool {
    if s.len() < 2 || !s.ends_with('"') {
        return false;
    }
    let inner = &s[1..s.len() - 1];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) if (' '..='~').contains(&n) => {}
                _ => return false,
            },
            '"' => return false,
            c if c == ' ' || c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c) => {}
            c if !c.is_ascii() => {}
            _ => return false,
        }
    }
    true
}

/// RFC 5321 Domain, with U-labels (RFC 6531) allowed: labels of letters, digits and inner
/// hyphens, 63 octets at most.
fn valid_domain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

fn valid_address_literal(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if let Some(v6) = inner.strip_prefix("IPv6:") {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    inner.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `keyword[=value]` separated by spaces (RFC 5321 §4.1.2 Mail-parameters).
fn parse_params(text: &str) -> Result<Vec<Param>, ParseError> {
    let mut params = Vec::new();
    for item in text.split(' ').filter(|s| !s.is_empty()) {
        if params.len() >= MAX_PARAMS {
            return Err(ParseError::Syntax("too many parameters"));
        }
        let (keyword, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        let keyword_ok = keyword
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && keyword
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !keyword_ok {
            return Err(ParseError::Syntax("invalid parameter keyword"));
        }
        if let Some(v) = value {
            // esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed by RFC 6531.
            if v.is_empty()
                || v.chars()
                    .any(|c| c == '=' || (c.is_ascii() && !c.is_ascii_graphic()))
            {
                return Err(ParseError::Syntax("invalid parameter value"));
            }
        }
        params.push(Param {
            keyword: keyword.to_ascii_uppercase(),
            value: value.map(str::to_string),
        });
    }
    Ok(params)
}

fn parse_bdat(rest: &str) -> Result<Command, ParseError> {
    let mut parts = rest.split(' ').filter(|s| !s.is_empty());
    let size = parts
        .next()
        .filter(|s| s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(ParseError::Syntax("syntax: BDAT size [LAST]"))?;
    let last = match parts.next() {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax("syntax: BDAT size [LAST]")),
    };
    if parts.next().is_some() {
        return Err(ParseError::Syntax("syntax: BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, ParseError> {
    let mut parts = rest.split(' ').filter(|s| !s.is_empty());
    let mechanism = parts
        .next()
        .filter(|m| {
            m.len() <= 20
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or(ParseError::Syntax(
            "syntax: AUTH mechanism [initial-response]",
        ))?
        .to_ascii_uppercase();
    let initial = parts.next().map(str::to_string);
    if parts.next().is_some() {
        return Err(ParseError::Syntax(
            "syntax: AUTH mechanism [initial-response]",
        ));
    }
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: local.into(),
            domain: domain.into(),
        }
    }

    #[test]
    fn the_seed_session_commands() {
        assert_eq!(
            parse(b"HELO client.example"),
            Ok(Command::Helo("client.example".into()))
        );
        assert_eq!(
            parse(b"ehlo [127.0.0.1]"),
            Ok(Command::Ehlo("[127.0.0.1]".into()))
        );
        assert_eq!(
            parse(b"MAIL FROM:<alice@example.test>"),
            Ok(Command::Mail {
                from: Some(mb("alice", "example.test")),
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"rcpt to: <Bob@Example.Test>"),
            Ok(Command::Rcpt {
                to: mb("Bob", "Example.Test"),
                params: vec![]
            })
        );
        assert_eq!(parse(b"DATA"), Ok(Command::Data));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"RSET"), Ok(Command::Rset));
        assert_eq!(parse(b"NOOP anything"), Ok(Command::Noop));
        assert_eq!(parse(b"HELP"), Ok(Command::Help(None)));
        assert_eq!(parse(b"HELP MAIL"), Ok(Command::Help(Some("MAIL".into()))));
        assert_eq!(parse(b"VRFY bob"), Ok(Command::Vrfy("bob".into())));
        assert_eq!(parse(b"EXPN list"), Ok(Command::Expn("list".into())));
        assert_eq!(parse(b"STARTTLS"), Ok(Command::StartTls));
        for (verb, name) in [
            ("TURN", "TURN"),
            ("send from:<a@b>", "SEND"),
            ("SOML", "SOML"),
            ("SAML", "SAML"),
        ] {
            assert_eq!(parse(verb.as_bytes()), Ok(Command::Obsolete(name)));
        }
    }

    #[test]
    fn null_path_params_and_source_routes() {
        assert_eq!(
            parse(b"MAIL FROM:<> SIZE=1000 BODY=8BITMIME SMTPUTF8"),
            Ok(Command::Mail {
                from: None,
                params: vec![
                    Param {
                        keyword: "SIZE".into(),
                        value: Some("1000".into())
                    },
                    Param {
                        keyword: "BODY".into(),
                        value: Some("8BITMIME".into())
                    },
                    Param {
                        keyword: "SMTPUTF8".into(),
                        value: None
                    },
                ]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.example,@b.example:joe@c.example> notify=success,failure"),
            Ok(Command::Rcpt {
                to: mb("joe", "c.example"),
                params: vec![Param {
                    keyword: "NOTIFY".into(),
                    value: Some("success,failure".into())
                }]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt {
                to: mb("postmaster", ""),
                params: vec![]
            })
        );
    }

    #[test]
    fn quoted_local_parts_literals_and_utf8() {
        assert_eq!(
            parse(br#"MAIL FROM:<"john > doe"@example.com>"#),
            Ok(Command::Mail {
                from: Some(mb("\"john > doe\"", "example.com")),
                params: vec![]
            })
        );
        assert!(matches!(
            parse(b"RCPT TO:<x@[192.0.2.1]>"),
            Ok(Command::Rcpt { .. })
        ));
        assert!(matches!(
            parse(b"RCPT TO:<x@[IPv6:::1]>"),
            Ok(Command::Rcpt { .. })
        ));
        let utf8 = "RCPT TO:<用户@例子.广告>";
        match parse(utf8.as_bytes()) {
            Ok(Command::Rcpt { to, .. }) => assert!(!to.is_ascii()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"FOO"), Err(ParseError::Unknown));
        assert_eq!(parse(b""), Err(ParseError::Unknown));
        assert!(matches!(parse(b"HELO"), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse(b"MAIL alice@example.test"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:alice@example.test"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:<alice@example.test"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<bob>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<bob@-x.test>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a..b@x.test>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<x@[300.1.1.1]>"),
            Err(ParseError::BadAddress(_))
        ));
        let long = format!("RCPT TO:<{}@x.test>", "a".repeat(65));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.test>SIZE=1"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.test> =1"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse(b"DATA now"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"BDAT x"), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse(b"BDAT 99999999999999999999"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.test>\x00"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse(b"\xff\xfe"), Err(ParseError::Unknown)));
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(
            parse(b"BDAT 100"),
            Ok(Command::Bdat {
                size: 100,
                last: false
            })
        );
        assert_eq!(
            parse(b"bdat 0 last"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            parse(b"AUTH plain AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFsaWNlAHNlY3JldA==".into())
            })
        );
        assert_eq!(
            parse(b"AUTH LOGIN"),
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            })
        );
    }
}
