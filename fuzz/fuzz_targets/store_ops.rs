#![no_main]
//! Fuzz target `store_ops`: see `tally_fuzz::store_ops` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::store_ops::seeds) },
    |data: &[u8]| tally_fuzz::store_ops::run(data)
);
