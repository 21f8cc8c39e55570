//! Blocks of the heights being decided: what proposals carried, what the node judged of
//! them, and which judgments wait for a block to arrive.
//!
//! Bounded against a Byzantine proposer that signs many proposals: blocks are kept only for
//! the current height and `HEIGHTS_AHEAD_MAX` more, only for rounds within the core's
//! window, and at most `PER_ROUND_MAX` per (height, round); a block whose hash the core
//! asked about is always kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tally_consensus::{BlockHash, Height, Round};
use tally_ledger::{Block, ExecutionOutcome, TxHash};

/// Heights ahead of the current one whose proposed blocks are kept.
const HEIGHTS_AHEAD_MAX: u64 = 2;
/// Blocks kept per (height, round): the proposer's, and one equivocating copy.
const PER_ROUND_MAX: usize = 2;

#[derive(Default)]
pub struct PendingBlocks {
    /// By height, then hash: the round it was proposed in and the block.
    by_height: BTreeMap<Height, HashMap<BlockHash, (Round, Arc<Block>)>>,
    /// The tx hashes of kept blocks that arrived with them (rebuilt compact proposals,
    /// whose hashes were checked against the header), taken when the block is judged.
    received_tx_hashes: HashMap<BlockHash, (Height, Vec<TxHash>)>,
    /// Verdicts on blocks of the current height; valid ones with their execution.
    /// Cleared at each commit.
    verdicts: HashMap<BlockHash, Option<ExecutionOutcome>>,
    /// ValidateValue requests waiting for their block. At most one per (height, round) in
    /// practice (the core asks once per hash); cleared at each commit.
    awaiting: Vec<(Height, Round, BlockHash)>,
}

/// Where the core stands, to decide what is worth keeping.
#[derive(Clone, Copy)]
pub struct Window {
    pub height: Height,
    pub round: Round,
    pub rounds_ahead_max: u32,
}

impl Window {
    /// Whether a block proposed at (`height`, `round`) is worth keeping: the current height
    /// up to `rounds_ahead_max` rounds past the current round, and the next
    /// `HEIGHTS_AHEAD_MAX` heights up to their first `rounds_ahead_max` rounds.
    pub fn admits(&self, height: Height, round: Round) -> bool {
        if height < self.height || height.0 > self.height.0 + HEIGHTS_AHEAD_MAX {
            return false;
        }
        let round_max = if height == self.height {
            self.round.0.saturating_add(self.rounds_ahead_max)
        } else {
            self.rounds_ahead_max
        };
        round.0 <= round_max
    }
}

impl PendingBlocks {
    /// Keeps `block`, proposed in `round`, if it is within bounds, with its `tx_hashes` if
    /// they are known (block order, checked against the header); returns its hash if kept.
    pub fn insert(
        &mut self,
        block: Block,
        tx_hashes: Option<Vec<TxHash>>,
        round: Round,
        w: Window,
    ) -> Option<BlockHash> {
        let height = block.header.height;
        if height < w.height || height.0 > w.height.0 + HEIGHTS_AHEAD_MAX {
            return None;
        }
        let hash = block.hash();
        let awaited = self.awaiting.iter().any(|(_, _, h)| *h == hash);
        let at_height = self.by_height.entry(height).or_default();
        let in_round = at_height.values().filter(|(r, _)| *r == round).count();
        if !awaited && (!w.admits(height, round) || in_round >= PER_ROUND_MAX) {
            return None;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = at_height.entry(hash) {
            slot.insert((round, Arc::new(block)));
            if let Some(tx_hashes) = tx_hashes {
                self.received_tx_hashes.insert(hash, (height, tx_hashes));
            }
        }
        Some(hash)
    }

    /// The tx hashes that arrived with the kept block `hash`, removed (see `insert`).
    pub fn take_received_tx_hashes(&mut self, hash: &BlockHash) -> Option<Vec<TxHash>> {
        self.received_tx_hashes.remove(hash).map(|(_, hashes)| hashes)
    }

    /// A block this node built for `round` before a restart (from its consensus log): kept
    /// whatever the bounds, like `insert_own`, and judged again like any other.
    pub fn insert_kept(&mut self, block: Block, round: Round) -> BlockHash {
        let hash = block.hash();
        self.by_height
            .entry(block.header.height)
            .or_default()
            .entry(hash)
            .or_insert_with(|| (round, Arc::new(block)));
        hash
    }

    /// A block the node built itself.
    pub fn insert_own(
        &mut self,
        block: Block,
        round: Round,
        outcome: ExecutionOutcome,
    ) -> BlockHash {
        let hash = block.hash();
        self.by_height
            .entry(block.header.height)
            .or_default()
            .insert(hash, (round, Arc::new(block)));
        self.verdicts.insert(hash, Some(outcome));
        hash
    }

    pub fn get(&self, height: Height, hash: &BlockHash) -> Option<Arc<Block>> {
        self.by_height.get(&height)?.get(hash).map(|(_, b)| b.clone())
    }

    /// The tx hashes of a block judged valid (computed when it was executed).
    pub fn tx_hashes(&self, hash: &BlockHash) -> Option<&[TxHash]> {
        Some(&self.verdicts.get(hash)?.as_ref()?.tx_hashes)
    }

    /// `Some(valid)` if the block was judged.
    pub fn verdict(&self, hash: &BlockHash) -> Option<bool> {
        self.verdicts.get(hash).map(Option::is_some)
    }

    pub fn set_verdict(&mut self, hash: BlockHash, outcome: Option<ExecutionOutcome>) {
        self.verdicts.insert(hash, outcome);
    }

    /// The execution of a block judged valid, taken for its commit.
    pub fn take_outcome(&mut self, hash: &BlockHash) -> Option<ExecutionOutcome> {
        self.verdicts.remove(hash).flatten()
    }

    pub fn await_block(&mut self, height: Height, round: Round, hash: BlockHash) {
        if !self.awaiting.contains(&(height, round, hash)) {
            self.awaiting.push((height, round, hash));
        }
    }

    /// The requests waiting for the block `hash`, removed.
    pub fn take_awaiting(&mut self, hash: &BlockHash) -> Vec<(Height, Round, BlockHash)> {
        let (ready, waiting) = self.awaiting.drain(..).partition(|(_, _, h)| h == hash);
        self.awaiting = waiting;
        ready
    }

    /// After `height` committed: forget it and everything below.
    pub fn committed(&mut self, height: Height) {
        self.by_height.retain(|h, _| *h > height);
        self.received_tx_hashes.retain(|_, (h, _)| *h > height);
        self.verdicts.clear();
        self.awaiting.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_height.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tally_crypto::{ChainId, Hash, Keypair};
    use tally_ledger::Header;

    /// The header of an empty block at `height`, distinct per `salt`.
    pub(in crate::consensus) fn empty_header(height: u64, salt: u64) -> Header {
        Header {
            chain_id: ChainId::new("t").unwrap(),
            height: Height(height),
            time_ms: salt,
            prev_block_hash: BlockHash(Hash::ZERO),
            tx_root: Hash::ZERO,
            tx_count: 0,
            state_root: Hash::ZERO,
            proposer: Keypair::derive_insecure("p").public(),
            validators_hash: Hash::ZERO,
        }
    }

    fn block(height: u64, salt: u64) -> Block {
        Block { header: empty_header(height, salt), txs: Vec::new() }
    }

    fn window(height: u64, round: u32) -> Window {
        Window { height: Height(height), round: Round(round), rounds_ahead_max: 10 }
    }

    #[test]
    fn a_byzantine_proposer_cannot_fill_the_store() {
        let mut p = PendingBlocks::default();
        let w = window(5, 0);
        let kept = (0..100).filter(|s| p.insert(block(5, *s), None, Round(3), w).is_some()).count();
        assert_eq!(kept, PER_ROUND_MAX);
        assert!(p.insert(block(5, 1000), None, Round(11), w).is_none(), "beyond the round window");
        assert!(p.insert(block(8, 1), None, Round(0), w).is_none(), "too far ahead");
        assert!(p.insert(block(4, 1), None, Round(0), w).is_none(), "already decided");
        assert!(p.insert(block(7, 1), None, Round(0), w).is_some());
        // A block the core is waiting for is kept whatever the bounds say.
        let wanted = block(5, 2000);
        p.await_block(Height(5), Round(3), wanted.hash());
        assert_eq!(p.insert(wanted.clone(), None, Round(3), w), Some(wanted.hash()));
        assert_eq!(p.take_awaiting(&wanted.hash()).len(), 1);
        p.committed(Height(5));
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn received_tx_hashes_stay_with_a_kept_block_until_judged_or_committed() {
        let mut p = PendingBlocks::default();
        let w = window(5, 0);
        let hashes = vec![TxHash(Hash::digest(b"tx"))];
        let (a, b, far) = (block(5, 1), block(6, 1), block(9, 1));
        assert_eq!(p.insert(a.clone(), Some(hashes.clone()), Round(0), w), Some(a.hash()));
        // A block not kept leaves nothing behind; a second copy does not replace them.
        assert!(p.insert(far.clone(), Some(hashes.clone()), Round(0), w).is_none());
        p.insert(a.clone(), Some(Vec::new()), Round(0), w);
        assert_eq!(p.take_received_tx_hashes(&a.hash()), Some(hashes.clone()));
        assert_eq!(p.take_received_tx_hashes(&a.hash()), None, "taken once");
        assert_eq!(p.take_received_tx_hashes(&far.hash()), None);
        p.insert(b.clone(), Some(hashes), Round(0), w);
        p.committed(Height(6));
        assert_eq!(p.take_received_tx_hashes(&b.hash()), None, "dropped at commit");
    }
}
