//! A whole SASL exchange on any client bytes: the first byte picks the mechanism and whether
//! the first line is an initial response, the rest is split into response lines at `\n`.
//! Never panics; finished credentials always have a non-empty user and password without NUL,
//! and an exchange never finishes after more responses than its mechanism takes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_sasl::{Exchange, Mechanism, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(first & 1)];
    let mut lines = rest.split(|&b| b == b'\n');
    let initial = if first & 2 != 0 { lines.next() } else { None };
    let Ok((mut exchange, mut step)) = Exchange::start(mechanism, initial) else {
        return;
    };
    let mut responses = usize::from(initial.is_some());
    loop {
        match step {
            Step::Done(c) => {
                assert!(!c.user.is_empty() && !c.password.is_empty());
                assert!(!c.user.contains('\0') && !c.password.contains('\0'));
                let most = match mechanism {
                    Mechanism::Plain => 1,
                    Mechanism::Login => 2,
                };
                assert!(responses <= most, "{responses} responses for {mechanism}");
                return;
            }
            Step::Challenge(_) => {
                let Some(line) = lines.next() else { return };
                responses += 1;
                match exchange.respond(line) {
                    Ok(next) => step = next,
                    Err(_) => return,
                }
            }
        }
    }
});
