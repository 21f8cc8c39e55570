//! The consensus driver: the one task that owns the consensus core. It feeds the core inputs
//! (verified network messages, timeouts, block verdicts), carries out its outputs in order
//! (persist, then broadcast; schedule timeouts; build and validate blocks; commit
//! decisions), and block-syncs when peers are ahead.
//!
//! Byzantine input never stops it: a message that does not verify is dropped, counted and
//! reported to gossipsub as rejected. A failed write to the ledger or the signing record
//! does stop it (the node must not run on with an unknown state).

use crate::shared::Shared;
use crate::signing_record::{Persisted, SigningRecord};
use anyhow::{bail, Context as _};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_consensus::{
    BlockHash, CommitCertificate, Core, Height, Input, Output, SignedMessage, Timeout,
};
use tally_ledger::{Block, ExecutionOutcome, Tx, TxHash};
use tally_network::{
    ConsensusEvent, ConsensusMsg, GossipRef, InboundSyncRequest, NetworkEvents, NetworkHandle,
    PeerId, SyncRequest, SyncResponse,
};
use tokio::sync::mpsc;

/// Blocks kept per height while it is undecided (proposals of several rounds, Byzantine
/// proposers); beyond this new ones are dropped.
const BLOCKS_PER_HEIGHT_MAX: usize = 64;
/// Heights ahead of the current one whose proposed blocks are kept.
const BLOCK_HEIGHTS_AHEAD_MAX: u64 = 2;

/// Counters of what the driver dropped, for logs and metrics.
#[derive(Default, Debug, Clone, Copy)]
pub struct DriverStats {
    pub bad_signatures: u64,
    pub bad_blocks: u64,
    pub stale_messages: u64,
    pub evidence: u64,
    pub synced_blocks: u64,
}

type SyncResult = (PeerId, anyhow::Result<Vec<(Block, CommitCertificate)>>);

pub struct Driver {
    shared: Arc<Shared>,
    core: Core,
    record: Option<SigningRecord>,
    net: NetworkHandle,
    timeout_tx: mpsc::Sender<Timeout>,
    timeout_rx: mpsc::Receiver<Timeout>,
    /// Proposed blocks by height and hash, for the current height and a few ahead.
    blocks: BTreeMap<Height, HashMap<BlockHash, Arc<Block>>>,
    /// Verdicts on blocks of the current height; valid ones with their execution.
    verdicts: HashMap<BlockHash, Option<ExecutionOutcome>>,
    /// ValidateValue requests waiting for their block to arrive.
    awaiting_blocks: Vec<(Height, tally_consensus::Round, BlockHash)>,
    /// When the next height starts (after timeout_commit).
    next_height_at: Option<(Instant, Height)>,
    sync_tx: mpsc::Sender<SyncResult>,
    sync_rx: mpsc::Receiver<SyncResult>,
    sync_in_flight: bool,
    /// Height the core was at when the last rebroadcast ran.
    rebroadcast_height: Height,
    last_commit: Option<Instant>,
    pub stats: DriverStats,
}

impl Driver {
    pub fn new(
        shared: Arc<Shared>,
        core: Core,
        record: Option<SigningRecord>,
        net: NetworkHandle,
    ) -> Driver {
        let (timeout_tx, timeout_rx) = mpsc::channel(1024);
        let (sync_tx, sync_rx) = mpsc::channel(4);
        Driver {
            shared,
            core,
            record,
            net,
            timeout_tx,
            timeout_rx,
            blocks: BTreeMap::new(),
            verdicts: HashMap::new(),
            awaiting_blocks: Vec::new(),
            next_height_at: None,
            sync_tx,
            sync_rx,
            sync_in_flight: false,
            rebroadcast_height: Height(0),
            last_commit: None,
            stats: DriverStats::default(),
        }
    }

    /// Runs until the network stops or a fatal error (a failed ledger or record write).
    pub async fn run(
        mut self,
        mut events: NetworkEvents,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let start = self.shared.tip_height().map_or(Height(1), Height::next);
        self.step(Input::StartHeight(start)).await?;
        let interval = Duration::from_millis(self.shared.config.consensus.rebroadcast_interval_ms);
        let mut rebroadcast = tokio::time::interval(interval);
        rebroadcast.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_height = self.next_height_at;
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                Some(t) = self.timeout_rx.recv() => self.step(Input::TimeoutElapsed(t)).await?,
                _ = sleep_until(next_height.map(|n| n.0)), if next_height.is_some() => {
                    self.next_height_at = None;
                    if let Some((_, h)) = next_height {
                        if h > self.core.height() {
                            self.step(Input::StartHeight(h)).await?;
                        }
                    }
                }
                event = events.consensus.recv() => match event {
                    Some(event) => self.on_consensus_event(event).await?,
                    None => bail!("the network stopped"),
                },
                Some(result) = self.sync_rx.recv() => self.on_sync_result(result).await?,
                Some(request) = events.sync_requests.recv() => self.serve_sync(request),
                _ = rebroadcast.tick() => self.rebroadcast().await,
            }
        }
    }

    /// Feeds one input and carries out every output, including the inputs they produce.
    async fn step(&mut self, input: Input) -> anyhow::Result<()> {
        let mut queue = VecDeque::from([input]);
        let mut outputs = Vec::new();
        while let Some(input) = queue.pop_front() {
            self.core.step(input, &mut outputs);
            for output in outputs.drain(..) {
                self.execute(output, &mut queue).await?;
            }
        }
        *self.shared.consensus.write() = Some(self.core.state_summary());
        Ok(())
    }

    async fn execute(&mut self, output: Output, queue: &mut VecDeque<Input>) -> anyhow::Result<()> {
        match output {
            Output::Persist(message) => self.persist(message)?,
            Output::Broadcast(message) => self.broadcast(message).await,
            Output::ScheduleTimeout { timeout, duration_ms } => {
                let tx = self.timeout_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(duration_ms)).await;
                    let _ = tx.send(timeout).await;
                });
            }
            Output::GetValue { height, round } => {
                let block_hash = self.propose_block(height)?;
                queue.push_back(Input::ProposeValue { height, round, block_hash });
            }
            Output::ValidateValue { height, round, block_hash } => {
                match self.judge(height, &block_hash) {
                    Some(valid) => {
                        queue.push_back(Input::ValueValidity { height, round, block_hash, valid })
                    }
                    None => self.awaiting_blocks.push((height, round, block_hash)),
                }
            }
            Output::Decide { certificate } => self.commit_decided(certificate).await?,
            Output::Evidence(evidence) => {
                self.stats.evidence += 1;
                self.shared.metrics.evidence.inc();
                tracing::warn!(?evidence, "equivocation detected");
            }
        }
        Ok(())
    }

    fn persist(&mut self, message: SignedMessage) -> anyhow::Result<()> {
        let Some(record) = self.record.as_mut() else {
            bail!("the core signed a message but this node has no signing record");
        };
        match record.persist(&message).context("writing the signing record")? {
            Persisted::New | Persisted::Again => Ok(()),
            // restore_signed makes the core aware of the record, so this should not happen;
            // if it does, the broadcast that follows is of the recorded message.
            Persisted::Conflict(recorded) => {
                bail!(
                    "the core signed a message that conflicts with the signing record at \
                     height {} round {}: refusing to continue (recorded: {recorded:?})",
                    message.height(),
                    message.round()
                )
            }
        }
    }

    async fn broadcast(&mut self, message: SignedMessage) {
        let msg = match message {
            SignedMessage::Proposal(proposal) => {
                let height = proposal.proposal.height;
                let Some(block) = self
                    .blocks
                    .get(&height)
                    .and_then(|b| b.get(&proposal.proposal.block_hash))
                    .cloned()
                else {
                    tracing::error!(%height, "proposal for a block this node does not have");
                    return;
                };
                ConsensusMsg::Proposal { proposal, block: (*block).clone() }
            }
            SignedMessage::Vote(vote) => ConsensusMsg::Vote(vote),
        };
        if let Err(e) = self.net.broadcast_consensus(msg).await {
            tracing::warn!(error = %e, "broadcast failed");
        }
    }

    /// Re-sends this validator's messages of the current height when the height has not
    /// advanced since the last tick: peers that missed them (restart, lost gossip) get them.
    async fn rebroadcast(&mut self) {
        let height = self.core.height();
        if height != self.rebroadcast_height {
            self.rebroadcast_height = height;
            return;
        }
        for message in self.core.own_messages() {
            self.broadcast(message).await;
        }
    }

    // ----- blocks -----

    fn propose_block(&mut self, height: Height) -> anyhow::Result<BlockHash> {
        let params = &self.shared.genesis.params;
        let candidates: Vec<Tx> =
            self.shared.mempool.lock().reap(params.block_txs_max as usize, params.block_bytes_max);
        let proposer = self.shared.info.validator_key.context("proposing without a key")?;
        let built = {
            let ledger = self.shared.ledger.read();
            if ledger.next_height() != height {
                bail!(
                    "asked to propose at {height} but the ledger's next height is {}",
                    ledger.next_height()
                );
            }
            ledger.build_block(&candidates, now_ms(), proposer, &*self.shared.verifier)
        };
        if !built.skipped.is_empty() {
            tracing::debug!(
                skipped = built.skipped.len(),
                "left invalid mempool txs out of the block"
            );
        }
        let (block, outcome) = (built.block, built.outcome);
        let hash = block.hash();
        tracing::debug!(%height, txs = block.txs.len(), %hash, "proposing");
        self.blocks.entry(height).or_default().insert(hash, Arc::new(block));
        self.verdicts.insert(hash, Some(outcome));
        Ok(hash)
    }

    /// valid(v) for a block of the current height: `None` if the block is not here yet.
    fn judge(&mut self, height: Height, hash: &BlockHash) -> Option<bool> {
        if let Some(verdict) = self.verdicts.get(hash) {
            return Some(verdict.is_some());
        }
        let block = self.blocks.get(&height)?.get(hash)?.clone();
        let verdict = {
            let ledger = self.shared.ledger.read();
            ledger.validate_block(&block, &*self.shared.verifier)
        };
        let valid = match verdict {
            Ok(outcome) => {
                self.verdicts.insert(*hash, Some(outcome));
                true
            }
            Err(e) => {
                self.stats.bad_blocks += 1;
                self.shared.metrics.bad_blocks.inc();
                tracing::warn!(%height, %hash, error = %e, "invalid block proposed");
                self.verdicts.insert(*hash, None);
                false
            }
        };
        Some(valid)
    }

    fn remember_block(&mut self, block: Block) -> Option<BlockHash> {
        let height = block.header.height;
        if height < self.core.height() || height.0 > self.core.height().0 + BLOCK_HEIGHTS_AHEAD_MAX
        {
            return None;
        }
        let hash = block.hash();
        let at_height = self.blocks.entry(height).or_default();
        if at_height.len() >= BLOCKS_PER_HEIGHT_MAX && !at_height.contains_key(&hash) {
            return None;
        }
        at_height.entry(hash).or_insert_with(|| Arc::new(block));
        Some(hash)
    }

    /// Answers ValidateValue requests whose block just arrived.
    async fn resolve_awaiting(&mut self, hash: BlockHash) -> anyhow::Result<()> {
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.awaiting_blocks.drain(..).partition(|(_, _, h)| *h == hash);
        self.awaiting_blocks = waiting;
        for (height, round, block_hash) in ready {
            if let Some(valid) = self.judge(height, &block_hash) {
                self.step(Input::ValueValidity { height, round, block_hash, valid }).await?;
            }
        }
        Ok(())
    }

    async fn commit_decided(&mut self, certificate: CommitCertificate) -> anyhow::Result<()> {
        let height = certificate.height;
        let hash = certificate.block_hash;
        let block = self
            .blocks
            .get(&height)
            .and_then(|b| b.get(&hash))
            .cloned()
            .context("decided a block this node does not have")?;
        let outcome = match self.verdicts.remove(&hash) {
            Some(Some(outcome)) => outcome,
            _ => bail!("decided block {hash} at {height} was never judged valid"),
        };
        self.commit_block(&block, &certificate, outcome).await?;
        let delay = Duration::from_millis(self.shared.config.consensus.timeout_commit_ms);
        self.next_height_at = Some((Instant::now() + delay, height.next()));
        Ok(())
    }

    /// Writes the block, then updates the mempool and wakes waiters. Fatal on a write error.
    async fn commit_block(
        &mut self,
        block: &Block,
        certificate: &CommitCertificate,
        outcome: ExecutionOutcome,
    ) -> anyhow::Result<()> {
        let height = block.header.height;
        let started = Instant::now();
        let hashes: Vec<TxHash> = outcome.tx_hashes.clone();
        let committed: Vec<(TxHash, tally_crypto::PublicKey)> =
            hashes.iter().zip(&block.txs).map(|(h, t)| (*h, t.transfer.from)).collect();
        // Lock order: mempool, then ledger (see Shared::insert_into_mempool).
        let dropped = {
            let mut mempool = self.shared.mempool.lock();
            self.shared
                .ledger
                .write()
                .commit(block, certificate, outcome)
                .with_context(|| format!("committing block {height} to the ledger"))?;
            let ledger = self.shared.ledger.read();
            mempool.update(&committed, |k| ledger.account(k))
        };
        self.shared.notify_committed(height, &hashes);
        let metrics = &self.shared.metrics;
        metrics.blocks_committed.inc();
        metrics.txs_committed.inc_by(block.txs.len() as u64);
        metrics.block_txs.observe(block.txs.len() as f64);
        metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        let now = Instant::now();
        if let Some(last) = self.last_commit.replace(now) {
            metrics.block_interval_seconds.observe((now - last).as_secs_f64());
        }
        tracing::info!(
            height = height.0,
            round = certificate.round.0,
            txs = block.txs.len(),
            hash = %block.hash(),
            commit_ms = started.elapsed().as_millis() as u64,
            mempool_dropped = dropped,
            "committed block"
        );
        self.blocks.retain(|h, _| *h > height);
        self.verdicts.clear();
        self.awaiting_blocks.clear();
        Ok(())
    }

    // ----- messages from peers -----

    async fn on_consensus_event(&mut self, event: ConsensusEvent) -> anyhow::Result<()> {
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
        let current = self.core.height();
        let height = match &msg {
            ConsensusMsg::Proposal { proposal, .. } => proposal.proposal.height,
            ConsensusMsg::Vote(v) => v.vote.height,
            ConsensusMsg::Certificate { certificate, .. } => certificate.height,
        };
        if height < current {
            self.stats.stale_messages += 1;
            let _ = self.net.report_validation(&from, true).await;
            return Ok(());
        }
        if height > current {
            self.start_sync(from.propagation_source);
        }
        let chain_id = &self.shared.chain_id;
        let validators = &self.shared.validators;
        let verifier = &self.shared.verifier;
        match msg {
            ConsensusMsg::Proposal { proposal, block } => {
                // The block must be the one signed for, at that height, built by the signer.
                let proposer_key = validators.get(proposal.proposal.proposer).map(|v| v.public_key);
                let ok = proposal.verify(chain_id, validators, verifier).is_ok()
                    && block.hash() == proposal.proposal.block_hash
                    && block.header.height == proposal.proposal.height
                    && Some(block.header.proposer) == proposer_key;
                self.report(&from, ok).await;
                if !ok {
                    return Ok(());
                }
                let hash = self.remember_block(block);
                self.step(Input::Proposal(proposal)).await?;
                if let Some(hash) = hash {
                    self.resolve_awaiting(hash).await?;
                }
            }
            ConsensusMsg::Vote(vote) => {
                let ok = vote.verify(chain_id, validators, verifier).is_ok();
                self.report(&from, ok).await;
                if ok {
                    self.step(Input::Vote(vote)).await?;
                }
            }
            ConsensusMsg::Certificate { certificate, block } => {
                let ok = certificate.verify(chain_id, validators, verifier).is_ok()
                    && block.hash() == certificate.block_hash
                    && block.header.height == certificate.height;
                self.report(&from, ok).await;
                if !ok {
                    return Ok(());
                }
                let hash = self.remember_block(block);
                self.step(Input::Certificate(certificate)).await?;
                if let Some(hash) = hash {
                    self.resolve_awaiting(hash).await?;
                }
            }
        }
        Ok(())
    }

    async fn report(&mut self, from: &GossipRef, ok: bool) {
        if !ok {
            self.stats.bad_signatures += 1;
            self.shared.metrics.bad_consensus_messages.inc();
            tracing::debug!(peer = %from.propagation_source, "dropped a consensus message that does not verify");
        }
        let _ = self.net.report_validation(from, ok).await;
        if !ok {
            let _ = self.net.penalize(from.propagation_source).await;
        }
    }

    // ----- block sync -----

    fn start_sync(&mut self, peer: PeerId) {
        if self.sync_in_flight {
            return;
        }
        self.sync_in_flight = true;
        self.shared.catching_up.store(true, Ordering::Relaxed);
        let from = self.shared.tip_height().map_or(Height(1), Height::next);
        let count = self.shared.config.consensus.sync_batch_blocks;
        let timeout = Duration::from_millis(self.shared.config.consensus.sync_request_timeout_ms);
        let net = self.net.clone();
        let tx = self.sync_tx.clone();
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(timeout, net.request_blocks(peer, from, count)).await {
                    Ok(Ok(blocks)) => Ok(blocks),
                    Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
                    Err(_) => Err(anyhow::anyhow!("timed out after {} ms", timeout.as_millis())),
                };
            let _ = tx.send((peer, result)).await;
        });
    }

    async fn on_sync_result(&mut self, (peer, result): SyncResult) -> anyhow::Result<()> {
        self.sync_in_flight = false;
        let blocks = match result {
            Ok(blocks) => blocks,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "block sync request failed");
                self.shared.catching_up.store(false, Ordering::Relaxed);
                return Ok(());
            }
        };
        let received = blocks.len();
        let mut applied = 0;
        for (block, certificate) in blocks {
            let next = self.shared.tip_height().map_or(Height(1), Height::next);
            if block.header.height < next {
                continue;
            }
            match self.check_synced(next, &block, &certificate) {
                Ok(outcome) => {
                    // A failed write is not the peer's fault: it stops the node.
                    self.commit_block(&block, &certificate, outcome).await?;
                    self.stats.synced_blocks += 1;
                    self.shared.metrics.synced_blocks.inc();
                    applied += 1;
                }
                Err(e) => {
                    tracing::warn!(%peer, height = %block.header.height, error = %e, "peer served a bad block");
                    let _ = self.net.penalize(peer).await;
                    break;
                }
            }
        }
        if applied > 0 {
            tracing::info!(%peer, applied, "block sync");
            let next = self.shared.tip_height().map_or(Height(1), Height::next);
            if next > self.core.height() {
                self.next_height_at = None;
                self.step(Input::StartHeight(next)).await?;
            }
        }
        // A full batch means the peer may have more.
        if applied > 0 && received as u32 >= self.shared.config.consensus.sync_batch_blocks {
            self.start_sync(peer);
        } else {
            self.shared.catching_up.store(false, Ordering::Relaxed);
        }
        Ok(())
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
        let shared = &self.shared;
        certificate.verify(&shared.chain_id, &shared.validators, &shared.verifier)?;
        Ok(shared.ledger.read().validate_block(block, &*shared.verifier)?)
    }

    fn serve_sync(&self, request: InboundSyncRequest) {
        let SyncRequest::Blocks { from, count } = request.request;
        let count = count.min(tally_network::wire::SYNC_BLOCKS_MAX);
        let ledger = self.shared.ledger.read();
        let mut blocks = Vec::new();
        for h in from.0..from.0.saturating_add(u64::from(count)) {
            let store = ledger.store();
            match (store.block(Height(h)), store.certificate(Height(h))) {
                (Ok(Some(b)), Ok(Some(c))) => blocks.push((b, c)),
                _ => break,
            }
        }
        drop(ledger);
        request.responder.respond(SyncResponse::Blocks(blocks));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
