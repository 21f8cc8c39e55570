//! State shared by the driver, the RPC server and the tx ingress: the ledger, the mempool,
//! the verifier, the commit notifications and the node's status.

use crate::config::Config;
use crate::events::{BlockEvent, EventSender};
use crate::mempool::{Mempool, MempoolError, MempoolLimits, Skip};
use crate::sigverify::{OwnedItem, SigVerifyStage};
use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tally_consensus::{
    BlockHash, CommitCertificate, Height, Round, StateSummary, Step, ValidatorSet,
};
use tally_crypto::{ChainId, Hash, PublicKey, SignedItem, Verifier, VerifyError};
use tally_ledger::{Block, DecodeError, Genesis, Ledger, StatelessError, Tx, TxHash, TxVerifier};
use tally_network::NetworkHandle;
use tokio::sync::{mpsc, oneshot};

/// Why a submitted tx was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("tx is not valid base64: {0}")]
    Encoding(String),
    #[error("tx does not decode: {0}")]
    Decode(String),
    #[error("tx is malformed: {0}")]
    Stateless(#[from] StatelessError),
    #[error("invalid signature: {0}")]
    Signature(#[from] VerifyError),
    #[error("{0}")]
    Mempool(#[from] MempoolError),
    #[error("too many broadcast_tx_commit calls are waiting ({0}); try again later")]
    TooManyWaiters(usize),
    #[error("the node is catching up with its peers (block sync); submit to a node that is not syncing, or retry later")]
    Syncing,
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl SubmitError {
    /// A stable machine-readable reason, in the error's `data.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            SubmitError::Encoding(_) => "bad_encoding",
            SubmitError::Decode(_) => "bad_tx",
            SubmitError::Stateless(_) => "malformed_tx",
            SubmitError::Signature(_) => "bad_signature",
            SubmitError::Mempool(MempoolError::AlreadyKnown(_)) => "already_known",
            SubmitError::Mempool(MempoolError::Full { .. } | MempoolError::SenderFull(_)) => {
                "mempool_full"
            }
            SubmitError::Mempool(MempoolError::BadNonce { .. }) => "bad_nonce",
            SubmitError::Mempool(MempoolError::InsufficientBalance { .. }) => {
                "insufficient_balance"
            }
            SubmitError::TooManyWaiters(_) => "busy",
            SubmitError::Syncing => "syncing",
            SubmitError::ShuttingDown => "shutting_down",
        }
    }
}

impl From<DecodeError> for SubmitError {
    fn from(e: DecodeError) -> Self {
        SubmitError::Decode(e.to_string())
    }
}

/// Where a committed tx landed.
pub type TxLocation = (Height, u32);

/// A `broadcast_tx_commit` call waiting for its tx.
pub struct CommitWaiter {
    rx: oneshot::Receiver<TxLocation>,
}

impl CommitWaiter {
    pub async fn wait(self) -> Option<TxLocation> {
        self.rx.await.ok()
    }
}

/// Where txs come from, for the mempool room they may claim ([`Shared::claim_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Rpc,
    Gossip,
}

/// Mempool room claimed for txs being verified ([`Shared::claim_room`]).
pub struct RoomClaim<'a> {
    claimed: &'a AtomicUsize,
    pub granted: usize,
}

impl Drop for RoomClaim<'_> {
    fn drop(&mut self) {
        self.claimed.fetch_sub(self.granted, Ordering::Relaxed);
    }
}

/// Checks the signatures of a block's txs for the driver, except those of txs that are in
/// the mempool: the mempool admits only txs whose signatures verified, and a tx hash covers
/// the signature, so a tx found there by hash needs no second check. Built from the mempool
/// before the ledger lock is taken (lock order: mempool, then ledger).
/// The signatures it is asked to check are counted as
/// `tally_signature_batch_size{source="block"}`.
pub struct BlockTxVerifier<'a> {
    verifier: &'a Verifier,
    metrics: &'a crate::metrics::Metrics,
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

impl BlockTxVerifier<'_> {
    /// How many of the block's txs the mempool held when the verifier was made.
    pub fn known_count(&self) -> usize {
        self.in_mempool.len()
    }
}

/// What `tx` returns from the store.
pub struct FoundTx {
    pub height: Height,
    pub index: u32,
    pub tx: Tx,
    pub proof: Option<Value>,
}

/// A gossiped batch sifted by [`Shared::sift_gossip`].
pub struct Sifted {
    /// The txs worth verifying, in order, each with its hash.
    pub txs: Vec<(Tx, TxHash)>,
    /// Some txs were dropped unverified for their nonce: this node cannot vouch for the
    /// batch, so it is not forwarded.
    pub unvouched: bool,
}

/// The node's identity, for `status` and `net_info`.
pub struct NodeInfo {
    pub peer_id: String,
    pub listen_addr: String,
    pub moniker: String,
    pub validator_key: Option<PublicKey>,
}

pub struct Shared {
    pub config: Config,
    pub chain_id: ChainId,
    pub genesis: Genesis,
    pub validators: ValidatorSet,
    pub info: NodeInfo,
    pub ledger: RwLock<Ledger>,
    pub mempool: Mutex<Mempool>,
    /// Txs between a claim of mempool room and their admission (being verified).
    claimed: AtomicUsize,
    pub verifier: Arc<Verifier>,
    /// Where tx signatures from RPC and gossip are verified, in combined batches.
    pub sigverify: SigVerifyStage,
    pub network: NetworkHandle,
    /// Newly admitted txs for the gossip batcher. Full: the tx stays in this node's mempool
    /// (and reaches the chain when this node proposes) but is not gossiped; counted.
    pub gossip: mpsc::Sender<Tx>,
    pub gossip_dropped: AtomicU64,
    waiters: Mutex<HashMap<TxHash, Vec<oneshot::Sender<TxLocation>>>>,
    waiters_count: AtomicU64,
    pub consensus: RwLock<Option<StateSummary>>,
    pub metrics: crate::metrics::Metrics,
    /// True while the node is block-syncing (behind its peers).
    pub catching_up: std::sync::atomic::AtomicBool,
    /// Committed blocks for WebSocket subscribers; bounded (rpc.subscription_lag_blocks_max),
    /// never waited on.
    pub events: EventSender,
    pub subscriptions: crate::subscriptions::Registry,
    /// The consensus step last published and when it began, for `tally_step_seconds`.
    step_clock: Mutex<Option<(Height, Round, Step, Instant)>>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        genesis: Genesis,
        validators: ValidatorSet,
        info: NodeInfo,
        ledger: Ledger,
        verifier: Arc<Verifier>,
        network: NetworkHandle,
        gossip: mpsc::Sender<Tx>,
    ) -> Shared {
        let limits = MempoolLimits {
            txs_max: config.mempool.txs_max,
            bytes_max: config.mempool.bytes_max,
            txs_per_sender_max: config.mempool.txs_per_sender_max,
        };
        let events = tokio::sync::broadcast::channel(config.rpc.subscription_lag_blocks_max).0;
        let metrics = crate::metrics::Metrics::new();
        let sigverify = SigVerifyStage::start(verifier.clone(), metrics.signature_batches())
            .expect("starting the signature verification thread");
        Shared {
            chain_id: genesis.chain_id.clone(),
            events,
            config,
            genesis,
            validators,
            info,
            ledger: RwLock::new(ledger),
            mempool: Mutex::new(Mempool::new(limits)),
            claimed: AtomicUsize::new(0),
            verifier,
            sigverify,
            network,
            gossip,
            gossip_dropped: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            waiters_count: AtomicU64::new(0),
            consensus: RwLock::new(None),
            metrics,
            catching_up: std::sync::atomic::AtomicBool::new(false),
            subscriptions: crate::subscriptions::Registry::default(),
            step_clock: Mutex::new(None),
        }
    }

    // ----- transactions in -----

    pub fn decode_tx_param(&self, param: Option<&str>) -> Result<Vec<u8>, SubmitError> {
        let s = param.ok_or_else(|| SubmitError::Encoding("missing parameter: tx".into()))?;
        // An upper bound on the decoded size, checked before decoding anything.
        if s.len() > tally_ledger::TX_BYTES_MAX * 4 / 3 + 4 {
            return Err(SubmitError::Decode(format!(
                "tx is larger than the limit of {} bytes",
                tally_ledger::TX_BYTES_MAX
            )));
        }
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| SubmitError::Encoding(e.to_string()))
    }

    /// A syncing node's state is behind its peers': its nonce and balance checks would
    /// judge against old state, and it does not propose, so txs are refused outright.
    pub fn refuse_while_syncing(&self) -> Result<(), SubmitError> {
        if self.catching_up.load(Ordering::Relaxed) {
            self.metrics.tx_refused_syncing.inc();
            return Err(SubmitError::Syncing);
        }
        Ok(())
    }

    /// Candidates for a block proposal (see [`crate::mempool::Mempool::reap`]), with a
    /// verifier that knows them all: they come from the mempool.
    pub fn reap_for_proposal(
        &self,
        txs_max: usize,
        bytes_max: u64,
    ) -> (Vec<Tx>, BlockTxVerifier<'_>) {
        let (txs, hashes) = self.mempool.lock().reap_hashed(txs_max, bytes_max);
        let in_mempool = hashes.into_iter().collect();
        (txs, BlockTxVerifier { verifier: &self.verifier, metrics: &self.metrics, in_mempool })
    }

    /// A verifier for the block whose tx hashes are `tx_hashes` (see [`BlockTxVerifier`]).
    pub fn block_tx_verifier(&self, tx_hashes: &[TxHash]) -> BlockTxVerifier<'_> {
        let mempool = self.mempool.lock();
        let in_mempool = tx_hashes.iter().filter(|h| mempool.contains(h)).copied().collect();
        BlockTxVerifier { verifier: &self.verifier, metrics: &self.metrics, in_mempool }
    }

    /// Sifts gossiped batches before their signatures are checked, under one mempool lock
    /// (see [`crate::mempool::Sifter`]): drops the txs already pending and those whose nonce
    /// the mempool cannot take (used, or after a gap: an earlier tx of the sender was
    /// dropped for lack of room). Each kept tx comes with its hash, passed on to
    /// [`Shared::admit_verified`]. The drops are counted in
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

    /// Puts the txs of a block judged valid into the mempool, as verified (the block's
    /// validation checked the signatures of those it did not hold). A node that fetched a
    /// proposal's txs then holds them like the others: their gossiped copies, still on
    /// their way, are dropped unverified, the sender's later txs can be admitted, and if the
    /// block does not commit the txs stay pending here. Refusals (already held, a
    /// conflicting tx, no room) are expected and ignored. `tx_hashes[i]` is the hash of
    /// `txs[i]`.
    pub fn adopt_block_txs(&self, txs: &[Tx], tx_hashes: &[TxHash]) {
        let mut mempool = self.mempool.lock();
        let ledger = self.ledger.read();
        for (tx, hash) in txs.iter().zip(tx_hashes) {
            if !mempool.contains(hash) {
                let bytes = tally_ledger::TX_BYTES as u64;
                let _ = mempool.insert(*tx, *hash, bytes, |k| ledger.account(k));
            }
        }
    }

    /// The mempool's copies of the txs `tx_hashes`, in order (`None` where it has none),
    /// under one lock: what a compact proposal's block is rebuilt from.
    pub fn txs_from_mempool(&self, tx_hashes: &[TxHash]) -> Vec<Option<Tx>> {
        let mempool = self.mempool.lock();
        tx_hashes.iter().map(|h| mempool.get(h).copied()).collect()
    }

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
            Source::Rpc => self.config.mempool.rpc_limit(),
            Source::Gossip => self.config.mempool.txs_max,
        };
        let held = self.mempool.lock().len();
        let free = limit.saturating_sub(held + self.claimed.load(Ordering::Relaxed));
        // Two claims may both see the same room; the mempool's own limit still holds.
        let granted = wanted.min(free);
        self.claimed.fetch_add(granted, Ordering::Relaxed);
        RoomClaim { claimed: &self.claimed, granted }
    }

    fn decode_checked(&self, bytes: &[u8]) -> Result<Tx, SubmitError> {
        let tx = Tx::decode(bytes)?;
        tx.check_stateless()?;
        Ok(tx)
    }

    /// Decodes, checks the signature and admits one tx to the mempool, then queues it for
    /// gossip.
    pub async fn submit_tx(&self, bytes: Vec<u8>) -> Result<TxHash, SubmitError> {
        self.refuse_while_syncing()?;
        let tx = self.decode_checked(&bytes)?;
        let room = self.claim_room(1, Source::Rpc);
        if room.granted == 0 {
            self.metrics.refused_full("rpc", 1);
            return Err(self.mempool_full());
        }
        let item = OwnedItem {
            key: tx.transfer.from,
            message: tx.signing_bytes(&self.chain_id),
            signature: tx.signature,
        };
        match self.sigverify.submit(vec![item]).wait().await.pop() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(SubmitError::ShuttingDown),
        }
        self.admit(tx, bytes.len() as u64)
    }

    /// Like `submit_tx`, but answers once the tx decodes; the checks run in the background
    /// (CometBFT's broadcast_tx_async). A refusal then is only logged.
    pub fn submit_tx_async(self: &Arc<Self>, bytes: Vec<u8>) -> Result<TxHash, SubmitError> {
        self.refuse_while_syncing()?;
        let tx = self.decode_checked(&bytes)?;
        let hash = tx.hash();
        let shared = self.clone();
        tokio::spawn(async move {
            if let Err(e) = shared.submit_tx(bytes).await {
                tracing::debug!(%hash, error = %e, "async tx refused");
            }
        });
        Ok(hash)
    }

    /// Submits many base64 txs: signatures batch-verified in parallel, then admitted in order.
    pub async fn submit_batch(
        self: &Arc<Self>,
        txs: Vec<String>,
    ) -> Vec<Result<TxHash, SubmitError>> {
        if let Err(e) = self.refuse_while_syncing() {
            return vec![Err(e)];
        }
        let shared = self.clone();
        let work = tokio::task::spawn_blocking(move || shared.submit_batch_blocking(txs));
        match work.await {
            Ok(results) => results,
            Err(e) => vec![Err(SubmitError::Decode(format!("batch task failed: {e}")))],
        }
    }

    fn submit_batch_blocking(&self, txs: Vec<String>) -> Vec<Result<TxHash, SubmitError>> {
        // Room is claimed first: the txs beyond it are refused, in submission order, before
        // they are even decoded (a client retrying a full node costs it little). A tx that
        // does not decode uses none of this batch's share (its claim is held until the
        // batch is admitted, like the rest).
        let room = self.claim_room(txs.len(), Source::Rpc);
        let mut left = room.granted;
        let mut full: Option<SubmitError> = None;
        let mut refused = 0;
        let decoded: Vec<Result<(Tx, u64), SubmitError>> = txs
            .iter()
            .map(|s| {
                if left == 0 {
                    refused += 1;
                    return Err(full.get_or_insert_with(|| self.mempool_full()).clone());
                }
                let bytes = self.decode_tx_param(Some(s))?;
                let tx = self.decode_checked(&bytes)?;
                left -= 1;
                Ok((tx, bytes.len() as u64))
            })
            .collect();
        if refused > 0 {
            self.metrics.refused_full("rpc", refused);
        }
        let (ok, items): (Vec<usize>, Vec<OwnedItem>) = decoded
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref().ok().map(|(tx, _)| {
                    let item = OwnedItem {
                        key: tx.transfer.from,
                        message: tx.signing_bytes(&self.chain_id),
                        signature: tx.signature,
                    };
                    (i, item)
                })
            })
            .unzip();
        let count = items.len();
        let verdicts = if count == 0 {
            Vec::new()
        } else {
            let started = Instant::now();
            let verdicts = self.sigverify.submit(items).wait_blocking();
            self.metrics.signature_batch("rpc", count, started.elapsed().as_secs_f64());
            verdicts
        };
        let mut sig_ok = vec![true; decoded.len()];
        let mut sig_err: HashMap<usize, VerifyError> = HashMap::new();
        for (pos, i) in ok.iter().enumerate() {
            match verdicts.get(pos) {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    sig_ok[*i] = false;
                    sig_err.insert(*i, *e);
                }
                None => sig_ok[*i] = false,
            }
        }
        decoded
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let (tx, len) = r?;
                if !sig_ok[i] {
                    return Err(sig_err
                        .get(&i)
                        .map_or(SubmitError::ShuttingDown, |e| SubmitError::Signature(*e)));
                }
                self.admit(tx, len)
            })
            .collect()
    }

    /// The refusal of a tx without room: the count includes the txs being verified.
    fn mempool_full(&self) -> SubmitError {
        let m = self.mempool.lock();
        let txs = m.len() + self.claimed.load(Ordering::Relaxed);
        SubmitError::Mempool(MempoolError::Full { txs, bytes: m.bytes() })
    }

    /// Admits txs whose signatures were verified (gossip from peers). Refusals are expected
    /// (the same tx arrives from several peers) and only counted by the caller.
    /// `hash` is the tx's hash.
    pub fn admit_verified(&self, tx: Tx, hash: TxHash) -> Result<(), MempoolError> {
        self.insert_into_mempool(tx, hash, tally_ledger::TX_BYTES as u64)
    }

    fn admit(&self, tx: Tx, len: u64) -> Result<TxHash, SubmitError> {
        let hash = tx.hash();
        self.insert_into_mempool(tx, hash, len)?;
        if self.gossip.try_send(tx).is_err() {
            self.gossip_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(hash)
    }

    /// Lock order: mempool, then ledger. The driver commits a block and updates the mempool
    /// under the mempool lock, so an admission never sees the new account nonce together
    /// with the old pending txs (which would demand a nonce too high).
    fn insert_into_mempool(&self, tx: Tx, hash: TxHash, len: u64) -> Result<(), MempoolError> {
        let mut mempool = self.mempool.lock();
        mempool.insert(tx, hash, len, |from| self.ledger.read().account(from))
    }

    // ----- commit notifications -----

    /// Registers interest in the commit of the tx in `bytes` (before submitting it, so that
    /// a fast commit is not missed).
    pub fn commit_waiter_for(&self, bytes: &[u8]) -> Result<CommitWaiter, SubmitError> {
        self.refuse_while_syncing()?;
        let tx = self.decode_checked(bytes)?;
        let max = self.config.rpc.tx_commit_waiters_max;
        if self.waiters_count.load(Ordering::Relaxed) as usize >= max {
            return Err(SubmitError::TooManyWaiters(max));
        }
        let (tx_send, rx) = oneshot::channel();
        self.waiters.lock().entry(tx.hash()).or_default().push(tx_send);
        self.waiters_count.fetch_add(1, Ordering::Relaxed);
        Ok(CommitWaiter { rx })
    }

    /// Called by the driver after each commit.
    pub fn notify_committed(&self, height: Height, hashes: &[TxHash]) {
        let mut waiters = self.waiters.lock();
        if waiters.is_empty() {
            return;
        }
        for (i, hash) in hashes.iter().enumerate() {
            if let Some(list) = waiters.remove(hash) {
                self.waiters_count.fetch_sub(list.len() as u64, Ordering::Relaxed);
                for w in list {
                    let _ = w.send((height, i as u32));
                }
            }
        }
        // Waiters whose caller gave up (timeout, disconnect) are pruned here.
        let before: usize = waiters.values().map(Vec::len).sum();
        waiters.retain(|_, list| {
            list.retain(|w| !w.is_closed());
            !list.is_empty()
        });
        let after: usize = waiters.values().map(Vec::len).sum();
        self.waiters_count.fetch_sub((before - after) as u64, Ordering::Relaxed);
    }

    /// Called by the driver after each commit: publishes the block to subscribers. Never
    /// waits (a broadcast channel drops the oldest event for a subscriber that lags).
    pub fn publish_block(&self, block: &Block, tx_hashes: &[TxHash]) {
        self.metrics.block_bytes.observe(block.encoded_len() as f64);
        if self.events.receiver_count() == 0 {
            return;
        }
        let event = BlockEvent {
            height: block.header.height,
            block: block.clone(),
            tx_hashes: tx_hashes.to_vec(),
        };
        let _ = self.events.send(Arc::new(event));
    }

    /// Called by the driver after each step: publishes the consensus state (for
    /// `consensus_state` and the status page) and times the steps.
    pub fn set_consensus(&self, summary: StateSummary) {
        let now = Instant::now();
        let key = (summary.height, summary.round, summary.step);
        {
            let mut clock = self.step_clock.lock();
            match *clock {
                Some((h, r, step, _)) if (h, r, step) == key => {}
                previous => {
                    if let Some((h, r, step, since)) = previous {
                        let labels = vec![("step", format!("{step:?}").to_ascii_lowercase())];
                        let seconds = now.duration_since(since).as_secs_f64();
                        self.metrics.step_seconds.get_or_create(&labels).observe(seconds);
                        if h == summary.height && summary.round > r {
                            self.metrics.round_changes.inc();
                        }
                    }
                    *clock = Some((key.0, key.1, key.2, now));
                }
            }
        }
        *self.consensus.write() = Some(summary);
    }

    // ----- queries -----

    pub fn tip_height(&self) -> Option<Height> {
        self.ledger.read().tip().map(|(h, _)| h)
    }

    pub fn store_block(&self, h: Height) -> anyhow::Result<Option<Block>> {
        Ok(self.ledger.read().store().block(h)?)
    }

    pub fn store_header(&self, h: Height) -> anyhow::Result<Option<tally_ledger::Header>> {
        Ok(self.ledger.read().store().header(h)?)
    }

    /// The height of the snapshot the store was restored from, if it was.
    pub fn store_base(&self) -> Option<Height> {
        self.ledger.read().store().base().ok().flatten()
    }

    /// A committed block by hash. Like every query, it answers up to the tip: a block the
    /// store already holds while the state has not moved to it yet is not found.
    pub fn store_block_by_hash(&self, hash: Hash) -> anyhow::Result<Option<Block>> {
        let ledger = self.ledger.read();
        let block = ledger.store().block_by_hash(&BlockHash(hash))?;
        Ok(block.filter(|b| ledger.tip().is_some_and(|(tip, _)| b.header.height <= tip)))
    }

    pub fn store_certificate(&self, h: Height) -> anyhow::Result<Option<CommitCertificate>> {
        Ok(self.ledger.read().store().certificate(h)?)
    }

    pub fn store_tx(&self, hash: TxHash, prove: bool) -> anyhow::Result<Option<FoundTx>> {
        let ledger = self.ledger.read();
        let Some((height, index, tx)) = ledger.tx(&hash)? else { return Ok(None) };
        // The tx index holds a block's txs as soon as its write lands, a moment before the
        // state (and `status`) move to it: until then the tx is not reported.
        if ledger.tip().is_none_or(|(tip, _)| height > tip) {
            return Ok(None);
        }
        let proof = if prove {
            let block = ledger
                .store()
                .block(height)?
                .ok_or_else(|| anyhow::anyhow!("tx index points at missing block {height}"))?;
            let hashes: Vec<TxHash> = block.txs.iter().map(Tx::hash).collect();
            let proof = tally_ledger::tx_proof(&hashes, index)
                .ok_or_else(|| anyhow::anyhow!("tx index {index} outside block {height}"))?;
            Some(json!({
                "root_hash": block.header.tx_root.to_hex(),
                "data": base64::engine::general_purpose::STANDARD.encode(tx.encode()),
                "proof": {
                    "total": proof.total.to_string(),
                    "index": proof.index.to_string(),
                    "leaf_hash": tally_ledger::tx_merkle::tx_leaf_hash(&hash).to_hex(),
                    "aunts": proof.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                    // borsh(TxProof), for `tally verify` and other light clients.
                    "raw": crate::rpc_types::b64(&borsh::to_vec(&proof)?),
                },
            }))
        } else {
            None
        };
        Ok(Some(FoundTx { height, index, tx, proof }))
    }

    /// The committed account at the tip; with `prove`, its proof of presence or absence
    /// under the tip header's state root (read under one ledger lock, so the proof, the
    /// account and `height` belong together).
    pub fn account_json(&self, key: &PublicKey, prove: bool) -> anyhow::Result<Value> {
        let (account, height, next_nonce, proof) = {
            let mempool = self.mempool.lock();
            let ledger = self.ledger.read();
            let account = ledger.account(key);
            let proof = if prove {
                let (_, proof) = ledger.account_with_proof(key);
                Some((ledger.state().get(key).is_some(), ledger.state().root(), proof))
            } else {
                None
            };
            let height = ledger.tip().map_or(0, |(h, _)| h.0);
            (account, height, mempool.next_nonce(key, &account), proof)
        };
        let mut out = json!({
            "address": key.to_hex(),
            "balance": account.balance.to_string(),
            "nonce": account.nonce.to_string(),
            "next_nonce": next_nonce.to_string(),
            "height": height.to_string(),
        });
        if let Some((present, root, proof)) = proof {
            out["proof"] = json!({
                "present": present,
                "state_root": root.to_hex(),
                // borsh(AccountProof), for `tally verify` and other light clients.
                "raw": crate::rpc_types::b64(&borsh::to_vec(&proof)?),
            });
        }
        Ok(out)
    }

    pub fn mempool_size(&self) -> (usize, u64) {
        let m = self.mempool.lock();
        (m.len(), m.bytes())
    }

    pub fn status_json(&self) -> Value {
        let ledger = self.ledger.read();
        let tip = ledger.tip();
        let header = tip.and_then(|(h, _)| ledger.store().header(h).ok().flatten());
        let earliest = match ledger.store().base().ok().flatten() {
            Some(base) => base.next().0,
            None => u64::from(tip.is_some()),
        };
        drop(ledger);
        let validator_info = match self.info.validator_key {
            Some(key) => {
                let power =
                    self.validators.index_of(&key).map_or(0, |i| self.validators.power_of(i).0);
                json!({ "address": key.to_hex(), "pub_key": { "type": "tally/PubKeyEd25519",
                    "value": crate::rpc_types::b64(&key.0) }, "voting_power": power.to_string() })
            }
            None => json!({ "address": "", "voting_power": "0" }),
        };
        json!({
            "node_info": {
                "id": self.info.peer_id,
                "listen_addr": self.info.listen_addr,
                "network": self.chain_id.as_str(),
                "version": env!("CARGO_PKG_VERSION"),
                "moniker": self.info.moniker,
            },
            "sync_info": {
                "latest_block_hash": tip.map(|(_, h)| h.0.to_hex()).unwrap_or_default(),
                "latest_app_hash": header.as_ref().map(|h| h.state_root.to_hex()).unwrap_or_default(),
                "latest_block_height": tip.map_or(0, |(h, _)| h.0).to_string(),
                "latest_block_time": header.as_ref().map(|h| crate::rpc_types::rfc3339_ms(h.time_ms)).unwrap_or_default(),
                "earliest_block_height": earliest.to_string(),
                "catching_up": self.catching_up.load(Ordering::Relaxed),
            },
            "validator_info": validator_info,
        })
    }

    pub async fn net_info_json(&self) -> Value {
        let peers = self.network.peers().await.unwrap_or_default();
        json!({
            "listening": true,
            "listeners": [self.info.listen_addr],
            "n_peers": peers.len().to_string(),
            "peers": peers.iter().map(|p| json!({ "node_info": { "id": p.peer_id.to_string() } })).collect::<Vec<_>>(),
        })
    }

    pub fn consensus_state_json(&self) -> Value {
        match &*self.consensus.read() {
            Some(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            None => Value::Null,
        }
    }
}
