#![no_main]
//! Fuzz target `proofs`: see `tally_fuzz::proofs` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::proofs::seeds) },
    |data: &[u8]| tally_fuzz::proofs::run(data)
);
