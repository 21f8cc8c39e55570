//! The machine's batch-verification bound, measured with the build that runs the testnet:
//! signatures per second verified by `Verifier::verify_many` (batches of 1,024 over rayon's
//! threads, on all cores), over at least `min_seconds`. Four validators that each verify
//! every tx once can commit at most this divided by four.
//!
//! Each pass uses a fresh `Verifier`, so no signature is found in a cache; its keys are
//! decompressed once per pass (one per sending account, about 1,000 against up to 65,536
//! signatures), as a node keeps the keys of active accounts decompressed.

use super::presign::Presigned;
use std::time::{Duration, Instant};
use tally_crypto::{ChainId, SignedItem, Verifier, VerifierConfig};

pub const BATCH: usize = 1024;

/// Signatures per second over the txs of `pre` (at most 65,536 of them, again and again).
pub fn signatures_per_second(pre: &Presigned, chain_id: &ChainId, min_seconds: f64) -> f64 {
    let n = pre.len().min(65_536) as u32;
    let txs: Vec<tally_ledger::Tx> = (0..n).map(|i| pre.tx(i)).collect();
    let messages: Vec<Vec<u8>> = txs.iter().map(|t| t.signing_bytes(chain_id)).collect();
    let items: Vec<SignedItem<'_>> = txs
        .iter()
        .zip(&messages)
        .map(|(tx, message)| SignedItem { key: tx.from(), message, signature: &tx.signature })
        .collect();
    let config =
        VerifierConfig { key_cache_max: 1 << 14, sig_cache_max: 1 << 17, batch_size: BATCH };
    let started = Instant::now();
    let mut verified = 0u64;
    while verified == 0 || started.elapsed() < Duration::from_secs_f64(min_seconds) {
        let verifier = Verifier::new(config);
        let results = verifier.verify_many(&items);
        assert!(results.iter().all(Result::is_ok), "a pre-signed tx does not verify");
        verified += items.len() as u64;
    }
    verified as f64 / started.elapsed().as_secs_f64()
}
