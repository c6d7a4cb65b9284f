//! Any DATA stream, cut into pieces at fuzzer-chosen places: the decoder never panics, the
//! message and the end position do not depend on where the input was cut, the output has no
//! bare CR or LF, and nothing past the size bound is produced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smtp::data::DataDecoder;

fn run(input: &[u8], cuts: &[usize], max: u64) -> (Vec<u8>, usize, bool) {
    let mut d = DataDecoder::new(max);
    let mut out = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    for b in bounds {
        if b < at {
            continue;
        }
        let (used, done) = d.feed(&input[at..b], &mut out);
        at += used;
        if done.is_some() {
            return (out, at, true);
        }
    }
    (out, at, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = u64::from(data[0]) * 16;
    let cuts: Vec<usize> = data[1..3].iter().map(|b| *b as usize * 7).collect();
    let input = &data[3..];
    let whole = run(input, &[], max);
    let pieces = run(input, &cuts, max);
    assert_eq!(whole, pieces);
    let (out, _, _) = whole;
    assert!(out.len() as u64 <= max);
    for (i, b) in out.iter().enumerate() {
        if *b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'));
        }
        if *b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r');
        }
    }
});
