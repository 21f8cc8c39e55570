//! The [`Core`]: the state of the Tendermint algorithm for one validator, its single `step`
//! entry point, and read-only accessors.
//!
//! The handlers (`handlers.rs`) route each input, the rules (`rules.rs`) are the paper's
//! "upon" clauses, re-evaluated after every change until none fires; `send.rs` signs and
//! sends this validator's own messages.

use crate::certificate::CommitCertificate;
use crate::core::config::{ConfigError, CoreConfig};
use crate::core::future::FutureBuffer;
use crate::core::io::{Input, Output, SignedMessage};
use crate::core::proposal_keeper::ProposalKeeper;
use crate::core::sign_record::SignRecord;
use crate::core::state::{StateSummary, Stats, Step};
use crate::core::vote_keeper::VoteKeeper;
use crate::signer::Signer;
use crate::types::{BlockHash, Height, Round, ValidatorIndex, VoteType};
use crate::validators::ValidatorSet;
use crate::vote::SignedVote;
use std::collections::BTreeSet;

/// The "for the first time" rules of a round, each fired at most once per round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Once {
    /// L34: 2f+1 prevotes of any kind, timeout scheduled.
    PrevoteQuorum,
    /// L36: proposal and 2f+1 prevotes for its value.
    Polka,
    /// L47: 2f+1 precommits of any kind, timeout scheduled.
    PrecommitQuorum,
}

/// The Tendermint state machine of one validator (or of a follower that never signs).
pub struct Core {
    pub(super) config: CoreConfig,
    pub(super) validators: ValidatorSet,
    pub(super) signer: Option<Box<dyn Signer + Send>>,
    /// This validator's index: the signer's key in `validators`; `None` for a follower.
    pub(super) me: Option<ValidatorIndex>,
    pub(super) height: Height,
    pub(super) round: Round,
    pub(super) step: Step,
    /// (lockedRound, lockedValue); `locked.0 <= round`.
    pub(super) locked: Option<(Round, BlockHash)>,
    /// (validRound, validValue); `valid.0 >= locked.0` when both are set.
    pub(super) valid: Option<(Round, BlockHash)>,
    /// Votes of the current height; replaced when a height starts.
    pub(super) votes: VoteKeeper,
    /// Proposals and verdicts of the current height; replaced when a height starts.
    pub(super) proposals: ProposalKeeper,
    /// Messages for later heights, replayed by StartHeight.
    pub(super) future: FutureBuffer,
    /// What this process signed; pruned below the current height.
    pub(super) record: SignRecord,
    /// Rules of the current height that fired "for the first time", by round.
    pub(super) fired: BTreeSet<(Round, Once)>,
    /// The round of the current height whose value was asked for (GetValue) and not given.
    pub(super) awaiting_value: Option<Round>,
    /// A certificate for the current height waiting for valid(v).
    pub(super) certificate: Option<CommitCertificate>,
    /// The decision of the current height (step = Commit).
    pub(super) decision: Option<CommitCertificate>,
    pub(super) stats: Stats,
    /// A deliberate bug switched on by a test (`Core::set_bug`); `None` in every real run.
    #[cfg(feature = "testing")]
    pub(super) bug: Option<crate::core::bug::Bug>,
}

impl Core {
    /// Turns a deliberate bug on (or off) in this core. Testing only.
    #[cfg(feature = "testing")]
    pub fn set_bug(&mut self, bug: Option<crate::core::bug::Bug>) {
        self.bug = bug;
    }

    /// A core waiting for its first `StartHeight`. With a signer whose key is in
    /// `validators` it is that validator; otherwise it follows without signing.
    pub fn new(
        config: CoreConfig,
        validators: ValidatorSet,
        signer: Option<Box<dyn Signer + Send>>,
    ) -> Result<Core, ConfigError> {
        config.validate()?;
        let me = signer.as_ref().and_then(|s| validators.index_of(&s.public_key()));
        let future = FutureBuffer::new(config.future_msgs_max);
        Ok(Core {
            config,
            validators,
            signer,
            me,
            height: Height(0),
            round: Round(0),
            step: Step::Unstarted,
            locked: None,
            valid: None,
            votes: VoteKeeper::default(),
            proposals: ProposalKeeper::default(),
            future,
            record: SignRecord::default(),
            fired: BTreeSet::new(),
            awaiting_value: None,
            certificate: None,
            decision: None,
            stats: Stats::default(),
            #[cfg(feature = "testing")]
            bug: None,
        })
    }

    /// Feeds one input; appends the outputs, in the order the node must carry them out.
    pub fn step(&mut self, input: Input, out: &mut Vec<Output>) {
        match input {
            // L10, L54: StartRound(0) of a new height.
            Input::StartHeight(height) => self.on_start_height(height, out),
            // L22, L28, L36, L49 (the proposal half of each).
            Input::Proposal(proposal) => self.on_proposal(proposal, out),
            // L28, L34, L36, L44, L47, L49, L55 (the vote half of each).
            Input::Vote(vote) => self.on_vote(vote, out),
            // L17-L19: getValue() returned.
            Input::ProposeValue { height, round, block_hash } => {
                self.on_propose_value(height, round, block_hash, out)
            }
            // valid(v) in L22, L28, L36, L50.
            Input::ValueValidity { height, round, block_hash, valid } => {
                self.on_value_validity(height, round, block_hash, valid, out)
            }
            // L57, L61, L65.
            Input::TimeoutElapsed(timeout) => self.on_timeout_elapsed(timeout, out),
            // L49 with the precommits gathered elsewhere.
            Input::Certificate(certificate) => self.on_certificate(certificate, out),
        }
    }

    /// Loads this validator's signing record after a restart (the messages of past
    /// `Output::Persist`s). Call it before `StartHeight`: the height's recorded votes and
    /// proposal are then counted again, the lock is restored from its recorded precommit,
    /// and nothing different is ever signed for a recorded (height, round, step). Messages
    /// not signed by this validator are ignored; returns how many were loaded.
    pub fn restore_signed(&mut self, messages: impl IntoIterator<Item = SignedMessage>) -> usize {
        let Some(me) = self.me else { return 0 };
        let mut loaded = 0;
        for message in messages {
            let signer = match &message {
                SignedMessage::Proposal(p) => p.proposal.proposer,
                SignedMessage::Vote(v) => v.vote.validator,
            };
            if signer == me && message.height() >= self.height && self.record.insert(message) {
                loaded += 1;
            }
        }
        loaded
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn round(&self) -> Round {
        self.round
    }

    /// The step (`step` is the name of the input method).
    pub fn current_step(&self) -> Step {
        self.step
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// This validator's index, `None` for a follower.
    pub fn me(&self) -> Option<ValidatorIndex> {
        self.me
    }

    /// The decision of the current height, once made (step = Commit).
    pub fn decision(&self) -> Option<&CommitCertificate> {
        self.decision.as_ref()
    }

    /// (lockedRound, lockedValue).
    pub fn locked(&self) -> Option<(Round, BlockHash)> {
        self.locked
    }

    /// (validRound, validValue).
    pub fn valid(&self) -> Option<(Round, BlockHash)> {
        self.valid
    }

    /// What this validator signed at the current height, by round and step: the node
    /// re-broadcasts these on a timer, because gossip alone may lose them (tendermint.md).
    pub fn own_messages(&self) -> Vec<SignedMessage> {
        self.record.at_height(self.height).cloned().collect()
    }

    /// The prevotes, of any validator, that make the polka behind this process's valid
    /// value (validRound, validValue), if it has one: the node re-sends them with its own
    /// messages. Its own messages are not enough when a Byzantine validator sent its vote
    /// for the value to some and another vote to the rest: a process locked on the value
    /// proposes it again with that POL round, and the others accept it only once they hold
    /// that polka (L28), which only a relay of the Byzantine vote can give them.
    pub fn polka_votes(&self) -> Vec<SignedVote> {
        let Some((round, value)) = self.valid else { return Vec::new() };
        self.votes.tally(round, VoteType::Prevote).votes_for(Some(value)).cloned().collect()
    }

    pub fn state_summary(&self) -> StateSummary {
        StateSummary {
            height: self.height,
            round: self.round,
            step: self.step,
            locked_round: self.locked.map(|l| l.0),
            locked_value: self.locked.map(|l| l.1),
            valid_round: self.valid.map(|v| v.0),
            valid_value: self.valid.map(|v| v.1),
            proposer: self.validators.proposer(self.height, self.round),
            me: self.me,
            prevote_power: self.votes.tally(self.round, VoteType::Prevote).total(),
            precommit_power: self.votes.tally(self.round, VoteType::Precommit).total(),
            total_power: self.validators.total_power(),
        }
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("height", &self.height)
            .field("round", &self.round)
            .field("step", &self.step)
            .field("me", &self.me)
            .field("locked", &self.locked)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

// The node moves the core into its driver task.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Core>();
};
