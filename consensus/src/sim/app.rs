//! The simulated application: the blocks that exist and whether each is valid. A block is
//! all consensus ever sees of it, its hash; the registry stands for every node's copy of
//! the block store (block fetching is instant and always succeeds), and its verdicts are
//! deterministic, as valid(v) must be. A hash nobody built is judged invalid.

use crate::types::{BlockHash, Height, Round};
use std::collections::BTreeMap;
use tally_crypto::Hash;

#[derive(Default)]
pub struct Blocks {
    /// (height, block) -> valid. Grows by a few blocks per round; dropped with the run.
    verdicts: BTreeMap<(u64, BlockHash), bool>,
}

impl Blocks {
    /// A block built by `proposer` for (height, round); `variant` tells apart the blocks a
    /// double proposer builds for one round. Registered with the given verdict.
    pub fn build(
        &mut self,
        height: Height,
        round: Round,
        proposer: usize,
        variant: u8,
        valid: bool,
    ) -> BlockHash {
        let hash = BlockHash(Hash::digest_parts(&[
            b"tally/sim/block",
            &height.0.to_le_bytes(),
            &round.0.to_le_bytes(),
            &(proposer as u64).to_le_bytes(),
            &[variant, u8::from(valid)],
        ]));
        self.verdicts.insert((height.0, hash), valid);
        hash
    }

    /// valid(v) at `height`: `None` for a block nobody built (every node judges it invalid).
    pub fn verdict(&self, height: Height, block: BlockHash) -> Option<bool> {
        self.verdicts.get(&(height.0, block)).copied()
    }
}

/// A hash that no block has: what an equivocator votes for.
pub fn bogus_block(height: Height, round: Round, sender: usize) -> BlockHash {
    BlockHash(Hash::digest_parts(&[
        b"tally/sim/bogus",
        &height.0.to_le_bytes(),
        &round.0.to_le_bytes(),
        &(sender as u64).to_le_bytes(),
    ]))
}
