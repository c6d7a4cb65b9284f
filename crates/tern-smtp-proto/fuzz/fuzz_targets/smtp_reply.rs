//! Fuzzes the SMTP reply parser tern-queue's outbound client reads remote servers with: any input
//! must parse, ask for more or be refused, never panic; what it asks to buffer stays within
//! the bounds; a reply parsed from a prefix agrees with the reply parsed from the whole; and
//! what a reply shows in logs and DSNs is one bounded line.
#![no_main]

use std::mem::discriminant;

use libfuzzer_sys::fuzz_target;
use tern_smtp_proto::reply::{parse, MAX_DISPLAY, MAX_LINE, MAX_LINES};

fuzz_target!(|data: &[u8]| {
    let full = parse(data);
    match &full {
        Ok(Some((reply, used))) => {
            assert!(*used > 0 && *used <= data.len());
            assert_eq!(data[used - 1], b'\n');
            assert!(*used <= MAX_LINE * MAX_LINES);
            assert!((200..600).contains(&reply.code));
            assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
            for line in &reply.lines {
                assert!(!line.chars().any(char::is_control));
                assert!(line.len() <= 3 * MAX_LINE);
            }
            if let Some(enh) = &reply.enhanced {
                assert!(tern_smtp_proto::enhanced::matches_code(enh, reply.code));
            }
            // What the server side would write for it parses back to the same reply.
            let mut wire = Vec::new();
            reply.write_to(&mut wire);
            if let Ok(Some((again, n))) = parse(&wire) {
                assert_eq!(n, wire.len());
                assert_eq!((again.code, &again.enhanced), (reply.code, &reply.enhanced));
            }
            let shown = reply.to_string();
            assert!(shown.chars().count() <= MAX_DISPLAY);
            assert!(shown.starts_with(&reply.code.to_string()));
            assert!(!shown.chars().any(char::is_control));
            // The reply is a complete unit: parsing just its octets gives it again.
            assert_eq!(parse(&data[..*used]), full);
        }
        // Needing more input means holding less than one maximal reply.
        Ok(None) => assert!(data.len() < MAX_LINE * MAX_LINES),
        Err(_) => {}
    }
    // Incremental reading: a prefix needs more input, or already shows the same outcome.
    let cut = data.len() * usize::from(data.first().copied().unwrap_or(0)) / 256;
    let prefix = parse(&data[..cut]);
    match (&full, &prefix) {
        (_, Ok(None)) => {}
        (Ok(Some((_, used))), Ok(Some(_))) => {
            assert!(cut >= *used);
            assert_eq!(prefix, full);
        }
        // The same kind of error (its text quotes only what has arrived).
        (Err(a), Err(b)) => assert_eq!(discriminant(a), discriminant(b)),
        _ => panic!("prefix of {cut} gave {prefix:?}, the whole {full:?}"),
    }
});
