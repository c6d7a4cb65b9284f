//! Fuzzes the POP3 wire form: the announced size is the size of what RETR sends, stuffing
//! round-trips, a message sent in pieces is the same as sent whole, TOP sends a prefix of
//! what RETR sends, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_mail::lines::{canonical, dot_stuff, size, DotStuffer};

/// The wire form of `data` fed in pieces of `piece` octets.
fn sent(data: &[u8], piece: usize, mut w: DotStuffer) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        w.push(chunk, &mut out);
    }
    w.finish(&mut out);
    out
}

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
    let piece = data.first().copied().unwrap_or(1) as usize;
    assert_eq!(sent(data, piece, DotStuffer::whole()), wire);
    let n = data.get(1).copied().unwrap_or(0) as u32;
    let top = sent(data, piece, DotStuffer::top(n));
    let top_body = top.strip_suffix(b".\r\n").expect("terminated");
    assert!(body.starts_with(top_body));
    assert_eq!(top, sent(data, data.len().max(1), DotStuffer::top(n)));
});
