#![no_main]
//! Fuzz target `mempool`: see `tally_fuzz::mempool` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::mempool::seeds) },
    |data: &[u8]| tally_fuzz::mempool::run(data)
);
