#![no_main]
//! Fuzz target `tx_check`: see `tally_fuzz::tx_check` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::tx_check::seeds) },
    |data: &[u8]| tally_fuzz::tx_check::run(data)
);
