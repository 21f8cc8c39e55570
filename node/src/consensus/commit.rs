//! Committing decided blocks.
//!
//! A decided block is written (its redb transaction with the fsync, then its tx index
//! batch) on the blocking pool, while the driver goes on handling messages, fetching the
//! next height's proposals and waiting out `timeout_commit`. The state and the tip move only
//! once the write is durable, so admission and the RPC see the parent block and its state
//! until then (queries by tx or block hash answer up to the tip, though the store and the
//! tx index may already hold the block). Blocks from block sync are written on the driver
//! task, one after another (`commit_block`).
//!
//! What keeps it safe: the next height starts only after the write is done (and after
//! `timeout_commit`), so this validator never signs anything at h+1 while block h could
//! still be lost to a crash. A block sync waits for the write, then applies what follows
//! it. A failed write stops the node, as a synchronous one did.

use super::Driver;
use crate::exec::{Work, WorkFailed};
use anyhow::{bail, Context as _};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::{CommitCertificate, Height};
use tally_ledger::{Block, ExecutionOutcome, TxHash};
use tokio::time::Instant;

/// A decided block whose write is under way on the blocking pool.
pub(super) struct Writing {
    pub height: Height,
    handle: Work<Written>,
}

/// What the write of a decided block hands back to the driver.
pub(super) struct Written {
    block: Arc<Block>,
    certificate: CommitCertificate,
    outcome: ExecutionOutcome,
    /// When consensus decided the block.
    decided: Instant,
    /// How long the write took.
    write: Duration,
    result: anyhow::Result<()>,
}

/// Resolves when the write in `writing` ends; never when there is none.
pub(super) async fn written(writing: &mut Option<Writing>) -> Result<Written, WorkFailed> {
    match writing {
        Some(w) => (&mut w.handle).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    pub(super) fn commit_decided(&mut self, certificate: CommitCertificate) -> anyhow::Result<()> {
        let height = certificate.height;
        let hash = certificate.block_hash;
        let Some(block) = self.blocks.get(height, &hash) else {
            tracing::info!(%height, %hash, "decided a block this node does not have yet; waiting for it");
            self.pending_decision = Some(certificate);
            return Ok(());
        };
        // The core may decide a value it knew valid from its signing record (after a
        // restart) without asking this node again.
        if self.judge(height, &hash) != Some(true) {
            bail!("more than 2/3 of the voting power committed block {hash} at {height}, which this node judges invalid");
        }
        let outcome = self.blocks.take_outcome(&hash).context("a valid block has its execution")?;
        if let Some(writing) = &self.writing {
            // The core decides once per height and a height starts after the write of the
            // one before it: two writes at once would be a bug here.
            bail!("decided block {height} while block {} is still being written", writing.height);
        }
        #[cfg(feature = "sim")]
        if self.config.bug == Some(super::NodeBug::AckBeforeDurable) {
            self.notify.committed(height, &outcome.tx_hashes);
        }
        let decided = Instant::now();
        let chain = self.chain.clone();
        let handle = self.config.exec.spawn(move || {
            let started = Instant::now();
            let result = chain
                .persist(&block, &certificate, &outcome)
                .with_context(|| format!("committing block {height} to the ledger"));
            Written { block, certificate, outcome, decided, write: started.elapsed(), result }
        });
        self.writing = Some(Writing { height, handle });
        let delay = Duration::from_millis(self.config.consensus.timeout_commit_ms);
        self.next_height_at = Some((decided + delay, height.next()));
        Ok(())
    }

    /// The write of a decided block ended: moves the state to it. Fatal if it failed.
    pub(super) fn on_written(
        &mut self,
        written: Result<Written, WorkFailed>,
    ) -> anyhow::Result<()> {
        self.writing = None;
        let Written { block, certificate, outcome, decided, write, result } =
            written.context("the write of a decided block panicked")?;
        result?;
        self.apply_committed(&block, &certificate, outcome, decided, write);
        Ok(())
    }

    /// Waits for the write of a decided block, if one is under way, and applies it.
    pub(super) async fn settle(&mut self) -> anyhow::Result<()> {
        if self.writing.is_some() {
            let written = written(&mut self.writing).await;
            self.on_written(written)?;
        }
        Ok(())
    }

    /// Writes a block and applies it, on the driver task (block sync, whose blocks follow
    /// each other). Fatal on a write error.
    pub(super) fn commit_block(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
        outcome: ExecutionOutcome,
    ) -> anyhow::Result<()> {
        let height = block.header.height;
        let started = Instant::now();
        self.chain
            .persist(block, certificate, &outcome)
            .with_context(|| format!("committing block {height} to the ledger"))?;
        self.apply_committed(block, certificate, outcome, started, started.elapsed());
        Ok(())
    }

    /// The second half of a commit, once the block is durable: moves the state, updates the
    /// mempool, wakes waiters and subscribers.
    fn apply_committed(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
        outcome: ExecutionOutcome,
        decided: Instant,
        write: Duration,
    ) {
        let height = block.header.height;
        let applying = Instant::now();
        let hashes: Vec<TxHash> = outcome.tx_hashes.clone();
        // The state moves and the mempool drops what the block committed (chain room).
        let dropped = self.chain.apply_committed(block, outcome);
        self.notify.committed(height, &hashes);
        self.notify.publish_block(block, &hashes);
        self.record_commit_metrics(block, write);
        self.record_validator_metrics(certificate);
        tracing::info!(
            height = height.0,
            round = certificate.round.0,
            txs = block.txs.len(),
            hash = %block.hash(),
            write_ms = write.as_millis() as u64,
            apply_ms = applying.elapsed().as_millis() as u64,
            commit_ms = decided.elapsed().as_millis() as u64,
            mempool_dropped = dropped,
            "committed block"
        );
        self.blocks.committed(height);
        self.fillings.committed(height);
        self.maybe_snapshot(block, certificate);
        if self.pending_decision.as_ref().is_some_and(|c| c.height <= height) {
            self.pending_decision = None;
        }
    }

    /// CometBFT's gauges of the committed height: the validators missing from its
    /// certificate, and those caught equivocating at it.
    fn record_validator_metrics(&mut self, certificate: &CommitCertificate) {
        let set = self.chain.validators();
        let power = |ids: &mut dyn Iterator<Item = tally_consensus::ValidatorIndex>| {
            ids.map(|i| set.power_of(i).0).sum::<u64>()
        };
        let signed: HashSet<_> = certificate.signatures.iter().map(|s| s.validator).collect();
        let missing: Vec<_> =
            set.indexed().map(|(i, _)| i).filter(|i| !signed.contains(i)).collect();
        let m = &self.metrics;
        m.missing_validators.set(missing.len() as i64);
        m.missing_validators_power.set(power(&mut missing.iter().copied()) as i64);
        let height = certificate.height;
        let byzantine = self.equivocators.remove(&height).unwrap_or_default();
        self.equivocators.retain(|h, _| *h > height);
        m.byzantine_validators.set(byzantine.len() as i64);
        m.byzantine_validators_power.set(power(&mut byzantine.iter().copied()) as i64);
    }

    fn record_commit_metrics(&mut self, block: &Block, write: Duration) {
        let metrics = &self.metrics;
        metrics.blocks_committed.inc();
        metrics.txs_committed.inc_by(block.txs.len() as u64);
        metrics.block_txs.observe(block.txs.len() as f64);
        metrics.commit_seconds.observe(write.as_secs_f64());
        let now = Instant::now();
        if let Some(last) = self.last_commit.replace(now) {
            metrics.block_interval_seconds.observe((now - last).as_secs_f64());
        }
    }
}
