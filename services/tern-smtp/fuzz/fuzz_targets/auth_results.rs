//! Any message, cut into pieces at fuzzer-chosen places, through the filter that removes
//! this host's Authentication-Results claims: it never panics, its output does not depend on
//! where the input was cut, it only ever removes octets (the output is never longer), and a
//! message with no field of that name (and no field too long to read) passes unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smtp::claims::ClaimFilter;

fn run(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut f = ClaimFilter::new("mx.tern.test");
    let mut out = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    for b in bounds {
        if b >= at {
            f.push(&input[at..b], &mut out);
            at = b;
        }
    }
    f.finish(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let cuts: Vec<usize> = data[..3].iter().map(|b| *b as usize * 5).collect();
    let input = &data[3..];
    let whole = run(input, &[]);
    assert_eq!(whole, run(input, &cuts));
    assert!(whole.len() <= input.len());
    let named = input
        .windows(22)
        .any(|w| w.eq_ignore_ascii_case(b"Authentication-Results"));
    // (A field of over 64 KiB whose name could still become that one is removed too.)
    if !named && input.len() <= tern_smtp::claims::MAX_FIELD {
        assert_eq!(whole, input);
    }
});
