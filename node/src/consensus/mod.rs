//! The consensus room: the driver, the one task that owns the consensus core, with the
//! signing record, the consensus log (WAL) and state sync. It feeds the core inputs
//! (verified network messages, timeouts, block verdicts), carries out its outputs in order
//! (persist, then broadcast; schedule timeouts; build and validate blocks; commit
//! decisions), and block-syncs when peers are ahead. It is the only writer of the chain's
//! tip.
//!
//! Byzantine input never stops it: a message that does not verify is dropped, counted and
//! reported to gossipsub as rejected. A failed write to the ledger or the signing record
//! does stop it (the node must not run on with an unknown state).

mod blocks;
mod commit;
mod compact;
mod messages;
mod replay;
pub mod signing_record;
mod snapshots;
pub mod state_sync;
mod sync;
mod timers;
pub mod wal;

use crate::chain::Chain;
use crate::config::{ConsensusConfig, SnapshotsConfig};
use crate::exec::{Clock, Exec};
use crate::metrics::Metrics;
use crate::notify::Notify;
use anyhow::{bail, Context as _};
use blocks::{PendingBlocks, Window};
use signing_record::{Persisted, SigningRecord};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tally_consensus::{
    BlockHash, CommitCertificate, Core, Height, Input, Output, Round, SignedMessage, VoteType,
};
use tally_crypto::PublicKey;
use tally_ledger::{Tx, TxHash};
use tally_network::{CompactBlock, ConsensusMsg, NetworkEvents, NetworkHandle, PeerId};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use wal::{Appended, Recovered, Wal, WalEntryRef};

/// What the driver is configured with.
#[derive(Clone)]
pub struct DriverConfig {
    pub consensus: ConsensusConfig,
    pub snapshots: SnapshotsConfig,
    /// This validator's public key, for the blocks it proposes (`None` for a full node).
    pub proposer: Option<PublicKey>,
    /// Where block writes and store reads for peers run.
    pub exec: Exec,
    /// Block times (a proposer's block, the drift check on others').
    pub clock: Clock,
    /// A deliberate bug (the simulator's tests that its oracle catches node bugs).
    #[cfg(feature = "sim")]
    pub bug: Option<NodeBug>,
}

/// Deliberate bugs in the node's own code, switched on only by the simulator's tests that
/// show its oracle catches them (`sim` feature).
#[cfg(feature = "sim")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeBug {
    /// Carry out a step's broadcasts before its persists (the signing record is written
    /// after the message left).
    SendBeforePersist,
    /// Wake `broadcast_tx_commit` waiters when a block is decided, before its write is
    /// durable and the tip moves to it.
    AckBeforeDurable,
    /// Apply blocks from block sync without checking their commit certificates.
    SkipSyncCertificate,
}

/// Block-sync results in flight at most: one request at a time, and its answer.
const SYNC_RESULTS_MAX: usize = 4;
/// Answers to proposal tx fetches queued at most (a fetch per compact proposal whose txs
/// the mempool lacks; the driver reads them as they come).
const FILL_RESULTS_MAX: usize = 16;

/// Next-height messages kept for the next height's consensus log: a proposal and the votes
/// of a few rounds from each of up to a hundred validators; and at most this many bytes of
/// blocks, so that a proposer signing many next-height proposals cannot fill memory.
const NEXT_HEIGHT_LOGGED_MAX: usize = 1024;
const NEXT_HEIGHT_LOGGED_BYTES_MAX: usize = 16 << 20;

/// Counters of what the driver dropped, for logs and metrics.
#[derive(Default, Debug, Clone, Copy)]
pub struct DriverStats {
    pub bad_signatures: u64,
    pub bad_blocks: u64,
    pub stale_messages: u64,
    pub evidence: u64,
    pub synced_blocks: u64,
}

pub struct Driver {
    chain: Arc<Chain>,
    notify: Arc<Notify>,
    metrics: Arc<Metrics>,
    config: DriverConfig,
    core: Core,
    record: Option<SigningRecord>,
    /// The consensus log of the height in progress (validators only); dropped, with an
    /// error in the log, if a write to it fails (it saves time, not safety).
    wal: Option<Wal>,
    /// What the log held at startup, replayed once when the driver starts.
    recovered: Option<Recovered>,
    /// Verified messages of the next height, received before it started (the core buffers
    /// them): logged once the height's log starts. At most `NEXT_HEIGHT_LOGGED_MAX`
    /// messages and `NEXT_HEIGHT_LOGGED_BYTES_MAX` bytes of blocks (`next_height_bytes`).
    next_height_messages: Vec<ConsensusMsg>,
    next_height_bytes: usize,
    net: NetworkHandle,
    timers: timers::Timers,
    blocks: PendingBlocks,
    /// Blocks of compact proposals whose txs are being fetched, and the fetches' answers.
    fillings: compact::Fillings,
    fill_tx: mpsc::Sender<compact::FillResult>,
    fill_rx: mpsc::Receiver<compact::FillResult>,
    /// A decision whose block has not arrived yet (after a restart, the core may decide a
    /// value it knew from its signing record): committed when the block arrives, or by
    /// block sync from peers that committed it.
    pending_decision: Option<CommitCertificate>,
    /// When the next height starts (after timeout_commit, and once `writing` is done).
    next_height_at: Option<(Instant, Height)>,
    /// The decided block being written, if any (see `commit.rs`).
    writing: Option<commit::Writing>,
    sync_tx: mpsc::Sender<sync::SyncResult>,
    sync_rx: mpsc::Receiver<sync::SyncResult>,
    sync_in_flight: bool,
    /// Places for block requests of peers served at once (`sync::SYNC_SERVES_MAX`).
    sync_serves: Arc<Semaphore>,
    /// Height the core was at when the last rebroadcast ran.
    rebroadcast_height: Height,
    last_commit: Option<Instant>,
    /// Peers asked for blocks since the last block applied that served a bad one, failed,
    /// or had nothing: not asked again until every connected peer is in here (then the
    /// next tick starts over), or a block is applied.
    sync_failed: HashSet<PeerId>,
    /// The highest height of a verified message seen: above the core's height, this node
    /// is behind, and block sync is retried on every tick until it catches up.
    seen_height: Height,
    /// Where snapshots are written and served from; `None` when snapshots are off.
    snapshots: Option<snapshots::Snapshots>,
    /// Validators caught equivocating, by height (heights not yet committed; for the
    /// byzantine-validator gauges set at each commit). At most `EQUIVOCATION_HEIGHTS_MAX`
    /// heights.
    equivocators: std::collections::BTreeMap<Height, HashSet<tally_consensus::ValidatorIndex>>,
    /// Hashes of the evidence counted, so that copies from several peers count once (at
    /// most `SEEN_EVIDENCE_MAX`; then it starts over).
    seen_evidence: HashSet<tally_crypto::Hash>,
    pub stats: DriverStats,
}

/// Evidence hashes remembered for deduplication.
const SEEN_EVIDENCE_MAX: usize = 4096;

/// Heights whose equivocators are kept for the gauges (evidence of far heights is dropped).
const EQUIVOCATION_HEIGHTS_MAX: usize = 16;

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chain: Arc<Chain>,
        notify: Arc<Notify>,
        metrics: Arc<Metrics>,
        config: DriverConfig,
        core: Core,
        record: Option<SigningRecord>,
        wal: Option<(Wal, Recovered)>,
        net: NetworkHandle,
        snapshot_dir: Option<tally_ledger::SnapshotDir>,
    ) -> Driver {
        let (wal, recovered) = wal.unzip();
        let (sync_tx, sync_rx) = mpsc::channel(SYNC_RESULTS_MAX);
        let (fill_tx, fill_rx) = mpsc::channel(FILL_RESULTS_MAX);
        Driver {
            chain,
            notify,
            metrics,
            config,
            core,
            record,
            wal,
            recovered,
            next_height_messages: Vec::new(),
            next_height_bytes: 0,
            net,
            timers: timers::Timers::default(),
            blocks: PendingBlocks::default(),
            fillings: compact::Fillings::default(),
            fill_tx,
            fill_rx,
            pending_decision: None,
            next_height_at: None,
            writing: None,
            sync_tx,
            sync_rx,
            sync_in_flight: false,
            sync_serves: Arc::new(Semaphore::new(sync::SYNC_SERVES_MAX)),
            rebroadcast_height: Height(0),
            last_commit: None,
            sync_failed: HashSet::new(),
            seen_height: Height(0),
            snapshots: snapshot_dir.map(snapshots::Snapshots::new),
            equivocators: Default::default(),
            seen_evidence: HashSet::new(),
            stats: DriverStats::default(),
        }
    }

    /// Runs until shutdown, the network stops, or a fatal error (a failed ledger or record
    /// write).
    pub async fn run(
        mut self,
        mut events: NetworkEvents,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let start = self.chain.tip_height().map_or(Height(1), Height::next);
        self.resume_height(start).await?;
        let interval = Duration::from_millis(self.config.consensus.rebroadcast_interval_ms);
        let mut rebroadcast = tokio::time::interval(interval);
        rebroadcast.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sync_bytes_max = self.chain.genesis().params.block_bytes_max as usize * 4;
        loop {
            let next_height = self.next_height_at;
            let next_timeout = self.timers.next_deadline();
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    // What was decided is on disk before the node stops.
                    self.settle().await?;
                    return Ok(());
                }
                _ = sleep_until(next_timeout), if next_timeout.is_some() => {
                    for t in self.timers.take_due(Instant::now()) {
                        if t.height == self.core.height() {
                            self.log_entry(WalEntryRef::Timeout(t), false);
                        }
                        self.step(Input::TimeoutElapsed(t)).await?
                    }
                }
                written = commit::written(&mut self.writing) => self.on_written(written)?,
                _ = sleep_until(next_height.map(|n| n.0)),
                    if next_height.is_some() && self.writing.is_none() => {
                    self.next_height_at = None;
                    if let Some((_, h)) = next_height {
                        if h > self.core.height() {
                            self.start_height(h).await?;
                        }
                    }
                }
                event = events.consensus.recv() => match event {
                    Some(event) => self.on_consensus_event(event).await?,
                    None => bail!("the network stopped"),
                },
                Some(result) = self.sync_rx.recv() => self.on_sync_result(result).await?,
                Some(result) = self.fill_rx.recv() => self.on_fill_result(result).await?,
                Some(request) = events.sync_requests.recv() => match request.request {
                    tally_network::SyncRequest::Blocks { .. } => {
                        let reader = self.chain.reader();
                        let exec = self.config.exec;
                        sync::serve_sync(reader, &self.sync_serves, request, sync_bytes_max, exec);
                    }
                    tally_network::SyncRequest::BlockTxs { .. } => self.serve_block_txs(request),
                    _ => snapshots::serve_snapshot_request(
                        self.snapshots.as_ref().map(|s| s.dir.clone()),
                        request,
                    ),
                },
                _ = rebroadcast.tick() => {
                    self.rebroadcast().await;
                    self.sync_if_behind().await;
                }
            }
        }
    }

    fn window(&self) -> Window {
        Window {
            height: self.core.height(),
            round: self.core.round(),
            rounds_ahead_max: self.core.config().rounds_ahead_max,
        }
    }

    /// Starts `height`: its consensus log first (so that what the start produces, such as
    /// this validator's block, goes into the log of its height), then the core.
    async fn start_height(&mut self, height: Height) -> anyhow::Result<()> {
        // Nothing is signed at a height while the block before it could still be lost.
        self.settle().await?;
        assert!(self.writing.is_none(), "height {height} starts while a block is being written");
        assert!(
            self.chain.tip_height().map_or(0, |h| h.0) + 1 >= height.0,
            "height {height} starts above the tip's next height"
        );
        if let Some(wal) = self.wal.as_mut() {
            if let Err(e) = wal.start_height(height) {
                self.wal_failed(e);
            }
        }
        let early = std::mem::take(&mut self.next_height_messages);
        self.next_height_bytes = 0;
        self.timers.cancel_below(height);
        self.step(Input::StartHeight(height)).await?;
        // Messages of this height that arrived before it started (the core kept them and
        // has just replayed them) go into its log too.
        for msg in early.iter().filter(|m| messages::height_of(m) == height) {
            self.log_entry(WalEntryRef::Received(msg), false);
        }
        Ok(())
    }

    /// Appends to the consensus log; a failure drops the log (see `wal`).
    fn log_entry(&mut self, entry: WalEntryRef<'_>, sync: bool) {
        let Some(wal) = self.wal.as_mut() else { return };
        if wal.height() != Some(self.core.height()) {
            return;
        }
        match wal.append(entry, sync) {
            Ok(Appended::Full { first: true }) => tracing::warn!(
                height = %self.core.height(),
                max_bytes = wal::WAL_BYTES_MAX,
                "the consensus log of this height is full; later messages are not logged"
            ),
            Ok(_) => {}
            Err(e) => self.wal_failed(e),
        }
    }

    fn wal_failed(&mut self, error: wal::WalError) {
        tracing::error!(error = %format!("{error:#}"), "the consensus log failed; running without it until a restart (a restart then waits out its round)");
        self.metrics.wal_failures.inc();
        self.wal = None;
    }

    /// Feeds one input and carries out every output, including the inputs they produce.
    async fn step(&mut self, input: Input) -> anyhow::Result<()> {
        let mut queue = VecDeque::from([input]);
        let mut outputs = Vec::new();
        while let Some(input) = queue.pop_front() {
            self.core.step(input, &mut outputs);
            #[cfg(feature = "sim")]
            if self.config.bug == Some(NodeBug::SendBeforePersist) {
                outputs.sort_by_key(|o| matches!(o, Output::Persist(_)));
            }
            for output in outputs.drain(..) {
                self.execute(output, &mut queue).await?;
            }
        }
        self.notify.set_consensus(self.core.state_summary());
        Ok(())
    }

    async fn execute(&mut self, output: Output, queue: &mut VecDeque<Input>) -> anyhow::Result<()> {
        match output {
            Output::Persist(message) => self.persist(message)?,
            Output::Broadcast(message) => self.broadcast(message).await,
            Output::ScheduleTimeout { timeout, duration_ms } => {
                self.timers.schedule(timeout, Duration::from_millis(duration_ms));
            }
            Output::GetValue { height, round } => {
                let block_hash = self.propose_block(height, round)?;
                queue.push_back(Input::ProposeValue { height, round, block_hash });
            }
            Output::ValidateValue { height, round, block_hash } => {
                match self.judge(height, &block_hash) {
                    Some(valid) => {
                        queue.push_back(Input::ValueValidity { height, round, block_hash, valid })
                    }
                    None => self.blocks.await_block(height, round, block_hash),
                }
            }
            Output::Decide { certificate } => self.commit_decided(certificate)?,
            Output::Evidence(evidence) => self.on_evidence(evidence, true).await,
        }
        Ok(())
    }

    /// Verified evidence of an equivocation, found by the core (`detected`) or received
    /// from a peer: counted once, logged, kept for the byzantine-validator gauges, and what
    /// the core found is gossiped so every node learns of it.
    async fn on_evidence(&mut self, evidence: tally_consensus::Evidence, detected: bool) {
        let key = tally_crypto::Hash::digest(&borsh::to_vec(&evidence).unwrap_or_default());
        if !self.seen_evidence.insert(key) {
            return;
        }
        if self.seen_evidence.len() > SEEN_EVIDENCE_MAX {
            self.seen_evidence.clear();
            self.seen_evidence.insert(key);
        }
        self.stats.evidence += 1;
        self.metrics.evidence.inc();
        if evidence.height() >= self.core.height() {
            let at = self.equivocators.entry(evidence.height()).or_default();
            at.insert(evidence.offender());
            while self.equivocators.len() > EQUIVOCATION_HEIGHTS_MAX {
                self.equivocators.pop_last();
            }
        }
        tracing::warn!(?evidence, detected, "equivocation");
        if detected {
            if let Err(e) = self.net.broadcast_consensus(ConsensusMsg::Evidence(evidence)).await {
                tracing::warn!(error = %e, "gossiping evidence failed");
            }
        }
    }

    fn persist(&mut self, message: SignedMessage) -> anyhow::Result<()> {
        let Some(record) = self.record.as_mut() else {
            bail!("the core signed a message but this node has no signing record");
        };
        // A precommit for a value is a lock: its block is recorded with it (see
        // `signing_record`). The core precommits only a value it judged, so the block is here.
        let locked_block = match &message {
            SignedMessage::Vote(v) if v.vote.vote_type == VoteType::Precommit => {
                let block =
                    v.vote.block_hash.and_then(|hash| self.blocks.get(v.vote.height, &hash));
                if block.is_none() && v.vote.block_hash.is_some() {
                    tracing::warn!(height = %v.vote.height, round = %v.vote.round, "precommitting a value whose block this node does not hold; a restart would lose it");
                }
                block
            }
            _ => None,
        };
        match record
            .persist(&message, locked_block.as_deref())
            .context("writing the signing record")?
        {
            Persisted::New => {
                self.metrics.signed_messages.inc();
                if let SignedMessage::Vote(vote) = &message {
                    self.notify.publish_vote(vote);
                }
                Ok(())
            }
            Persisted::Again => Ok(()),
            // The core is loaded from the record at startup (restore_signed), so it never
            // signs over it; if it ever did, stopping is the only safe answer.
            Persisted::Conflict(recorded) => bail!(
                "the core signed a message that conflicts with the signing record at height \
                 {} round {}: refusing to continue (recorded: {recorded:?})",
                message.height(),
                message.round()
            ),
        }
    }

    async fn broadcast(&mut self, message: SignedMessage) {
        let msg = match message {
            SignedMessage::Proposal(proposal) => {
                let p = &proposal.proposal;
                let Some(block) = self.blocks.get(p.height, &p.block_hash) else {
                    // After a restart the block of a recorded proposal may be gone; its
                    // round then times out and the next proposer builds a block.
                    tracing::warn!(height = %p.height, round = %p.round, "not re-sending a proposal whose block this node no longer has");
                    return;
                };
                let compact = match self.blocks.tx_hashes(&p.block_hash) {
                    Some(hashes) => CompactBlock::new(&block, hashes.to_vec()),
                    None => CompactBlock::of(&block),
                };
                ConsensusMsg::CompactProposal { proposal, block: compact }
            }
            SignedMessage::Vote(vote) => ConsensusMsg::Vote(vote),
        };
        if let Err(e) = self.net.broadcast_consensus(msg).await {
            tracing::warn!(error = %e, "broadcast failed");
        }
    }

    /// Re-sends this validator's messages of the current height when the height has not
    /// advanced since the last tick, so peers that missed them (restart, lost gossip) get
    /// them (tendermint.md: the gossip assumption does not hold by itself): every vote of
    /// the height, because a polka of an earlier round may be what peers need to unlock or
    /// to accept a re-proposal (the simulator found a stall when only the current round was
    /// re-sent), and the proposal of the current round only, since it carries a block.
    async fn rebroadcast(&mut self) {
        let height = self.core.height();
        if height != self.rebroadcast_height {
            self.rebroadcast_height = height;
            return;
        }
        let round = self.core.round();
        for message in self.core.own_messages() {
            let is_vote = matches!(message, SignedMessage::Vote(_));
            if is_vote || message.round() == round {
                self.broadcast(message).await;
            }
        }
        // And the polka behind its valid value, other validators' prevotes included: a
        // Byzantine prevote some received and others did not may be what they need to
        // accept that value proposed again (the simulator's seed 34894).
        let me = self.core.me();
        for vote in self.core.polka_votes() {
            if Some(vote.vote.validator) != me {
                self.broadcast(SignedMessage::Vote(vote)).await;
            }
        }
    }

    // ----- blocks -----

    fn propose_block(&mut self, height: Height, round: Round) -> anyhow::Result<BlockHash> {
        let proposer = self.config.proposer.context("proposing without a key")?;
        let proposed = self
            .chain
            .build_block(height, (self.config.clock)(), proposer)
            .map_err(|e| anyhow::anyhow!(e))?;
        if proposed.skipped > 0 {
            tracing::debug!(
                skipped = proposed.skipped,
                "left invalid mempool txs out of the block"
            );
        }
        let built = proposed.built;
        // In the log (fsynced) before the proposal is signed, so that a restart can re-send
        // the recorded proposal with its block.
        self.log_entry(WalEntryRef::OwnBlock { round, block: &built.block }, true);
        let hash = self.blocks.insert_own(built.block, round, built.outcome);
        tracing::debug!(%height, %round, %hash, "proposing");
        Ok(hash)
    }

    /// valid(v) for a block of the current height: `None` if the block is not here yet.
    /// Besides the ledger's deterministic checks, a proposal whose time is further ahead of
    /// this node's clock than `block_time_drift_max_ms` is invalid (a proposer must not push
    /// the chain's time out of reach of honest clocks).
    fn judge(&mut self, height: Height, hash: &BlockHash) -> Option<bool> {
        if let Some(valid) = self.blocks.verdict(hash) {
            return Some(valid);
        }
        let block = self.blocks.get(height, hash)?;
        let drift_max = self.config.consensus.block_time_drift_max_ms;
        let now_ms = (self.config.clock)();
        let verdict = if block.header.time_ms > now_ms.saturating_add(drift_max) {
            Err(format!(
                "block time {} ms is more than {drift_max} ms ahead of this node's clock",
                block.header.time_ms
            ))
        } else {
            let tx_hashes: Vec<TxHash> = match self.blocks.take_received_tx_hashes(hash) {
                Some(hashes) => hashes,
                None => block.txs.iter().map(Tx::hash).collect(),
            };
            // A valid block's txs fetched for it join the mempool (chain room).
            self.chain.judge_block(&block, tx_hashes).map_err(|e| e.to_string())
        };
        match verdict {
            Ok(judged) => {
                self.blocks.set_verdict(*hash, Some(judged.outcome));
                Some(true)
            }
            Err(e) => {
                self.stats.bad_blocks += 1;
                self.metrics.bad_blocks.inc();
                tracing::warn!(%height, %hash, error = %e, "invalid block proposed");
                self.blocks.set_verdict(*hash, None);
                Some(false)
            }
        }
    }

    /// A block arrived: answer the core's questions about it, and commit a decision that
    /// was waiting for it.
    async fn block_arrived(&mut self, hash: BlockHash) -> anyhow::Result<()> {
        for (height, round, block_hash) in self.blocks.take_awaiting(&hash) {
            if let Some(valid) = self.judge(height, &block_hash) {
                self.step(Input::ValueValidity { height, round, block_hash, valid }).await?;
            }
        }
        if self.pending_decision.as_ref().is_some_and(|c| c.block_hash == hash) {
            if let Some(certificate) = self.pending_decision.take() {
                self.commit_decided(certificate)?;
            }
        }
        Ok(())
    }
}

/// Sleeps until `at` (tokio time, which the simulator pauses); forever for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
