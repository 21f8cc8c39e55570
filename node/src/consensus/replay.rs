//! Resuming the height in progress after a restart, from the consensus log (`wal.rs`).
//!
//! The core's own messages come back from the signing record (`Core::restore_signed`, at
//! startup); the log adds what the validator had received and its timeouts, in their order,
//! and the blocks of its proposals. The blocks go in first, so that the proposal the core
//! re-sends when the height starts has its block; then the messages (verified again: the
//! file is only as trustworthy as the disk) and timeouts are fed as they happened.

use super::wal::WalEntry;
use super::{Driver, Window};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::time::Instant;
use tally_consensus::{Height, Input, Round};
use tally_ledger::Block;
use tally_network::ConsensusMsg;

impl Driver {
    /// Starts `height` at startup, replaying the log if it is the log of `height`.
    pub(super) async fn resume_height(&mut self, height: Height) -> anyhow::Result<()> {
        // The blocks of its recorded precommits first: the core may come back locked on one,
        // and the log may not hold it (lost, cut, or never fsynced).
        if let Some(record) = self.record.as_ref() {
            let locked = record.locked_blocks(height).context("reading the signing record")?;
            for (round, block) in locked {
                self.blocks.insert_kept(block, round);
            }
        }
        let Some(recovered) = self.recovered.take() else {
            return self.start_height(height).await;
        };
        if let Some(cut) = &recovered.cut {
            tracing::warn!(
                offset = cut.offset,
                bytes = cut.bytes,
                reason = %cut.reason,
                "cut a torn or corrupt tail off the consensus log; replaying the entries before it"
            );
            self.metrics.wal_cut_bytes.inc_by(cut.bytes);
        }
        if recovered.height != Some(height) {
            if let Some(stale) = recovered.height {
                tracing::info!(log = %stale, resuming = %height, "the consensus log is of another height; starting afresh");
            }
            return self.start_height(height).await;
        }
        let started = Instant::now();
        let entries: Vec<WalEntry> = recovered
            .entries
            .into_iter()
            .filter(|entry| match entry {
                WalEntry::Received(msg) => {
                    let ok = self.verify_message(msg);
                    if !ok {
                        tracing::warn!("a logged consensus message does not verify; skipped");
                    }
                    ok
                }
                _ => true,
            })
            .collect();
        let window = Window {
            height,
            round: entries.iter().map(entry_round).max().unwrap_or(Round(0)),
            rounds_ahead_max: self.core.config().rounds_ahead_max,
        };
        // Its own block of a round: the last one logged is the one it may have signed a
        // proposal for (a kill between logging a block and signing leaves an earlier one).
        let mut own: BTreeMap<Round, &Block> = BTreeMap::new();
        for entry in &entries {
            let (block, round) = match entry {
                WalEntry::OwnBlock { round, block } => {
                    own.insert(*round, block);
                    continue;
                }
                WalEntry::Received(ConsensusMsg::Proposal { proposal, block }) => {
                    (block, proposal.proposal.round)
                }
                WalEntry::Received(ConsensusMsg::Certificate { certificate, block }) => {
                    (block, certificate.round)
                }
                _ => continue,
            };
            if block.header.height == height {
                self.blocks.insert(block.clone(), None, round, window);
            }
        }
        for (round, block) in own {
            if block.header.height == height {
                self.blocks.insert_kept(block.clone(), round);
            }
        }
        self.start_height(height).await?;
        let (mut messages, mut timeouts) = (0u64, 0u64);
        for entry in entries {
            match entry {
                WalEntry::Received(msg) => {
                    messages += 1;
                    self.feed_message(msg, None).await?;
                }
                WalEntry::Timeout(t) => {
                    timeouts += 1;
                    self.step(Input::TimeoutElapsed(t)).await?;
                }
                WalEntry::OwnBlock { .. } | WalEntry::Height(_) => {}
            }
        }
        self.metrics.wal_replayed.inc_by(messages + timeouts);
        tracing::info!(
            %height,
            messages,
            timeouts,
            round = %self.core.round(),
            step = ?self.core.current_step(),
            replay_ms = started.elapsed().as_millis() as u64,
            "replayed the consensus log"
        );
        Ok(())
    }
}

fn entry_round(entry: &WalEntry) -> Round {
    match entry {
        WalEntry::Height(_) => Round(0),
        WalEntry::Received(
            ConsensusMsg::Proposal { proposal, .. }
            | ConsensusMsg::CompactProposal { proposal, .. },
        ) => proposal.proposal.round,
        WalEntry::Received(ConsensusMsg::Vote(v)) => v.vote.round,
        WalEntry::Received(ConsensusMsg::Certificate { certificate, .. }) => certificate.round,
        // Never logged (evidence is no input of the core), but it has a round.
        WalEntry::Received(ConsensusMsg::Evidence(e)) => e.round(),
        WalEntry::OwnBlock { round, .. } => *round,
        WalEntry::Timeout(t) => t.round,
    }
}
