//! Compact proposals: a proposal carries its block's header and tx hashes, not its txs.
//!
//! Every validator already holds most of a block's txs in its mempool (gossip brought them
//! there, verified), so the proposer sends about 32 bytes per tx instead of 144, once,
//! instead of a full block that gossipsub would also forward between the others. A
//! receiver rebuilds the block from its mempool; the txs it lacks (gossip it dropped while
//! full, txs still being verified) it fetches from the peer that sent the proposal, then
//! from the other peers, each answer checked against the hashes. The rebuilt block then goes
//! the way a full proposal goes: into the consensus log, then to the core.
//!
//! Bounded against a Byzantine proposer: rebuilds are kept only within the window the
//! pending blocks use (`Window::admits`), at most `FILLING_MAX` at a time, a rebuild of the
//! current height evicting one of a later height when all are taken, and dropped (their
//! fetches stopped) at each commit. Each peer gets `FETCH_TIMEOUT` to answer, so a relay
//! that stalls costs a proposal seconds, not the round. A fetch that fails leaves the
//! block missing: the core's round times out as for a proposal that never arrived, and the
//! proposer's re-sent proposal starts another fetch. Peers' requests are answered off the
//! consensus task.

use super::Driver;
use std::collections::HashMap;
use std::time::Duration;
use tally_consensus::{BlockHash, Height, SignedProposal};
use tally_ledger::{Block, Tx, TxHash};
use tally_network::{CompactBlock, ConsensusMsg, InboundSyncRequest, NetworkHandle, PeerId};
use tally_network::{RequestError, SyncRequest, SyncResponse};

/// Blocks being rebuilt at once: the proposals of a few rounds.
const FILLING_MAX: usize = 8;
/// Signed proposals kept per block being rebuilt (a block may be proposed again in a later
/// round while its txs are fetched).
const PROPOSALS_PER_FILLING_MAX: usize = 4;
/// How long one peer gets to answer a fetch before the next is asked (the consensus
/// config's sync request timeout, if shorter). The largest answer is a block's txs, about
/// 7 MB at the hard limit.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// A block whose txs are being fetched.
pub(super) struct Filling {
    proposals: Vec<SignedProposal>,
    block: CompactBlock,
    /// The txs found so far, by position in the block.
    txs: Vec<Option<Tx>>,
    /// Where the proposal came from (block sync starts there if it is ahead).
    source: PeerId,
    /// The fetch, stopped if the rebuild is dropped.
    fetch: tokio::task::JoinHandle<()>,
}

/// What a fetch brought: the block's hash and its missing txs by index, or why not.
pub(super) type FillResult = (BlockHash, Result<Vec<(u32, Tx)>, String>);

#[derive(Default)]
pub(super) struct Fillings {
    by_hash: HashMap<BlockHash, Filling>,
}

impl Fillings {
    /// After `height` committed: forget its rebuilds and those below, and stop their
    /// fetches.
    pub(super) fn committed(&mut self, height: Height) {
        self.by_hash.retain(|_, f| {
            let keep = f.block.header.height > height;
            if !keep {
                f.fetch.abort();
            }
            keep
        });
    }

    /// Room for a rebuild at `height` (the current height is `current`): there is a free
    /// slot, or one of a later height is given up for it.
    fn make_room(&mut self, height: Height, current: Height) -> bool {
        if self.by_hash.len() < FILLING_MAX {
            return true;
        }
        if height > current {
            return false;
        }
        let later = self
            .by_hash
            .iter()
            .filter(|(_, f)| f.block.header.height > current)
            .max_by_key(|(_, f)| f.block.header.height)
            .map(|(hash, _)| *hash);
        match later.and_then(|hash| self.by_hash.remove(&hash)) {
            Some(evicted) => {
                evicted.fetch.abort();
                true
            }
            None => false,
        }
    }
}

impl Driver {
    /// A verified compact proposal: rebuild its block, from the mempool or by fetching.
    pub(super) async fn on_compact_proposal(
        &mut self,
        proposal: SignedProposal,
        block: CompactBlock,
        source: PeerId,
    ) -> anyhow::Result<()> {
        let hash = block.hash();
        let height = block.header.height;
        if let Some(known) = self.blocks.get(height, &hash) {
            // A block proposed again (a later round, a re-sent proposal): only the signed
            // proposal is new.
            let msg = ConsensusMsg::Proposal { proposal, block: (*known).clone() };
            return self.accept_message(msg, source, None).await;
        }
        if let Some(filling) = self.fillings.by_hash.get_mut(&hash) {
            if filling.proposals.len() < PROPOSALS_PER_FILLING_MAX
                && !filling.proposals.contains(&proposal)
            {
                filling.proposals.push(proposal);
            }
            return Ok(());
        }
        let txs = self.chain.txs_from_mempool(&block.tx_hashes);
        let missing: Vec<u32> =
            txs.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i as u32).collect();
        if missing.is_empty() {
            self.metrics.compact_proposal("mempool");
            let txs = txs.into_iter().flatten().collect();
            let CompactBlock { header, tx_hashes } = block;
            let msg = ConsensusMsg::Proposal { proposal, block: Block { header, txs } };
            return self.accept_message(msg, source, Some(tx_hashes)).await;
        }
        // The window of the pending blocks, which would not keep the block otherwise.
        let w = self.window();
        let round = proposal.proposal.round;
        if !w.admits(height, round) || !self.fillings.make_room(height, w.height) {
            tracing::debug!(%height, %round, %hash, "not rebuilding a compact proposal beyond the window");
            self.metrics.compact_proposal("failed");
            return Ok(());
        }
        let expected: Vec<TxHash> = missing.iter().map(|&i| block.tx_hashes[i as usize]).collect();
        tracing::debug!(%height, %round, missing = missing.len(), %source, "fetching the txs of a compact proposal");
        let configured = Duration::from_millis(self.config.consensus.sync_request_timeout_ms);
        let timeout = configured.min(FETCH_TIMEOUT);
        let (net, done) = (self.net.clone(), self.fill_tx.clone());
        let fetch = tokio::spawn(async move {
            let result = fetch_txs(&net, source, height, hash, missing, &expected, timeout).await;
            let _ = done.send((hash, result)).await;
        });
        let filling = Filling { proposals: vec![proposal], block, txs, source, fetch };
        self.fillings.by_hash.insert(hash, filling);
        Ok(())
    }

    /// A fetch finished: complete the block and hand its proposals on.
    pub(super) async fn on_fill_result(
        &mut self,
        (hash, result): FillResult,
    ) -> anyhow::Result<()> {
        // Gone if its height committed meanwhile.
        let Some(mut filling) = self.fillings.by_hash.remove(&hash) else { return Ok(()) };
        let height = filling.block.header.height;
        let found = match result {
            Ok(found) => found,
            Err(e) => {
                self.metrics.compact_proposal("failed");
                tracing::warn!(%height, %hash, error = %e, "could not fetch the txs of a proposed block");
                return Ok(());
            }
        };
        self.metrics.compact_proposal("fetched");
        self.metrics.proposal_txs_fetched.inc_by(found.len() as u64);
        for (index, tx) in found {
            filling.txs[index as usize] = Some(tx);
        }
        let txs: Option<Vec<Tx>> = filling.txs.into_iter().collect();
        let Some(txs) = txs else {
            // Not expected: fetch_txs answers every index it was given, or fails.
            self.metrics.compact_proposal("failed");
            tracing::warn!(%height, %hash, "a fetch left txs of a proposed block missing");
            return Ok(());
        };
        let CompactBlock { header, tx_hashes } = filling.block;
        let block = Block { header, txs };
        // The block is kept with the first proposal; the hashes go with it.
        let mut tx_hashes = Some(tx_hashes);
        for proposal in filling.proposals {
            let msg = ConsensusMsg::Proposal { proposal, block: block.clone() };
            self.accept_message(msg, filling.source, tx_hashes.take()).await?;
        }
        Ok(())
    }

    /// Answers a peer's request for txs of a block this node holds (its own proposal, or
    /// one it rebuilt), off the consensus task; refused if it does not hold it, or if the
    /// indices are not strictly increasing positions in the block.
    pub(super) fn serve_block_txs(&self, request: InboundSyncRequest) {
        let SyncRequest::BlockTxs { height, block_hash, .. } = &request.request else {
            request.responder.respond(SyncResponse::Error("not a block txs request".into()));
            return;
        };
        let Some(block) = self.blocks.get(*height, block_hash) else {
            request.responder.respond(SyncResponse::Error("block not here".into()));
            return;
        };
        // The answer goes back through the responder; nothing waits for the work itself.
        let _work = self.config.exec.spawn(move || {
            let SyncRequest::BlockTxs { indices, .. } = &request.request else { return };
            let increasing = indices.windows(2).all(|w| w[0] < w[1]);
            if !increasing || indices.last().is_some_and(|&i| i as usize >= block.txs.len()) {
                request.responder.respond(SyncResponse::Error("bad tx indices".into()));
                return;
            }
            let txs = indices.iter().map(|&i| block.txs[i as usize]).collect();
            request.responder.respond(SyncResponse::BlockTxs(txs));
        });
    }
}

/// Asks `first`, then every other peer subscribed to consensus, for the txs at `indices`,
/// until one answers with exactly the txs `expected` (their hashes). A peer that answers
/// with other txs, or another number of them, is penalized: an honest node serves only
/// blocks whose body it checked against the header (`verify_message`, or the hashes of a
/// compact proposal), so it cannot serve them wrong by accident. A refusal ("block not
/// here") or a timeout is not held against a peer.
async fn fetch_txs(
    net: &NetworkHandle,
    first: PeerId,
    height: Height,
    hash: BlockHash,
    indices: Vec<u32>,
    expected: &[TxHash],
    timeout: Duration,
) -> Result<Vec<(u32, Tx)>, String> {
    let mut peers = vec![first];
    if let Ok(connected) = net.peers().await {
        peers.extend(
            connected
                .into_iter()
                .filter(|p| p.consensus_subscribed && p.peer_id != first)
                .map(|p| p.peer_id),
        );
    }
    let mut errors = Vec::new();
    for peer in peers {
        let request = net.request_block_txs(peer, height, hash, indices.clone());
        let txs = match tokio::time::timeout(timeout, request).await {
            Ok(Ok(txs)) => txs,
            Ok(Err(e @ RequestError::WrongCount { .. })) => {
                tracing::warn!(%peer, %height, %hash, error = %e, "peer served the wrong number of block txs");
                let _ = net.penalize(peer).await;
                errors.push(format!("{peer}: {e}"));
                continue;
            }
            Ok(Err(e)) => {
                errors.push(format!("{peer}: {e}"));
                continue;
            }
            Err(_) => {
                errors.push(format!("{peer}: timed out after {} ms", timeout.as_millis()));
                continue;
            }
        };
        if txs.iter().zip(expected).all(|(tx, want)| tx.hash() == *want) {
            return Ok(indices.into_iter().zip(txs).collect());
        }
        tracing::warn!(%peer, %height, %hash, "peer served txs that are not the proposed block's");
        let _ = net.penalize(peer).await;
        errors.push(format!("{peer}: served other txs"));
    }
    Err(format!("no peer served them ({})", errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_consensus::{Proposal, Round, ValidatorIndex};
    use tally_crypto::Signature;

    fn filling(height: u64, salt: u64) -> (BlockHash, Filling) {
        let header = super::super::blocks::tests::empty_header(height, salt);
        let block = CompactBlock { header, tx_hashes: Vec::new() };
        let proposal = SignedProposal {
            proposal: Proposal {
                height: Height(height),
                round: Round(0),
                block_hash: block.hash(),
                pol_round: None,
                proposer: ValidatorIndex(0),
            },
            signature: Signature([0; 64]),
        };
        let fetch = tokio::spawn(std::future::pending());
        let source = PeerId::random();
        (block.hash(), Filling { proposals: vec![proposal], block, txs: Vec::new(), source, fetch })
    }

    #[tokio::test]
    async fn later_heights_cannot_crowd_out_the_current_one() {
        let mut fillings = Fillings::default();
        let current = Height(5);
        for salt in 0..FILLING_MAX as u64 {
            assert!(fillings.make_room(Height(6), current));
            let (hash, f) = filling(6, salt);
            fillings.by_hash.insert(hash, f);
        }
        // Full of next-height rebuilds: another one is refused, one of the current height
        // takes the place of one of them (whose fetch is stopped).
        assert!(!fillings.make_room(Height(7), current));
        assert!(fillings.make_room(current, current));
        assert_eq!(fillings.by_hash.len(), FILLING_MAX - 1);
        let (hash, f) = filling(5, 0);
        fillings.by_hash.insert(hash, f);
        // A commit drops its height's rebuilds and stops their fetches.
        let handles: Vec<_> = fillings.by_hash.values().map(|f| f.fetch.abort_handle()).collect();
        fillings.committed(Height(6));
        assert!(fillings.by_hash.is_empty());
        tokio::task::yield_now().await;
        assert!(handles.iter().all(|h| h.is_finished()));
    }
}
