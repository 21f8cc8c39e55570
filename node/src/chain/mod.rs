//! The chain room: the ledger (redb store, account state, tx index) and the mempool, behind
//! one small API. Nothing outside this folder takes either lock.
//!
//! **Lock order: mempool, then ledger.** It is written here once, and every method below
//! follows it. The consensus room commits a block (moving the state) and updates the
//! mempool under one mempool lock, so an admission never sees the new account nonces
//! together with the old pending txs (which would demand a nonce too high).
//!
//! Who may do what:
//! - the consensus room is the only writer of the tip ([`Chain::persist`],
//!   [`Chain::apply_committed`]) and builds and judges blocks;
//! - the admission room claims mempool room and inserts verified txs;
//! - every query goes through a [`ChainReader`], which can only read.

pub mod mempool;
pub mod query;
mod reader;
pub mod search;

pub use reader::{AccountView, ChainReader, FoundTx, TipView};
pub use search::Search;

use crate::config::MempoolConfig;
use crate::metrics::Metrics;
use mempool::{Mempool, MempoolError, MempoolLimits, Skip};
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tally_consensus::{CommitCertificate, Height, ValidatorSet};
use tally_crypto::{ChainId, PublicKey, SignedItem, Verifier, VerifyError};
use tally_ledger::{
    Block, BlockError, BuiltBlock, ExecutionOutcome, Genesis, Ledger, LedgerCommitError, StateTree,
    Tx, TxHash, TxVerifier,
};

/// Where txs come from, for the mempool room they may claim ([`Chain::claim_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Rpc,
    Gossip,
}

/// Mempool room claimed for txs being verified ([`Chain::claim_room`]); given back when
/// dropped.
pub struct RoomClaim<'a> {
    claimed: &'a AtomicUsize,
    granted: usize,
}

impl RoomClaim<'_> {
    /// How many txs may go on.
    pub fn granted(&self) -> usize {
        self.granted
    }
}

impl Drop for RoomClaim<'_> {
    fn drop(&mut self) {
        self.claimed.fetch_sub(self.granted, Ordering::Relaxed);
    }
}

/// Checks the signatures of a block's txs, except those of txs that are in the mempool: the
/// mempool admits only txs whose signatures verified, and a tx hash covers the signature,
/// so a tx found there by hash needs no second check. Built from the mempool before the
/// ledger lock is taken. The signatures it is asked to check are counted as
/// `tally_signature_batch_size{source="block"}`.
pub struct BlockTxVerifier<'a> {
    verifier: &'a Verifier,
    metrics: &'a Metrics,
    in_mempool: HashSet<TxHash, foldhash::fast::RandomState>,
}

impl TxVerifier for BlockTxVerifier<'_> {
    fn verify_many(&self, items: &[SignedItem<'_>]) -> Vec<Result<(), VerifyError>> {
        let started = Instant::now();
        let verdicts = self.verifier.verify_many(items);
        if !items.is_empty() {
            let seconds = started.elapsed().as_secs_f64();
            self.metrics.signature_batch("block", items.len(), seconds);
        }
        verdicts
    }

    fn known_verified(&self, tx_hash: &TxHash) -> bool {
        self.in_mempool.contains(tx_hash)
    }
}

/// A gossiped batch sifted by [`Chain::sift_gossip`].
pub struct Sifted {
    /// The txs worth verifying, in order, each with its hash.
    pub txs: Vec<(Tx, TxHash)>,
    /// Some txs were dropped unverified for their nonce: this node cannot vouch for the
    /// batch, so it is not forwarded.
    pub unvouched: bool,
}

/// A block this validator built for a proposal, with its execution.
pub struct Proposed {
    pub built: BuiltBlock,
    /// Candidate txs left out because they no longer apply (and dropped from the mempool).
    pub skipped: usize,
}

/// A block judged by [`Chain::judge_block`].
pub struct Judged {
    pub outcome: ExecutionOutcome,
}

/// The ledger and the mempool, with the lock order kept inside.
pub struct Chain {
    genesis: Genesis,
    validators: ValidatorSet,
    verifier: Arc<Verifier>,
    ledger: RwLock<Ledger>,
    mempool: Mutex<Mempool>,
    /// Txs between a claim of mempool room and their admission (being verified).
    claimed: AtomicUsize,
    /// The RPC's share of the mempool and the whole (`mempool.rpc_txs_max`, `txs_max`).
    rpc_txs_max: usize,
    txs_max: usize,
    metrics: Arc<Metrics>,
}

impl Chain {
    pub fn new(
        ledger: Ledger,
        config: &MempoolConfig,
        verifier: Arc<Verifier>,
        metrics: Arc<Metrics>,
    ) -> Chain {
        let limits = MempoolLimits {
            txs_max: config.txs_max,
            bytes_max: config.bytes_max,
            txs_per_sender_max: config.txs_per_sender_max,
        };
        Chain {
            genesis: ledger.genesis().clone(),
            validators: ledger.validator_set().clone(),
            verifier,
            ledger: RwLock::new(ledger),
            mempool: Mutex::new(Mempool::new(limits)),
            claimed: AtomicUsize::new(0),
            rpc_txs_max: config.rpc_limit(),
            txs_max: config.txs_max,
            metrics,
        }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.genesis.chain_id
    }

    /// The validator set (fixed by genesis).
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// A read-only view for queries.
    pub fn reader(self: &Arc<Self>) -> ChainReader {
        ChainReader::new(self.clone())
    }

    pub fn tip_height(&self) -> Option<Height> {
        self.ledger.read().tip().map(|(h, _)| h)
    }

    // ----- admission -----

    /// Claims mempool room for up to `wanted` txs about to be verified; the claim holds how
    /// many may go on, and gives the room back when dropped (after their admission). Txs
    /// beyond it are refused before their signatures are checked: under overload, verifying
    /// txs that the mempool then refuses takes the CPU that commits blocks, and throughput
    /// falls as the offered load rises. Counting only txs is enough: every tx has the same
    /// encoded size, and `bytes_max` is the mempool's own hard limit.
    ///
    /// RPC submissions may fill the mempool only up to `mempool.rpc_txs_max` (half of it by
    /// default); the rest is kept for txs gossiped by peers. Without such room, under
    /// overload every node's clients fill its mempool, every node drops its peers' txs,
    /// and each proposal's txs are fetched and verified when the block comes, on the
    /// consensus path: latency grows to seconds.
    pub fn claim_room(&self, wanted: usize, source: Source) -> RoomClaim<'_> {
        let limit = match source {
            Source::Rpc => self.rpc_txs_max,
            Source::Gossip => self.txs_max,
        };
        let held = self.mempool.lock().len();
        let free = limit.saturating_sub(held + self.claimed.load(Ordering::Relaxed));
        // Two claims may both see the same room; the mempool's own limit still holds.
        let granted = wanted.min(free);
        self.claimed.fetch_add(granted, Ordering::Relaxed);
        RoomClaim { claimed: &self.claimed, granted }
    }

    /// The refusal of a tx without room: the count includes the txs being verified.
    pub fn mempool_full(&self) -> MempoolError {
        let m = self.mempool.lock();
        let txs = m.len() + self.claimed.load(Ordering::Relaxed);
        MempoolError::Full { txs, bytes: m.bytes() }
    }

    /// Inserts a tx whose signature verified; `hash` is its hash, `len` its encoded size.
    pub fn insert(&self, tx: Tx, hash: TxHash, len: u64) -> Result<(), MempoolError> {
        let mut mempool = self.mempool.lock();
        mempool.insert(tx, hash, len, |from| self.ledger.read().account(from))
    }

    /// Whether [`Chain::insert`] would take this tx now, without inserting it.
    pub fn check(&self, tx: &Tx, hash: &TxHash, len: u64) -> Result<(), MempoolError> {
        let mempool = self.mempool.lock();
        mempool.check(tx, hash, len, |from| self.ledger.read().account(from))
    }

    /// Sifts gossiped batches before their signatures are checked, under one mempool lock
    /// (see [`mempool::Sifter`]): drops the txs already pending and those whose nonce the
    /// mempool cannot take (used, or after a gap: an earlier tx of the sender was dropped
    /// for lack of room). Each kept tx comes with its hash. The drops are counted in
    /// `tally_gossip_txs_skipped_total{reason}`.
    pub fn sift_gossip(&self, batches: Vec<Vec<Tx>>) -> Vec<Sifted> {
        let hashed: Vec<Vec<(Tx, TxHash)>> = batches
            .into_iter()
            .map(|txs| txs.into_iter().map(|t| (t, t.hash())).collect())
            .collect();
        let (mut pending, mut nonce) = (0u64, 0u64);
        let sifted = {
            let mempool = self.mempool.lock();
            let ledger = self.ledger.read();
            let mut sifter = mempool.sifter(|k| ledger.account(k));
            hashed
                .into_iter()
                .map(|txs| {
                    let nonce_before = nonce;
                    let txs = txs
                        .into_iter()
                        .filter(|(tx, hash)| match sifter.check(tx, hash) {
                            Ok(()) => true,
                            Err(Skip::Pending) => {
                                pending += 1;
                                false
                            }
                            Err(Skip::Nonce) => {
                                nonce += 1;
                                false
                            }
                        })
                        .collect();
                    Sifted { txs, unvouched: nonce > nonce_before }
                })
                .collect::<Vec<_>>()
        };
        self.metrics.gossip_txs_skipped(pending, nonce);
        sifted
    }

    /// The oldest pending txs, at most `limit`, for re-gossip.
    pub fn oldest_pending(&self, limit: usize) -> Vec<Tx> {
        self.mempool.lock().oldest(limit)
    }

    // ----- blocks (the consensus room) -----

    /// Builds this validator's block for `height` from the mempool, up to the chain's
    /// limits. Candidates that no longer apply (a conflicting tx committed elsewhere) are
    /// dropped from the mempool and their senders' other pending txs re-checked.
    pub fn build_block(
        &self,
        height: Height,
        time_ms: u64,
        proposer: PublicKey,
    ) -> Result<Proposed, String> {
        let params = &self.genesis.params;
        let (candidates, hashes) =
            self.mempool.lock().reap_hashed(params.block_txs_max as usize, params.block_bytes_max);
        let verifier = BlockTxVerifier {
            verifier: &self.verifier,
            metrics: &self.metrics,
            in_mempool: hashes.into_iter().collect(),
        };
        let built = {
            let ledger = self.ledger.read();
            if ledger.next_height() != height {
                return Err(format!(
                    "asked to propose at {height}, the ledger's next height is {}",
                    ledger.next_height()
                ));
            }
            ledger.build_block(&candidates, time_ms, proposer, &verifier)
        };
        let skipped = built.skipped.len();
        if skipped > 0 {
            let hashes: Vec<TxHash> = built.skipped.iter().map(|s| s.tx_hash).collect();
            let senders: Vec<PublicKey> =
                built.skipped.iter().map(|s| candidates[s.index].transfer.from).collect();
            let mut mempool = self.mempool.lock();
            let ledger = self.ledger.read();
            mempool.update(&hashes, &senders, |k| ledger.account(k));
        }
        Ok(Proposed { built, skipped })
    }

    /// The mempool's copies of the txs `tx_hashes`, in order (`None` where it has none),
    /// under one lock: what a compact proposal's block is rebuilt from.
    pub fn txs_from_mempool(&self, tx_hashes: &[TxHash]) -> Vec<Option<Tx>> {
        let mempool = self.mempool.lock();
        tx_hashes.iter().map(|h| mempool.get(h).copied()).collect()
    }

    /// valid(v) by the ledger's deterministic rules, for a proposed block of the next
    /// height whose tx hashes are `tx_hashes`. The txs the mempool holds are known verified;
    /// the others are batch-verified. A valid block's txs that were fetched for it join the
    /// mempool as verified (their gossiped copies, still on their way, are then dropped
    /// unverified, and the sender's later txs can be admitted).
    pub fn judge_block(&self, block: &Block, tx_hashes: Vec<TxHash>) -> Result<Judged, BlockError> {
        let verifier = {
            let mempool = self.mempool.lock();
            let in_mempool = tx_hashes.iter().filter(|h| mempool.contains(h)).copied().collect();
            BlockTxVerifier { verifier: &self.verifier, metrics: &self.metrics, in_mempool }
        };
        let fetched = verifier.in_mempool.len() < block.txs.len();
        let outcome = self.ledger.read().validate_block_hashed(block, tx_hashes, &verifier)?;
        if fetched {
            self.adopt_block_txs(&block.txs, &outcome.tx_hashes);
        }
        Ok(Judged { outcome })
    }

    /// valid(v) for a block from block sync (its txs were never in this mempool).
    pub fn validate_synced(&self, block: &Block) -> Result<ExecutionOutcome, BlockError> {
        self.ledger.read().validate_block(block, &*self.verifier)
    }

    /// Puts the txs of a block judged valid into the mempool, as verified. Refusals
    /// (already held, a conflicting tx, no room) are expected and ignored. `tx_hashes[i]`
    /// is the hash of `txs[i]`.
    fn adopt_block_txs(&self, txs: &[Tx], tx_hashes: &[TxHash]) {
        let mut mempool = self.mempool.lock();
        let ledger = self.ledger.read();
        for (tx, hash) in txs.iter().zip(tx_hashes) {
            if !mempool.contains(hash) {
                let bytes = tally_ledger::TX_BYTES as u64;
                let _ = mempool.insert(*tx, *hash, bytes, |k| ledger.account(k));
            }
        }
    }

    /// Writes a decided block (one durable redb transaction, then its tx index batch).
    /// The tip and the state stay the parent's until [`Chain::apply_committed`]: queries
    /// and admission go on against the parent meanwhile. Runs on a blocking thread.
    pub fn persist(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        outcome: &ExecutionOutcome,
    ) -> Result<(), LedgerCommitError> {
        self.ledger.read().persist(block, certificate, outcome)
    }

    /// The second half of a commit, once [`Chain::persist`] made the block durable: the
    /// state moves to it and the mempool drops what it committed (and what no longer
    /// applies), under one mempool lock. Returns how many pending txs were dropped.
    pub fn apply_committed(&self, block: &Block, outcome: ExecutionOutcome) -> usize {
        // Every account the block changed: the mempool keeps copies of pending senders'.
        let touched: Vec<PublicKey> =
            block.txs.iter().flat_map(|t| [t.transfer.from, t.transfer.to]).collect();
        let hashes = outcome.tx_hashes.clone();
        let mut mempool = self.mempool.lock();
        {
            let mut ledger = self.ledger.write();
            assert_eq!(
                block.header.height,
                ledger.next_height(),
                "a block is applied on its parent only"
            );
            ledger.apply_persisted(block, outcome);
        }
        let ledger = self.ledger.read();
        mempool.update(&hashes, &touched, |k| ledger.account(k))
    }

    /// The committed account state at the tip, for a snapshot.
    pub fn state(&self) -> StateTree {
        self.ledger.read().state().clone()
    }
}
