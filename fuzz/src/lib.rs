//! The logic of tally's fuzz targets (the `fuzz_targets/*.rs` files are one-line wrappers),
//! so that every target's oracle can be read, tested and reused in one place.
//!
//! Each module is one target: its `run(data)` is the fuzz body and its `seeds()` the inputs
//! committed under `fuzz/corpus/<target>/` (written by [`seeds::write_if_requested`]).

pub mod alloc;
pub mod consensus_core;
pub mod failing_backend;
pub mod fixtures;
pub mod mempool;
pub mod proofs;
pub mod rpc_request;
pub mod seeds;
pub mod signatures;
pub mod store_ops;
pub mod tx_check;
pub mod wire_decode;
