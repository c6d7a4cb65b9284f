//! Any line: the command parser returns a command or an error, never panics; a parsed
//! mailbox re-parses to itself, and no parsed text carries CR or LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smtp::command::{parse, parse_mailbox, Command};

fuzz_target!(|line: &[u8]| {
    let Ok(cmd) = parse(line) else { return };
    let mailboxes = match &cmd {
        Command::Mail { from: Some(m), .. } | Command::Rcpt { to: m, .. } => vec![m.clone()],
        _ => vec![],
    };
    for m in mailboxes {
        let text = m.address();
        assert!(!text.contains(['\r', '\n']));
        if !m.domain.is_empty() {
            assert_eq!(parse_mailbox(&text).as_ref(), Ok(&m));
        }
    }
});
