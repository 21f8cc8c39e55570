//! The load generator behind `loadgen` and `testnet/bench.sh`.
//!
//! 1. Reads the chain id and each sending account's next nonce from a node.
//! 2. Pre-signs every transfer of the run with rayon (`presign`): account `a` sends its
//!    `j`-th transfer as tx `j * accounts + a`; each connection owns the accounts
//!    `a % connections == c` and submits their txs in nonce order to one node, so a node
//!    never sees a nonce gap.
//! 3. Measures the machine's batch-verification bound with the same build (`bound`).
//! 4. Submits (`submit`) with `broadcast_tx_batch` over several connections spread over the
//!    nodes, at a target rate (paced per connection) or open loop (as fast as the nodes
//!    accept; a batch refused as `mempool_full` is retried after a pause).
//! 5. Follows commits (`follow`) by polling one node's blocks and finding our txs in them, and
//!    records submit-to-commit latency: from the moment the batch carrying a tx was sent to
//!    the moment the block holding it was seen committed.
//! 6. Samples each node's resident memory from `/proc/<pid>/status` once a second.
//! 7. Writes a JSON report and an SVG chart (`report`, `chart`) and prints a summary.

pub mod bound;
pub mod chart;
pub mod follow;
pub mod presign;
pub mod report;
pub mod rpc;
pub mod submit;

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the submitting connections.
#[derive(Default, Debug)]
pub struct Counters {
    /// Txs accepted by a node (each counted once).
    pub accepted: AtomicU64,
    /// Refusals that were retried (mempool full, busy, syncing).
    pub refused: AtomicU64,
    /// Txs given up on (refused for another reason).
    pub rejected: AtomicU64,
    /// Failed calls (transport errors, timeouts).
    pub errors: AtomicU64,
    /// `broadcast_tx_batch` calls made.
    pub calls: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Microseconds since `start`, at least 1 (0 means "not submitted").
pub fn micros_since(start: std::time::Instant) -> u64 {
    (start.elapsed().as_micros() as u64).max(1)
}

/// Percentile `p` (0-100) of sorted values, by the nearest-rank method.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(super::percentile(&v, 50.0), 50);
        assert_eq!(super::percentile(&v, 99.0), 99);
        assert_eq!(super::percentile(&v, 100.0), 100);
        assert_eq!(super::percentile(&[7], 90.0), 7);
        assert_eq!(super::percentile(&[], 50.0), 0);
    }
}
