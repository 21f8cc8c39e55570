//! Consensus messages from peers: verified before they reach the core, and reported to
//! gossipsub (accepted ones are forwarded, rejected ones are not and cost their sender).

use super::Driver;
use tally_consensus::{Height, Input};
use tally_network::{ConsensusEvent, ConsensusMsg, GossipRef, Verdict};

/// The height a consensus message is for.
pub(super) fn height_of(msg: &ConsensusMsg) -> Height {
    match msg {
        ConsensusMsg::Proposal { proposal, .. } => proposal.proposal.height,
        ConsensusMsg::Vote(v) => v.vote.height,
        ConsensusMsg::Certificate { certificate, .. } => certificate.height,
        ConsensusMsg::CompactProposal { proposal, .. } => proposal.proposal.height,
        ConsensusMsg::Evidence(e) => e.height(),
    }
}

impl Driver {
    pub(super) async fn on_consensus_event(&mut self, event: ConsensusEvent) -> anyhow::Result<()> {
        match event {
            ConsensusEvent::Message { msg, from } => self.on_message(msg, from).await,
            ConsensusEvent::PeerConnected(peer) => {
                tracing::info!(%peer, "peer connected");
                Ok(())
            }
            ConsensusEvent::PeerDisconnected(peer) => {
                tracing::info!(%peer, "peer disconnected");
                Ok(())
            }
        }
    }

    async fn on_message(&mut self, msg: ConsensusMsg, from: GossipRef) -> anyhow::Result<()> {
        // Evidence counts whatever height it is for: not dropped as stale.
        if let ConsensusMsg::Evidence(evidence) = msg {
            let ok = self.verify_message(&ConsensusMsg::Evidence(evidence.clone()));
            self.report(&from, ok).await;
            if ok {
                self.on_evidence(evidence, false).await;
            }
            return Ok(());
        }
        let current = self.core.height();
        let height = height_of(&msg);
        if height < current {
            // Late but possibly honest (a slow peer, a re-broadcast): not forwarded, not
            // held against anyone.
            self.stats.stale_messages += 1;
            let _ = self.net.report_validation(&from, Verdict::Ignore).await;
            return Ok(());
        }
        let ok = self.verify_message(&msg);
        self.report(&from, ok).await;
        if !ok {
            return Ok(());
        }
        match msg {
            ConsensusMsg::CompactProposal { proposal, block } => {
                self.on_compact_proposal(proposal, block, from.propagation_source).await
            }
            msg => self.accept_message(msg, from.propagation_source, None).await,
        }
    }

    /// A verified message with its block, if it has one (a compact proposal comes here once
    /// its block is rebuilt, with the block's tx hashes, checked against its header):
    /// logged, then fed to the core.
    pub(super) async fn accept_message(
        &mut self,
        msg: ConsensusMsg,
        source: tally_network::PeerId,
        tx_hashes: Option<Vec<tally_ledger::TxHash>>,
    ) -> anyhow::Result<()> {
        let (current, height) = (self.core.height(), height_of(&msg));
        if height < current {
            // Its height committed while its block was being fetched.
            return Ok(());
        }
        // A verified message from a later height: the others have committed blocks that
        // this node does not have.
        if height > current {
            self.seen_height = self.seen_height.max(height);
            self.sync_for_message(source).await;
            let block_bytes = match &msg {
                ConsensusMsg::Proposal { block, .. } | ConsensusMsg::Certificate { block, .. } => {
                    block.encoded_len()
                }
                ConsensusMsg::Vote(_)
                | ConsensusMsg::CompactProposal { .. }
                | ConsensusMsg::Evidence(_) => 0,
            };
            if height == current.next()
                && self.wal.is_some()
                && self.next_height_messages.len() < super::NEXT_HEIGHT_LOGGED_MAX
                && self.next_height_bytes + block_bytes <= super::NEXT_HEIGHT_LOGGED_BYTES_MAX
            {
                self.next_height_bytes += block_bytes;
                self.next_height_messages.push(msg.clone());
            }
        } else {
            self.log_entry(super::wal::WalEntryRef::Received(&msg), false);
        }
        self.feed_message(msg, tx_hashes).await
    }

    /// Hands a verified message to the core (from a peer, or replayed from the log), with
    /// the tx hashes of a proposal's block if they are known (so they are not computed
    /// again when it is judged).
    pub(super) async fn feed_message(
        &mut self,
        msg: ConsensusMsg,
        tx_hashes: Option<Vec<tally_ledger::TxHash>>,
    ) -> anyhow::Result<()> {
        match msg {
            ConsensusMsg::Proposal { proposal, block } => {
                let round = proposal.proposal.round;
                let hash = self.blocks.insert(block, tx_hashes, round, self.window());
                self.step(Input::Proposal(proposal)).await?;
                if let Some(hash) = hash {
                    self.block_arrived(hash).await?;
                }
            }
            ConsensusMsg::Vote(vote) => {
                self.notify.publish_vote(&vote);
                self.step(Input::Vote(vote)).await?
            }
            // Evidence is no input of the core (see `on_evidence`).
            ConsensusMsg::Evidence(evidence) => self.on_evidence(evidence, false).await,
            ConsensusMsg::Certificate { certificate, block } => {
                let round = certificate.round;
                let hash = self.blocks.insert(block, None, round, self.window());
                self.step(Input::Certificate(certificate)).await?;
                if let Some(hash) = hash {
                    self.block_arrived(hash).await?;
                }
            }
            // Never logged (the log records the proposal with its rebuilt block), so never
            // replayed.
            ConsensusMsg::CompactProposal { proposal, .. } => {
                tracing::warn!(height = %proposal.proposal.height, "skipped a compact proposal found in the consensus log");
            }
        }
        Ok(())
    }

    /// Signatures, and that a carried block is the one signed for.
    pub(super) fn verify_message(&self, msg: &ConsensusMsg) -> bool {
        let (chain_id, validators, verifier) =
            (self.chain.chain_id(), self.chain.validators(), &**self.chain.verifier());
        let header_ok = |block: &tally_ledger::Block, height: Height, hash| {
            block.header.height == height
                && block.encoded_len() as u64 <= self.chain.genesis().params.block_bytes_max
                && block.hash() == hash
        };
        // The body last (it costs a hash of every tx and a Merkle root): the block hash
        // covers only the header, and a body swapped under a signed header would otherwise
        // be kept under the honest block's hash and judged invalid in its place.
        match msg {
            ConsensusMsg::Proposal { proposal, block } => {
                let p = &proposal.proposal;
                header_ok(block, p.height, p.block_hash)
                    && proposal.verify(chain_id, validators, verifier).is_ok()
                    && block.body_matches_header()
            }
            ConsensusMsg::Vote(vote) => vote.verify(chain_id, validators, verifier).is_ok(),
            ConsensusMsg::Evidence(e) => e.verify(chain_id, validators, verifier).is_ok(),
            ConsensusMsg::Certificate { certificate, block } => {
                header_ok(block, certificate.height, certificate.block_hash)
                    && certificate.verify(chain_id, validators, verifier).is_ok()
                    && block.body_matches_header()
            }
            // The hashes last: checking them against the header costs a Merkle root.
            ConsensusMsg::CompactProposal { proposal, block } => {
                let p = &proposal.proposal;
                block.header.height == p.height
                    && block.block_encoded_len() as u64
                        <= self.chain.genesis().params.block_bytes_max
                    && block.hash() == p.block_hash
                    && proposal.verify(chain_id, validators, verifier).is_ok()
                    && block.hashes_match_header()
            }
        }
    }

    /// Reports the verdict to gossipsub. Under node validation the propagation source only
    /// forwards what it verified, so a bad message is its fault and it is penalized; when
    /// the network already accepted the message on decode, the source may be an honest relay.
    async fn report(&mut self, from: &GossipRef, ok: bool) {
        if !ok {
            self.stats.bad_signatures += 1;
            self.metrics.bad_consensus_messages.inc();
            tracing::debug!(peer = %from.propagation_source, "dropped a consensus message that does not verify");
        }
        let verdict = if ok { Verdict::Accept } else { Verdict::Reject };
        let _ = self.net.report_validation(from, verdict).await;
        if !ok && from.awaiting_report {
            let _ = self.net.penalize(from.propagation_source).await;
        }
    }
}
