//! xtext (RFC 3461): any text encodes to valid xtext that decodes back to it; any input
//! either decodes strictly or is refused, never panics; strict and lossy decoding agree on
//! what strict decoding accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smtp_proto::xtext::{decode, decode_lossy, encode};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let encoded = encode(&text);
    assert!(encoded
        .bytes()
        .all(|b| (33..=126).contains(&b) && b != b'='));
    assert_eq!(decode(&encoded).as_deref(), Some(&*text));
    if let Some(strict) = decode(&text) {
        assert_eq!(strict.as_bytes(), decode_lossy(&text).as_slice());
    }
});
