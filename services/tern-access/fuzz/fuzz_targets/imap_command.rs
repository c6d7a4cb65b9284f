//! Any bytes as an IMAP command: the guarded parse never panics or overflows the stack, a
//! parsed command never claims more bytes than it was given, and an oversized literal is
//! always refused rather than requested.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_access::imap::command::{parse, Parsed};

fuzz_target!(|data: &[u8]| {
    match parse(data, 4096) {
        Parsed::Command(_, used) => assert!(used <= data.len()),
        Parsed::NeedLiteral { length, .. } => assert!(length <= 4096),
        Parsed::LiteralTooBig { length, .. } => assert!(length > 4096),
        Parsed::Incomplete | Parsed::Bad { .. } => {}
    }
});
