//! The POP3 command grammar: one line (without its CRLF) in, one [`Command`] out.
//!
//! RFC 1939 §3: a keyword of three or four characters, case-insensitive, then arguments
//! separated by single spaces; RFC 2449 §4 bounds a command line at 255 octets including the
//! CRLF. PASS takes the rest of the line as its argument (RFC 1939 §7: a password may contain
//! spaces). Message numbers are unsigned decimal, 1 or more, and must fit in 32 bits (leading
//! zeros are accepted, as other servers accept them).

use thiserror::Error;

/// Longest command line, excluding CRLF (RFC 2449 §4: 255 octets including it).
pub const MAX_LINE: usize = 253;

/// A parsed POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// USER name
    User(String),
    /// PASS string (may contain spaces)
    Pass(String),
    /// APOP name digest (digest: 32 lower- or upper-case hex digits)
    Apop { name: String, digest: String },
    /// STAT
    Stat,
    /// LIST [msg]
    List(Option<u32>),
    /// RETR msg
    Retr(u32),
    /// DELE msg
    Dele(u32),
    /// NOOP
    Noop,
    /// RSET
    Rset,
    /// QUIT
    Quit,
    /// TOP msg n
    Top { msg: u32, lines: u32 },
    /// UIDL [msg]
    Uidl(Option<u32>),
    /// CAPA
    Capa,
    /// STLS
    Stls,
    /// AUTH [mechanism [initial-response]] (no mechanism: list them, RFC 5034 §4)
    Auth {
        mechanism: Option<String>,
        initial_response: Option<String>,
    },
}

/// Why a line is not a valid command; the text is suitable after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// An empty line.
    #[error("empty command")]
    Empty,
    /// Longer than RFC 2449 allows.
    #[error("command line too long")]
    TooLong,
    /// Not UTF-8 (POP3 commands are ASCII; UTF-8 arguments are tolerated).
    #[error("command is not valid text")]
    NotText,
    /// A keyword this server does not know.
    #[error("unknown command")]
    Unknown,
    /// A known keyword with arguments that do not fit its syntax.
    #[error("{0}")]
    Syntax(&'static str),
}

/// Parses one command line (without the trailing CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.len() > MAX_LINE {
        return Err(ParseError::TooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
    if line.chars().any(|c| c.is_control()) {
        return Err(ParseError::NotText);
    }
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    let keyword = keyword.to_ascii_uppercase();
    let args: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let none = |cmd: Command| {
        if rest.is_none() {
            Ok(cmd)
        } else {
            Err(ParseError::Syntax("this command takes no arguments"))
        }
    };
    match keyword.as_str() {
        "USER" => match args.as_slice() {
            [name] if !name.is_empty() => Ok(Command::User(name.to_string())),
            _ => Err(ParseError::Syntax("usage: USER name")),
        },
        "PASS" => match rest {
            Some(p) if !p.is_empty() => Ok(Command::Pass(p.to_string())),
            _ => Err(ParseError::Syntax("usage: PASS password")),
        },
        "APOP" => match args.as_slice() {
            [name, digest]
                if !name.is_empty()
                    && digest.len() == 32
                    && digest.chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                Ok(Command::Apop {
                    name: name.to_string(),
                    digest: digest.to_ascii_lowercase(),
                })
            }
            _ => Err(ParseError::Syntax("usage: APOP name digest")),
        },
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "LIST" => optional_msg(&args, rest.is_some()).map(Command::List),
        "UIDL" => optional_msg(&args, rest.is_some()).map(Command::Uidl),
        "RETR" => one_msg(&args).map(Command::Retr),
        "DELE" => one_msg(&args).map(Command::Dele),
        "TOP" => match args.as_slice() {
            [msg, n] => Ok(Command::Top {
                msg: msg_number(msg)?,
                lines: number(n)?,
            }),
            _ => Err(ParseError::Syntax("usage: TOP msg lines")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial_response: None,
            }),
            [m] if is_mechanism(m) => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial_response: None,
            }),
            [m, ir] if is_mechanism(m) && !ir.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial_response: Some(ir.to_string()),
            }),
            _ => Err(ParseError::Syntax(
                "usage: AUTH [mechanism [initial-response]]",
            )),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn is_mechanism(m: &str) -> bool {
    (1..=20).contains(&m.len())
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn number(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax("a number was expected"));
    }
    s.parse()
        .map_err(|_| ParseError::Syntax("number too large"))
}

fn msg_number(s: &str) -> Result<u32, ParseError> {
    match number(s)? {
        0 => Err(ParseError::Syntax("message numbers start at 1")),
        n => Ok(n),
    }
}

fn one_msg(args: &[&str]) -> Result<u32, ParseError> {
    match args {
        [m] => msg_number(m),
        _ => Err(ParseError::Syntax("exactly one message number expected")),
    }
}

fn optional_msg(args: &[&str], had_space: bool) -> Result<Option<u32>, ParseError> {
    match args {
        [] if !had_space => Ok(None),
        [m] => msg_number(m).map(Some),
        _ => Err(ParseError::Syntax("at most one message number expected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    #[test]
    fn every_command_parses_case_insensitively() {
        assert_eq!(
            p("user alice@example.test"),
            Ok(Command::User("alice@example.test".into()))
        );
        assert_eq!(
            p("PASS secret with spaces"),
            Ok(Command::Pass("secret with spaces".into()))
        );
        assert_eq!(
            p("APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
            Ok(Command::Apop {
                name: "mrose".into(),
                digest: "c4c9334bac560ecc979e58001b3e22fb".into()
            })
        );
        assert_eq!(p("Stat"), Ok(Command::Stat));
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("list 2"), Ok(Command::List(Some(2))));
        assert_eq!(p("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(p("DELE 10"), Ok(Command::Dele(10)));
        assert_eq!(p("NOOP"), Ok(Command::Noop));
        assert_eq!(p("RSET"), Ok(Command::Rset));
        assert_eq!(p("QUIT"), Ok(Command::Quit));
        assert_eq!(p("TOP 1 0"), Ok(Command::Top { msg: 1, lines: 0 }));
        assert_eq!(p("UIDL"), Ok(Command::Uidl(None)));
        assert_eq!(p("uidl 3"), Ok(Command::Uidl(Some(3))));
        assert_eq!(p("CAPA"), Ok(Command::Capa));
        assert_eq!(p("STLS"), Ok(Command::Stls));
        assert_eq!(
            p("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial_response: None
            })
        );
        assert_eq!(
            p("AUTH plain AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some("AGFsaWNlAHNlY3JldA==".into())
            })
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert_eq!(p(""), Err(ParseError::Empty));
        assert_eq!(p("XTND"), Err(ParseError::Unknown));
        assert!(matches!(p("RETR"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR 0"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR -1"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("RETR 99999999999"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("LIST 1 2"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("LIST "), Err(ParseError::Syntax(_))));
        assert!(matches!(p("STAT now"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("PASS"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("APOP mrose nothex"), Err(ParseError::Syntax(_))));
        assert!(matches!(p("TOP 1"), Err(ParseError::Syntax(_))));
        assert_eq!(parse(&[b'N'; 300]), Err(ParseError::TooLong));
        assert_eq!(parse(b"USER \xff\xfe"), Err(ParseError::NotText));
        assert_eq!(parse(b"USER a\x00b"), Err(ParseError::NotText));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep in addition to the fuzz target.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            const ALPHABET: &[u8] = b"LISTRETOPUIDAUTH 0123456789 \xff";
            let bytes: Vec<u8> = (0..len)
                .map(|i| ALPHABET[(seed as usize >> (i % 50)) % ALPHABET.len()])
                .collect();
            let _ = parse(&bytes);
        }
    }
}
