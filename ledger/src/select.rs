//! The proposer's side of execution: choosing which candidate txs go into a block.
//!
//! Candidates (from the mempool, in its order) are taken in order; a tx that is invalid on the
//! state left by the txs already chosen is skipped and reported, never included, so the
//! resulting block passes [`crate::execute_block`]. Signatures are verified in batches of at
//! most the number of free slots, so a large mempool does not cost a verification of txs that
//! could not fit anyway (a node's verifier knows the txs its mempool verified:
//! [`crate::TxVerifier::known_verified`]).

use crate::execute::{verify_tx_signatures, ExecutionOutcome, Overlay, TxError, TxVerifier};
use crate::limits::{BLOCK_TXS_MAX, TX_BYTES};
use crate::state_tree::StateTree;
use crate::tx::{Tx, TxHash};
use tally_crypto::ChainId;

/// How much a block may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectLimits {
    /// Most txs (capped at [`BLOCK_TXS_MAX`]).
    pub txs_max: u32,
    /// Most bytes of encoded txs (the block's byte limit minus its header and length prefix).
    pub tx_bytes_max: u64,
}

/// A candidate that was left out because it is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedTx {
    /// Position in the candidate list.
    pub index: usize,
    pub tx_hash: TxHash,
    pub error: TxError,
}

/// The chosen txs, their execution on the parent state, and what was skipped.
#[derive(Clone, Debug)]
pub struct Selection {
    pub txs: Vec<Tx>,
    pub outcome: ExecutionOutcome,
    /// Invalid candidates, in candidate order. The mempool should drop them (or, for
    /// `BadNonce` with a nonce ahead of the sender's, keep them for later).
    pub skipped: Vec<SkippedTx>,
    /// How many candidates were looked at (included or skipped); those from this index on
    /// were not, because the block was full.
    pub considered: usize,
}

/// Chooses txs from `candidates`, in order, that are valid on `state` one after another.
pub fn select_txs(
    state: &StateTree,
    candidates: &[Tx],
    chain_id: &ChainId,
    limits: SelectLimits,
    verifier: &impl TxVerifier,
) -> Selection {
    let txs_max = limits.txs_max.min(BLOCK_TXS_MAX) as usize;
    let fit_by_bytes = usize::try_from(limits.tx_bytes_max / TX_BYTES as u64).unwrap_or(usize::MAX);
    let capacity = txs_max.min(fit_by_bytes);
    let mut overlay = Overlay::new(state);
    let mut chosen: Vec<Tx> = Vec::new();
    let mut chosen_hashes: Vec<TxHash> = Vec::new();
    let mut skipped = Vec::new();
    let mut next = 0;
    while chosen.len() < capacity && next < candidates.len() {
        let batch_len = (capacity - chosen.len()).min(candidates.len() - next);
        let batch = &candidates[next..next + batch_len];
        let hashes: Vec<TxHash> = batch.iter().map(Tx::hash).collect();
        let verdicts = verify_tx_signatures(batch, &hashes, chain_id, verifier);
        for (offset, ((tx, hash), verdict)) in batch.iter().zip(hashes).zip(verdicts).enumerate() {
            let applied = verdict.map_err(TxError::BadSignature).and_then(|()| overlay.apply(tx));
            match applied {
                Ok(()) => {
                    chosen.push(*tx);
                    chosen_hashes.push(hash);
                }
                Err(error) => {
                    skipped.push(SkippedTx { index: next + offset, tx_hash: hash, error })
                }
            }
        }
        next += batch_len;
    }
    let outcome = ExecutionOutcome::new(state, overlay.into_changes(), chosen_hashes);
    Selection { txs: chosen, outcome, skipped, considered: next }
}
