#![no_main]
//! Fuzz target `rpc_request`: see `tally_fuzz::rpc_request` for what it feeds and what it checks.

libfuzzer_sys::fuzz_target!(
    init: { tally_fuzz::seeds::write_if_requested(tally_fuzz::rpc_request::seeds) },
    |data: &[u8]| tally_fuzz::rpc_request::run(data)
);
