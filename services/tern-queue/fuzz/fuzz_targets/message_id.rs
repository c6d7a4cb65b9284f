//! `tern_mail::header::first_field` (how the queue reads a message's Message-ID) on any
//! bytes: never panics, returns a bounded value without control characters, and does not
//! depend on what follows the header section.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_mail::header::{first_field, MAX_FIELD};

fuzz_target!(|data: &[u8]| {
    let found = first_field(data, "Message-ID");
    if let Some(v) = &found {
        assert!(!v.is_empty() && v.len() <= MAX_FIELD, "{v:?}");
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
    // Whatever the body holds, a header field found before the blank line stays found.
    if let Some(end) = data.windows(2).position(|w| w == b"\n\n") {
        let mut changed = data[..end + 2].to_vec();
        changed.extend_from_slice(b"Message-ID: <body@x>\n");
        if end + 2 < 200_000 {
            assert_eq!(first_field(&changed, "Message-ID"), found);
        }
    }
});
