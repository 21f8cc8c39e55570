//! Snapshots in the driver: writing one after every `snapshots.interval_blocks`-th block, and
//! answering peers' snapshot requests from `data/snapshots/`.
//!
//! Writing runs on the blocking pool from an O(1) clone of the committed state tree, so the
//! consensus task never waits for it; while one write runs, the next due snapshot is skipped
//! (counted in the log), never queued. A failed write is an operating error, logged: the
//! ledger itself is not affected.

use super::Driver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tally_consensus::CommitCertificate;
use tally_ledger::snapshot::make_snapshot;
use tally_ledger::{Block, SnapshotDir, SnapshotFileError, StateTree};
use tally_network::wire::SNAPSHOT_OFFERS_MAX;
use tally_network::{InboundSyncRequest, SyncResponse};

/// The driver's snapshot writer.
pub(super) struct Snapshots {
    pub dir: SnapshotDir,
    /// True while a snapshot is being written.
    writing: Arc<AtomicBool>,
}

impl Snapshots {
    pub fn new(dir: SnapshotDir) -> Snapshots {
        Snapshots { dir, writing: Arc::new(AtomicBool::new(false)) }
    }
}

impl Driver {
    /// After committing `block`: writes a snapshot of the new state if its height is due.
    pub(super) fn maybe_snapshot(&mut self, block: &Block, certificate: &CommitCertificate) {
        let interval = self.config.snapshots.interval_blocks;
        let height = block.header.height;
        if interval == 0 || !height.0.is_multiple_of(interval) {
            return;
        }
        let Some(snapshots) = self.snapshots.as_ref() else { return };
        if snapshots.writing.swap(true, Ordering::AcqRel) {
            tracing::warn!(%height, "skipping a snapshot: the previous one is still being written");
            return;
        }
        let state: StateTree = self.chain.state();
        let header = block.header.clone();
        let certificate = certificate.clone();
        let dir = snapshots.dir.clone();
        let writing = snapshots.writing.clone();
        let keep = self.config.snapshots.keep_recent;
        let (written, newest) =
            (self.metrics.snapshots_written.clone(), self.metrics.snapshot_height.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let (offer, chunks) = make_snapshot(&state, &header, &certificate);
            let result = dir.write(&offer, &chunks).and_then(|()| dir.prune(keep));
            writing.store(false, Ordering::Release);
            match result {
                Ok(pruned) => {
                    written.inc();
                    newest.set(i64::try_from(height.0).unwrap_or(i64::MAX));
                    tracing::info!(
                        height = height.0,
                        accounts = offer.manifest.accounts,
                        chunks = chunks.len(),
                        ms = started.elapsed().as_millis() as u64,
                        pruned = pruned.len(),
                        "snapshot written"
                    )
                }
                Err(e) => tracing::error!(%height, error = %e, "writing a snapshot failed"),
            }
        });
    }
}

/// Answers a peer's snapshot request from the folder, off the consensus task. Stored
/// snapshots are read back under the same limits as a peer's (the disk is not trusted).
pub(super) fn serve_snapshot_request(dir: Option<SnapshotDir>, request: InboundSyncRequest) {
    tokio::task::spawn_blocking(move || {
        let Some(dir) = dir else {
            request.responder.respond(SyncResponse::Error("snapshots are off".into()));
            return;
        };
        let response = match request.request {
            tally_network::SyncRequest::Snapshots => {
                let heights = dir.heights().unwrap_or_default();
                let offers = heights
                    .iter()
                    .rev()
                    .take(SNAPSHOT_OFFERS_MAX as usize)
                    .filter_map(|h| dir.offer(*h).ok())
                    .collect();
                SyncResponse::Snapshots(offers)
            }
            tally_network::SyncRequest::SnapshotChunk { height, index } => {
                match dir.chunk(height, index) {
                    Ok(bytes) => SyncResponse::SnapshotChunk(bytes),
                    Err(SnapshotFileError::NotFound(_)) => {
                        SyncResponse::Error("no such snapshot chunk".into())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read a snapshot chunk for a peer");
                        SyncResponse::Error("cannot read the snapshot chunk".into())
                    }
                }
            }
            tally_network::SyncRequest::Blocks { .. }
            | tally_network::SyncRequest::BlockTxs { .. } => {
                SyncResponse::Error("not a snapshot request".into())
            }
        };
        request.responder.respond(response);
    });
}
