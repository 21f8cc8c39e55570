#![no_main]
//! Fuzz target `wire_decode`: see `tally_fuzz::wire_decode` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::wire_decode::seeds) },
    |data: &[u8]| tally_fuzz::wire_decode::run(data)
);
