#![no_main]
//! Fuzz target `signatures`: see `tally_fuzz::signatures` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::signatures::seeds) },
    |data: &[u8]| tally_fuzz::signatures::run(data)
);
