//! valid(v): the ledger's verdict on a proposed block, the same on every honest validator.
//!
//! Checks, cheapest first, so that a bad block costs as little as possible: chain id, height,
//! parent, time, proposer membership, validators hash, tx count and byte limits, tx root; only
//! then signatures (one batch) and execution, whose state root must match the header's.
//!
//! Not checked here: that the proposer is the one consensus expects for the round (the round
//! is not in the header; the node compares `header.proposer` with
//! `ValidatorSet::proposer(height, round)`), and that the time is not too far ahead of the
//! local clock (the ledger has no clock).

use crate::block::Block;
use crate::execute::{execute_block_hashed, ExecError, ExecutionOutcome, TxVerifier};
use crate::genesis::ConsensusParams;
use crate::state_tree::StateTree;
use crate::tx::{Tx, TxHash};
use crate::tx_merkle::tx_root;
use tally_consensus::{BlockHash, Height, ValidatorSet};
use tally_crypto::{ChainId, Hash, PublicKey};

/// Why a proposed block is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block is for chain {got}, not {expected}")]
    WrongChainId { expected: ChainId, got: ChainId },
    #[error("block height {got}, the next height is {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("block's parent is {got}, the tip is {expected}")]
    WrongParent { expected: BlockHash, got: BlockHash },
    #[error("block time {got_ms} ms is not after the parent's {parent_ms} ms")]
    TimeNotAfterParent { parent_ms: u64, got_ms: u64 },
    #[error("proposer {proposer} is not a validator")]
    UnknownProposer { proposer: PublicKey },
    #[error("validators hash {got} differs from the validator set's {expected}")]
    WrongValidatorsHash { expected: Hash, got: Hash },
    #[error("header says {header} txs, the block holds {body}")]
    TxCountMismatch { header: u32, body: usize },
    #[error("{count} txs, more than the chain's limit of {max}")]
    TooManyTxs { count: usize, max: u32 },
    #[error("block is {bytes} bytes, more than the chain's limit of {max}")]
    TooManyBytes { bytes: usize, max: u64 },
    #[error("tx root {header} in the header, {computed} computed")]
    TxRootMismatch { header: Hash, computed: Hash },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("state root {header} in the header, {computed} computed")]
    StateRootMismatch { header: Hash, computed: Hash },
}

/// What the next block must agree with.
pub(crate) struct Expected<'a> {
    pub chain_id: &'a ChainId,
    pub height: Height,
    pub parent: BlockHash,
    pub parent_time_ms: u64,
    pub validators: &'a ValidatorSet,
    pub validators_hash: Hash,
    pub params: &'a ConsensusParams,
}

/// Every check that needs neither signatures nor state.
fn check_header(block: &Block, expected: &Expected<'_>) -> Result<(), BlockError> {
    let h = &block.header;
    if h.chain_id != *expected.chain_id {
        let expected = expected.chain_id.clone();
        return Err(BlockError::WrongChainId { expected, got: h.chain_id.clone() });
    }
    if h.height != expected.height {
        return Err(BlockError::WrongHeight { expected: expected.height, got: h.height });
    }
    if h.prev_block_hash != expected.parent {
        return Err(BlockError::WrongParent { expected: expected.parent, got: h.prev_block_hash });
    }
    if h.time_ms <= expected.parent_time_ms {
        let parent_ms = expected.parent_time_ms;
        return Err(BlockError::TimeNotAfterParent { parent_ms, got_ms: h.time_ms });
    }
    if expected.validators.index_of(&h.proposer).is_none() {
        return Err(BlockError::UnknownProposer { proposer: h.proposer });
    }
    if h.validators_hash != expected.validators_hash {
        let expected = expected.validators_hash;
        return Err(BlockError::WrongValidatorsHash { expected, got: h.validators_hash });
    }
    Ok(())
}

fn check_limits(block: &Block, params: &ConsensusParams) -> Result<(), BlockError> {
    let count = block.txs.len();
    if count != block.header.tx_count as usize {
        return Err(BlockError::TxCountMismatch { header: block.header.tx_count, body: count });
    }
    if count > params.block_txs_max as usize {
        return Err(BlockError::TooManyTxs { count, max: params.block_txs_max });
    }
    let bytes = block.encoded_len();
    if bytes as u64 > params.block_bytes_max {
        return Err(BlockError::TooManyBytes { bytes, max: params.block_bytes_max });
    }
    Ok(())
}

/// Validates `block` as the next block on `state` and returns its execution. `tx_hashes`, if
/// given, are the hashes of `block.txs` (computed by the caller from this block, to look them
/// up before validating); otherwise they are computed here.
pub(crate) fn validate_block(
    block: &Block,
    expected: &Expected<'_>,
    state: &StateTree,
    tx_hashes: Option<Vec<TxHash>>,
    verifier: &impl TxVerifier,
) -> Result<ExecutionOutcome, BlockError> {
    check_header(block, expected)?;
    check_limits(block, expected.params)?;
    let tx_hashes = tx_hashes.unwrap_or_else(|| block.txs.iter().map(Tx::hash).collect());
    assert_eq!(tx_hashes.len(), block.txs.len(), "one hash per tx of the block");
    let computed = tx_root(&tx_hashes);
    if computed != block.header.tx_root {
        return Err(BlockError::TxRootMismatch { header: block.header.tx_root, computed });
    }
    let outcome = execute_block_hashed(state, &block.txs, tx_hashes, expected.chain_id, verifier)?;
    if outcome.state_root != block.header.state_root {
        let header = block.header.state_root;
        return Err(BlockError::StateRootMismatch { header, computed: outcome.state_root });
    }
    Ok(outcome)
}
