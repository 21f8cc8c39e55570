//! The notify room: what the consensus room tells everyone else, never waiting on them.
//! - commit waiters (`broadcast_tx_commit`), bounded in number;
//! - block events for subscribers, in a bounded broadcast channel (a subscriber that lags is
//!   dropped by the channel, the publisher never waits);
//! - consensus events for subscribers (`Vote`, `NewRound`), in a bounded broadcast channel of
//!   their own, published only while someone listens (no cost otherwise);
//! - the status board: the consensus state last published, and whether the node is
//!   block-syncing.

use crate::metrics::Metrics;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tally_consensus::{Height, Round, SignedVote, StateSummary, Step, ValidatorIndex};
use tally_ledger::{Block, TxHash};
use tokio::sync::{broadcast, oneshot};

/// Where a committed tx landed.
pub type TxLocation = (Height, u32);

/// One committed block, as published to subscribers.
#[derive(Debug)]
pub struct BlockEvent {
    pub height: Height,
    pub block: Block,
    /// The hashes of `block.txs`, in order (computed once by the consensus room).
    pub tx_hashes: Vec<TxHash>,
}

/// A consensus event, as published to subscribers.
#[derive(Debug)]
pub enum ConsensusEvent {
    /// A round started (a new height starts at round 0).
    NewRound { height: Height, round: Round, proposer: ValidatorIndex },
    /// A verified vote, this validator's own or a peer's.
    Vote(SignedVote),
}

/// Rounds of votes the status board keeps: the current one, the next, and the latest before.
const BOARD_ROUNDS_MAX: usize = 8;

/// The votes of one height, by round, type (0 prevote, 1 precommit) and validator: the
/// first verified vote of each.
#[derive(Default)]
struct BoardVotes {
    height: Height,
    round: Round,
    by_round: std::collections::BTreeMap<
        Round,
        [std::collections::BTreeMap<ValidatorIndex, SignedVote>; 2],
    >,
}

/// The votes of the height in progress, by round: (round, prevotes, precommits).
pub type RoundVotes = Vec<(Round, Vec<SignedVote>, Vec<SignedVote>)>;

/// A `broadcast_tx_commit` call waiting for its tx.
pub struct CommitWaiter {
    rx: oneshot::Receiver<TxLocation>,
}

impl CommitWaiter {
    /// The tx's location once it commits; `None` if the node stops first.
    pub async fn wait(self) -> Option<TxLocation> {
        self.rx.await.ok()
    }
}

/// `rpc.tx_commit_waiters_max` calls are waiting already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many broadcast_tx_commit calls are waiting ({0}); try again later")]
pub struct TooManyWaiters(pub usize);

/// The sizes of the notify room's queues.
#[derive(Debug, Clone, Copy)]
pub struct NotifyLimits {
    /// Commit waiters at most (`rpc.tx_commit_waiters_max`); more are refused as busy.
    pub waiters_max: usize,
    /// Block events kept for subscribers (`rpc.subscription_lag_blocks_max`); a
    /// subscriber further behind loses its subscription ("lagged").
    pub events_max: usize,
}

pub struct Notify {
    waiters: Mutex<HashMap<TxHash, Vec<oneshot::Sender<TxLocation>>>>,
    waiters_count: AtomicUsize,
    waiters_max: usize,
    events: broadcast::Sender<Arc<BlockEvent>>,
    consensus_events: broadcast::Sender<Arc<ConsensusEvent>>,
    consensus: RwLock<Option<StateSummary>>,
    /// The verified votes of the height in progress, for `consensus_state`.
    votes: Mutex<BoardVotes>,
    /// The consensus step last published and when it began, for `tally_step_seconds`.
    step_clock: Mutex<Option<(Height, Round, Step, Instant)>>,
    catching_up: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Notify {
    pub fn new(limits: NotifyLimits, metrics: Arc<Metrics>) -> Notify {
        Notify {
            waiters: Mutex::new(HashMap::new()),
            waiters_count: AtomicUsize::new(0),
            waiters_max: limits.waiters_max,
            events: broadcast::channel(limits.events_max.max(1)).0,
            // Votes come by the dozen per height: room for as many heights of them.
            consensus_events: broadcast::channel(limits.events_max.max(1) * 64).0,
            consensus: RwLock::new(None),
            votes: Mutex::new(BoardVotes::default()),
            step_clock: Mutex::new(None),
            catching_up: AtomicBool::new(false),
            metrics,
        }
    }

    // ----- commit waiters -----

    /// Registers interest in the commit of the tx `hash` (before submitting it, so that a
    /// fast commit is not missed).
    pub fn commit_waiter(&self, hash: TxHash) -> Result<CommitWaiter, TooManyWaiters> {
        if self.waiters_count.load(Ordering::Relaxed) >= self.waiters_max {
            return Err(TooManyWaiters(self.waiters_max));
        }
        let (tx_send, rx) = oneshot::channel();
        self.waiters.lock().entry(hash).or_default().push(tx_send);
        self.waiters_count.fetch_add(1, Ordering::Relaxed);
        Ok(CommitWaiter { rx })
    }

    /// Called by the consensus room after each commit.
    pub fn committed(&self, height: Height, hashes: &[TxHash]) {
        let mut waiters = self.waiters.lock();
        if waiters.is_empty() {
            return;
        }
        for (i, hash) in hashes.iter().enumerate() {
            if let Some(list) = waiters.remove(hash) {
                self.waiters_count.fetch_sub(list.len(), Ordering::Relaxed);
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
        self.waiters_count.fetch_sub(before - after, Ordering::Relaxed);
    }

    // ----- block events -----

    /// Called by the consensus room after each commit: publishes the block to
    /// subscribers. Never waits.
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

    /// A receiver of the blocks committed from now on.
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<Arc<BlockEvent>> {
        self.events.subscribe()
    }

    // ----- consensus events -----

    /// Called by the consensus room with each verified vote. Never waits; costs nothing
    /// while no one subscribes.
    pub fn publish_vote(&self, vote: &SignedVote) {
        {
            let v = &vote.vote;
            let mut board = self.votes.lock();
            if v.height == board.height && v.round.0 <= board.round.0.saturating_add(1) {
                let kind = usize::from(v.vote_type == tally_consensus::VoteType::Precommit);
                let round = board.by_round.entry(v.round).or_default();
                round[kind].entry(v.validator).or_insert_with(|| vote.clone());
                while board.by_round.len() > BOARD_ROUNDS_MAX {
                    board.by_round.pop_first();
                }
            }
        }
        if self.consensus_events.receiver_count() > 0 {
            let _ = self.consensus_events.send(Arc::new(ConsensusEvent::Vote(vote.clone())));
        }
    }

    /// A receiver of the consensus events published from now on.
    pub fn subscribe_consensus(&self) -> broadcast::Receiver<Arc<ConsensusEvent>> {
        self.consensus_events.subscribe()
    }

    // ----- status board -----

    /// Called by the consensus room after each step: publishes the consensus state (for
    /// `consensus_state` and the status page) and times the steps.
    pub fn set_consensus(&self, summary: StateSummary) {
        let now = Instant::now();
        let key = (summary.height, summary.round, summary.step);
        {
            let mut clock = self.step_clock.lock();
            match *clock {
                Some((h, r, step, _)) if (h, r, step) == key => {}
                previous => {
                    let new_round = previous.is_none_or(|(h, r, _, _)| (h, r) != (key.0, key.1));
                    if new_round && self.consensus_events.receiver_count() > 0 {
                        let event = ConsensusEvent::NewRound {
                            height: summary.height,
                            round: summary.round,
                            proposer: summary.proposer,
                        };
                        let _ = self.consensus_events.send(Arc::new(event));
                    }
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
        {
            let mut board = self.votes.lock();
            if board.height != summary.height {
                *board = BoardVotes { height: summary.height, ..BoardVotes::default() };
            }
            board.round = summary.round;
        }
        *self.consensus.write() = Some(summary);
    }

    /// The verified votes of the height in progress, by round (at most the last eight
    /// rounds, none above the next one), and that height.
    pub fn votes(&self) -> (Height, RoundVotes) {
        let board = self.votes.lock();
        let rounds = board
            .by_round
            .iter()
            .map(|(r, [pre, com])| {
                (*r, pre.values().cloned().collect(), com.values().cloned().collect())
            })
            .collect();
        (board.height, rounds)
    }

    /// The consensus state last published.
    pub fn consensus(&self) -> Option<StateSummary> {
        self.consensus.read().clone()
    }

    /// Set by the consensus room while it block-syncs (behind its peers).
    pub fn set_catching_up(&self, catching_up: bool) {
        self.catching_up.store(catching_up, Ordering::Relaxed);
    }

    pub fn catching_up(&self) -> bool {
        self.catching_up.load(Ordering::Relaxed)
    }
}
