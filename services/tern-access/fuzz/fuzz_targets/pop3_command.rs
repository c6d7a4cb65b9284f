//! Fuzzes the POP3 command parser: any line must parse or be refused, never panic, and a
//! parsed command's text arguments must come from the line itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_access::pop3::command::{parse, Command};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = parse(data) {
        let line = String::from_utf8_lossy(data);
        match cmd {
            Command::User(s) | Command::Pass(s) => assert!(line.contains(&s)),
            Command::Apop { name, .. } => assert!(line.contains(&name)),
            _ => {}
        }
    }
});
