//! Modified UTF-7 mailbox names: any bytes decode or fail without panicking; whatever decodes
//! encodes back to the same bytes (one spelling per name); and every UTF-8 string survives
//! encode then decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_access::imap::utf7::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = decode(data) {
        assert_eq!(encode(&name).as_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let encoded = encode(text);
        assert!(encoded.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(decode(encoded.as_bytes()).as_deref(), Ok(text));
    }
});
