#![no_main]
//! Fuzz target `consensus_core`: see `tally_fuzz::consensus_core` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::consensus_core::seeds) },
    |data: &[u8]| tally_fuzz::consensus_core::run(data)
);
