//! Any bytes as a message: ENVELOPE, BODY and BODYSTRUCTURE never panic, and what they
//! produce is one balanced parenthesized list (literals skipped), as the FETCH response
//! grammar needs whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_parser::MessageParser;
use tern_access::imap::structure::{body_structure, envelope};

/// Checks that `s` is one parenthesized list with balanced parentheses outside quoted
/// strings and literals.
fn balanced(s: &[u8]) -> bool {
    let (mut depth, mut i, mut quoted) = (0i64, 0usize, false);
    if s.first() != Some(&b'(') {
        return false;
    }
    while i < s.len() {
        let b = s[i];
        if quoted {
            match b {
                b'\\' => i += 1,
                b'"' => quoted = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => quoted = true,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 && i + 1 != s.len() {
                        return false;
                    }
                }
                b'{' => {
                    let end = s[i..].iter().position(|c| *c == b'}').map(|p| i + p);
                    let Some(end) = end else { return false };
                    let Ok(n) = std::str::from_utf8(&s[i + 1..end]).unwrap_or("x").parse::<usize>() else {
                        return false;
                    };
                    i = end + 3 + n; // past "}\r\n" and the n octets
                    continue;
                }
                _ => {}
            }
        }
        i += 1;
    }
    depth == 0 && !quoted
}

fuzz_target!(|data: &[u8]| {
    let Some(msg) = MessageParser::default().parse(data) else { return };
    assert!(balanced(&envelope(&msg)));
    assert!(balanced(&body_structure(&msg, true)));
    assert!(balanced(&body_structure(&msg, false)));
});
