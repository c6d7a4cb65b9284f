//! Any line: the command parser returns a command or an error, never panics; a parsed
//! mailbox re-parses to itself, no parsed text carries CR or LF, and the typed MAIL and RCPT
//! parameters either refuse or give a canonical form that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smtp_proto::command::{parse, parse_mailbox, Command};
use tern_smtp_proto::params::{MailParams, RcptParams};

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
    match &cmd {
        Command::Mail { params, .. } => {
            if let Ok(p) = MailParams::from_params(params, u64::MAX) {
                let stored = p.to_string();
                assert!(!stored.contains(['\r', '\n']));
                let back = MailParams::from_stored(&stored);
                assert_eq!((back.body, back.smtputf8, back.ret), (p.body, p.smtputf8, p.ret));
                assert_eq!(back.envid, p.envid);
            }
        }
        Command::Rcpt { params, .. } => {
            if let Ok(p) = RcptParams::from_params(params) {
                assert!(!p.notify.contains(['\r', '\n']) && !p.orcpt.contains(['\r', '\n']));
            }
        }
        _ => {}
    }
});
