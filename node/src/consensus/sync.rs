//! Block sync: asking a peer that is ahead for blocks with their certificates, checking and
//! applying them; and answering other peers' requests from the store.

use super::Driver;
use crate::chain::ChainReader;
use crate::exec::Exec;
use anyhow::bail;
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::{CommitCertificate, Height};
use tally_ledger::{Block, ExecutionOutcome};
use tally_network::{InboundSyncRequest, PeerId, SyncRequest, SyncResponse};
use tokio::sync::Semaphore;

/// Most peers remembered as failed since the last applied block (`Driver::sync_failed`).
const SYNC_FAILED_MAX: usize = 256;

pub(super) type SyncResult = (PeerId, anyhow::Result<Vec<(Block, CommitCertificate)>>);

impl Driver {
    /// Asks `peer` for the blocks after this node's tip, unless a request is in flight.
    pub(super) fn start_sync(&mut self, peer: PeerId) {
        if self.sync_in_flight {
            return;
        }
        self.sync_in_flight = true;
        // A decided block being written is not asked for again.
        let from = match &self.writing {
            Some(writing) => writing.height.next(),
            None => self.chain.tip_height().map_or(Height(1), Height::next),
        };
        let count = self.config.consensus.sync_batch_blocks;
        tracing::debug!(%peer, %from, count, "block sync: asking");
        let timeout = Duration::from_millis(self.config.consensus.sync_request_timeout_ms);
        let net = self.net.clone();
        let tx = self.sync_tx.clone();
        tokio::spawn(async move {
            let request = net.request_blocks(peer, from, count);
            let result = match tokio::time::timeout(timeout, request).await {
                Ok(Ok(blocks)) => Ok(blocks),
                Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
                Err(_) => Err(anyhow::anyhow!("timed out after {} ms", timeout.as_millis())),
            };
            let _ = tx.send((peer, result)).await;
        });
    }

    pub(super) async fn on_sync_result(
        &mut self,
        (peer, result): SyncResult,
    ) -> anyhow::Result<()> {
        self.sync_in_flight = false;
        let (received, applied) = match result {
            Ok(blocks) => {
                let received = blocks.len();
                (received, self.apply_synced(peer, blocks).await?)
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "block sync request failed");
                (0, 0)
            }
        };
        if applied == 0 {
            // The peer failed, served a bad block, or had nothing: ask another one, each
            // connected peer at most once until a block is applied again (the tick starts
            // over while this node is behind).
            self.notify.set_catching_up(false);
            // Bounded: peers may come and go under other identities between two applied
            // blocks; past the bound the round of tries starts over.
            if self.sync_failed.len() >= SYNC_FAILED_MAX {
                self.sync_failed.clear();
            }
            self.sync_failed.insert(peer);
            if let Some(next) = self.next_sync_peer().await {
                self.start_sync(next);
            }
            return Ok(());
        }
        self.sync_failed.clear();
        tracing::info!(%peer, applied, "block sync");
        let next = self.chain.tip_height().map_or(Height(1), Height::next);
        if next > self.core.height() {
            self.next_height_at = None;
            self.start_height(next).await?;
        }
        // A full batch means the peer may have more: keep going, and say so in `status`.
        let more = received as u32 >= self.config.consensus.sync_batch_blocks;
        self.notify.set_catching_up(more);
        if more {
            self.start_sync(peer);
        }
        Ok(())
    }

    /// Applies consecutive certified blocks from the tip on; stops at the first bad one and
    /// penalizes its sender. Returns how many were applied.
    async fn apply_synced(
        &mut self,
        peer: PeerId,
        blocks: Vec<(Block, CommitCertificate)>,
    ) -> anyhow::Result<usize> {
        if blocks.is_empty() {
            return Ok(0);
        }
        // The blocks follow the decided block being written, if any.
        self.settle().await?;
        let mut applied = 0;
        for (block, certificate) in blocks {
            let next = self.chain.tip_height().map_or(Height(1), Height::next);
            if block.header.height < next {
                continue;
            }
            match self.check_synced(next, &block, &certificate) {
                Ok(outcome) => {
                    // A failed write is not the peer's fault: it stops the node.
                    self.commit_block(&block, &certificate, outcome)?;
                    self.stats.synced_blocks += 1;
                    self.metrics.synced_blocks.inc();
                    applied += 1;
                }
                Err(e) => {
                    tracing::warn!(%peer, height = %block.header.height, error = %e, "peer served a bad block");
                    self.metrics.bad_synced_blocks.inc();
                    let _ = self.net.penalize(peer).await;
                    break;
                }
            }
        }
        Ok(applied)
    }

    /// A connected peer to ask for blocks that has not failed since the last block applied.
    async fn next_sync_peer(&mut self) -> Option<PeerId> {
        let peers = self.net.peers().await.ok()?;
        peers
            .into_iter()
            .filter(|p| p.consensus_subscribed)
            .map(|p| p.peer_id)
            .find(|p| !self.sync_failed.contains(p))
    }

    /// Block sync for a message of a later height from `source`: `source` has the blocks
    /// unless it failed since the last block applied (it may only relay, or lie), then
    /// another peer.
    pub(super) async fn sync_for_message(&mut self, source: PeerId) {
        if self.sync_in_flight {
            return;
        }
        let peer = match self.sync_failed.contains(&source) {
            false => Some(source),
            true => self.next_sync_peer().await,
        };
        if let Some(peer) = peer {
            self.start_sync(peer);
        }
    }

    /// On every tick: while a message of a later height says this node is behind and no
    /// request is in flight, asks the next peer; once every peer failed, starts over with
    /// all of them. Without it, a node whose later-height messages all came through one
    /// lying relay, or from peers that were behind when asked, would wait for good.
    pub(super) async fn sync_if_behind(&mut self) {
        if self.sync_in_flight || self.seen_height <= self.core.height() {
            return;
        }
        let mut peer = self.next_sync_peer().await;
        if peer.is_none() {
            self.sync_failed.clear();
            peer = self.next_sync_peer().await;
        }
        if let Some(peer) = peer {
            self.start_sync(peer);
        }
    }

    /// Checks a synced block against its certificate and the ledger.
    fn check_synced(
        &self,
        expected: Height,
        block: &Block,
        certificate: &CommitCertificate,
    ) -> anyhow::Result<ExecutionOutcome> {
        if block.header.height != expected || certificate.height != expected {
            bail!("expected height {expected}");
        }
        if certificate.block_hash != block.hash() {
            bail!("certificate is for another block");
        }
        let chain = &self.chain;
        #[cfg(feature = "sim")]
        let skip = self.config.bug == Some(super::NodeBug::SkipSyncCertificate);
        #[cfg(not(feature = "sim"))]
        let skip = false;
        if !skip {
            certificate.verify(chain.chain_id(), chain.validators(), chain.verifier())?;
        }
        Ok(chain.validate_synced(block)?)
    }
}

/// Block requests served at once at most; a request beyond it is answered "busy" (the
/// peer asks another).
pub(super) const SYNC_SERVES_MAX: usize = 4;

/// Answers a peer's block request off the consensus task: reads blocks and certificates
/// from the store until the count or about `bytes_max` of blocks (the network trims the
/// rest). At most [`SYNC_SERVES_MAX`] at once (`slots`).
pub(super) fn serve_sync(
    chain: ChainReader,
    slots: &Arc<Semaphore>,
    request: InboundSyncRequest,
    bytes_max: usize,
    exec: Exec,
) {
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        request.responder.respond(SyncResponse::Error("busy: too many block requests".into()));
        return;
    };
    // The answer goes back through the responder; nothing waits for the work itself.
    let _work = exec.spawn(move || {
        let SyncRequest::Blocks { from, count } = request.request else {
            request.responder.respond(SyncResponse::Error("not a block request".into()));
            return;
        };
        let count = count.min(tally_network::wire::SYNC_BLOCKS_MAX);
        let blocks = chain.blocks_from(from, count, bytes_max);
        request.responder.respond(SyncResponse::Blocks(blocks));
        drop(slot);
    });
}
