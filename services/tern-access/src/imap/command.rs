//! Turning the bytes of one IMAP command (its line, and the literals the session has already
//! read into it) into a typed command, with the guards a grammar library does not give.
//!
//! The grammar is imap-codec's (2.0 alpha: the only release whose grammar carries IDLE,
//! ENABLE, LITERAL+, MOVE, QUOTA, UNSELECT, UIDPLUS, NAMESPACE, ID and CONDSTORE, which issue 5
//! needs). In front of it:
//! - **Nesting**: the grammar is recursive descent, so 10,000 nested parentheses would be
//!   10,000 stack frames. Parentheses are counted first (outside quoted strings and literals)
//!   and anything deeper than [`MAX_DEPTH`] is refused without parsing.
//! - **Literals**: a literal announcement larger than the caller's bound is reported as
//!   [`Parsed::LiteralTooBig`] (with the tag, for the tagged NO/BAD), never allocated.
//! - **Errors** carry the tag when one can be read, so the reply can be a tagged BAD and the
//!   connection survive, as RFC 3501 §7.1.3 expects.

use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::CommandCodec;

/// Deepest parenthesis nesting accepted (real clients nest SEARCH keys a few levels).
pub const MAX_DEPTH: usize = 64;

/// What the bytes so far amount to.
#[derive(Debug)]
pub enum Parsed {
    /// A complete command, and how many bytes it used.
    Command(Box<Command<'static>>, usize),
    /// The line ends with a literal announcement: the session reads `length` more octets
    /// (after a `+` continuation for a synchronizing literal) and calls again.
    NeedLiteral {
        /// Octets announced.
        length: u32,
        /// Whether the client waits for a continuation request (`{n}`) or not (`{n+}`).
        synchronizing: bool,
    },
    /// More bytes are needed (the line is not complete).
    Incomplete,
    /// A literal over the caller's bound: refused before any of it is read.
    LiteralTooBig {
        /// The command's tag, for the tagged reply.
        tag: String,
        /// Octets announced.
        length: u32,
        /// A non-synchronizing literal's octets are on their way regardless and must be read
        /// off (or the connection closed).
        synchronizing: bool,
    },
    /// Not a valid command.
    Bad {
        /// The tag, when one could be read (else the reply is an untagged BAD).
        tag: Option<String>,
        /// Why, for the client.
        reason: &'static str,
    },
}

/// The tag at the start of `input`, if it has one (RFC 3501 `tag`: ASTRING-CHAR but `+`).
pub fn tag_of(input: &[u8]) -> Option<String> {
    let end = input.iter().position(|b| *b == b' ')?;
    let tag = &input[..end];
    let valid = !tag.is_empty()
        && tag.len() <= 64
        && tag.iter().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    valid.then(|| String::from_utf8_lossy(tag).into_owned())
}

/// Deepest parenthesis nesting in `input`, counted outside quoted strings and literal data.
pub fn nesting_depth(input: &[u8]) -> usize {
    let (mut depth, mut deepest, mut i, mut quoted) = (0usize, 0usize, 0usize, false);
    while i < input.len() {
        let b = input[i];
        if quoted {
            match b {
                b'\\' => i += 1,
                b'"' => quoted = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => quoted = true,
                b'(' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b')' => depth = depth.saturating_sub(1),
                b'{' => {
                    // A literal: `{n}` or `{n+}` then CRLF and n octets that are data.
                    let digits: Vec<u8> = input[i + 1..]
                        .iter()
                        .copied()
                        .take_while(u8::is_ascii_digit)
                        .collect();
                    let after = i + 1 + digits.len();
                    let plus = input.get(after) == Some(&b'+');
                    let close = after + usize::from(plus);
                    if !digits.is_empty() && input.get(close) == Some(&b'}') {
                        let n: usize = std::str::from_utf8(&digits)
                            .ok()
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(usize::MAX);
                        let mut j = close + 1;
                        if input.get(j) == Some(&b'\r') {
                            j += 1;
                        }
                        if input.get(j) == Some(&b'\n') {
                            j += 1;
                        }
                        i = j.saturating_add(n);
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    deepest
}

/// Parses the command at the start of `input` (complete lines and the literals read so far).
/// `max_literal` bounds any literal announced (APPEND's message, a long search string).
pub fn parse(input: &[u8], max_literal: u32) -> Parsed {
    if nesting_depth(input) > MAX_DEPTH {
        return Parsed::Bad {
            tag: tag_of(input),
            reason: "parentheses nested too deeply",
        };
    }
    match CommandCodec::default().decode(input) {
        Ok((rest, command)) => {
            let used = input.len() - rest.len();
            Parsed::Command(
                Box::new(imap_codec::imap_types::IntoStatic::into_static(command)),
                used,
            )
        }
        Err(CommandDecodeError::Incomplete) => Parsed::Incomplete,
        Err(CommandDecodeError::LiteralFound { tag, length, mode }) => {
            let synchronizing = matches!(mode, LiteralMode::Sync);
            if length > max_literal {
                Parsed::LiteralTooBig {
                    tag: tag.as_ref().to_string(),
                    length,
                    synchronizing,
                }
            } else {
                Parsed::NeedLiteral {
                    length,
                    synchronizing,
                }
            }
        }
        Err(CommandDecodeError::Failed) => Parsed::Bad {
            tag: tag_of(input),
            reason: "syntax error in the command",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::command::CommandBody;

    fn command(input: &[u8]) -> Command<'static> {
        match parse(input, 1 << 20) {
            Parsed::Command(c, used) => {
                assert_eq!(used, input.len());
                *c
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ordinary_commands_parse() {
        assert!(matches!(
            command(b"a1 CAPABILITY\r\n").body,
            CommandBody::Capability
        ));
        assert!(matches!(
            command(b"a2 LOGIN alice \"pw\"\r\n").body,
            CommandBody::Login { .. }
        ));
        assert!(matches!(
            command(b"a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.100>)\r\n").body,
            CommandBody::Fetch { uid: true, .. }
        ));
        assert!(matches!(command(b"a4 IDLE\r\n").body, CommandBody::Idle));
        assert!(matches!(
            command(b"a5 SEARCH OR (FROM x SUBJECT y) NOT SEEN\r\n").body,
            CommandBody::Search { .. }
        ));
    }

    #[test]
    fn literals_are_announced_then_parsed() {
        match parse(b"a1 LOGIN {5}\r\n", 1024) {
            Parsed::NeedLiteral {
                length: 5,
                synchronizing: true,
            } => {}
            other => panic!("{other:?}"),
        }
        match parse(b"a1 LOGIN {5+}\r\n", 1024) {
            Parsed::NeedLiteral {
                length: 5,
                synchronizing: false,
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            command(b"a1 LOGIN {5}\r\nalice pw\r\n").body,
            CommandBody::Login { .. }
        ));
        assert!(matches!(parse(b"a1 LOGIN", 1024), Parsed::Incomplete));
    }

    #[test]
    fn hostile_input_is_refused_without_work() {
        // A literal of 4 GiB - 1: refused with its tag, nothing allocated.
        match parse(b"x APPEND INBOX {4294967295}\r\n", 64 << 20) {
            Parsed::LiteralTooBig {
                tag,
                length: 4294967295,
                synchronizing: true,
            } => assert_eq!(tag, "x"),
            other => panic!("{other:?}"),
        }
        // 10,000 nested parentheses: refused before the recursive grammar sees them.
        let mut deep = b"t1 SEARCH ".to_vec();
        deep.extend(std::iter::repeat_n(b'(', 10_000));
        deep.extend_from_slice(b"ALL");
        deep.extend(std::iter::repeat_n(b')', 10_000));
        deep.extend_from_slice(b"\r\n");
        match parse(&deep, 1024) {
            Parsed::Bad { tag: Some(t), .. } => assert_eq!(t, "t1"),
            other => panic!("{other:?}"),
        }
        // Garbage keeps its tag when it has one.
        match parse(b"t2 FROBNICATE now\r\n", 1024) {
            Parsed::Bad { tag: Some(t), .. } => assert_eq!(t, "t2"),
            other => panic!("{other:?}"),
        }
        match parse(b"\x00\x01\x02\r\n", 1024) {
            Parsed::Bad { tag: None, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_chains_of_prefix_keys_do_not_exhaust_the_stack() {
        for n in [100usize, 2_000, 10_000] {
            let mut chain = b"t3 SEARCH ".to_vec();
            for _ in 0..n {
                chain.extend_from_slice(b"NOT ");
            }
            chain.extend_from_slice(b"ALL\r\n");
            let parsed = parse(&chain, 1024);
            assert!(
                matches!(parsed, Parsed::Command(..) | Parsed::Bad { .. }),
                "{n}"
            );
        }
    }

    #[test]
    fn nesting_skips_quoted_strings_and_literals() {
        assert_eq!(nesting_depth(b"a (b (c)) \"((((\" d"), 2);
        assert_eq!(nesting_depth(b"a {4}\r\n(((( (x)"), 1);
        assert_eq!(nesting_depth(b"a {4+}\r\n((((x"), 0);
    }
}
