//! Fuzzes the POP3 wire form: the announced size is the size of what RETR sends, stuffing
//! round-trips, TOP never reads past the message, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_access::pop3::wire::top;
use tern_mail::lines::{canonical, dot_stuff, size};

fuzz_target!(|data: &[u8]| {
    let c = canonical(data);
    assert_eq!(c.len() as u64, size(data));
    assert!(c.is_empty() || c.ends_with(b"\r\n"));
    let mut wire = Vec::new();
    dot_stuff(&c, &mut wire);
    let body = wire.strip_suffix(b".\r\n").expect("terminated");
    let mut read = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        read.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    assert_eq!(read, c);
    let n = data.first().copied().unwrap_or(0) as u32;
    assert!(c.starts_with(top(&c, n)));
});
