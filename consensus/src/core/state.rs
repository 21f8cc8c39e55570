//! The step of the current round, the counters of dropped input, and the summary the RPC
//! shows as `consensus_state`.

use crate::types::{BlockHash, Height, Round, ValidatorIndex, VotingPower};
use serde::{Deserialize, Serialize};

/// Where the core is in the current height. `Propose < Prevote < Precommit` is the paper's
/// step order ("step >= prevote", L36).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// No height started yet (before the first `StartHeight`).
    Unstarted,
    Propose,
    Prevote,
    Precommit,
    /// The height is decided; waiting for `StartHeight(height + 1)`.
    Commit,
}

impl Step {
    /// Propose, prevote or precommit: the height is running.
    pub fn is_active(self) -> bool {
        matches!(self, Step::Propose | Step::Prevote | Step::Precommit)
    }
}

/// Input the core dropped or ignored, by reason. Monotonic counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Timeouts for another height, round or step.
    pub stale_timeouts: u64,
    /// Messages for a past height, or for the current one after it was decided.
    pub stale_messages: u64,
    /// Messages for a height or round too far ahead.
    pub too_far_ahead: u64,
    /// Future-height messages kept for replay.
    pub future_buffered: u64,
    /// Future-height messages dropped because the buffer was full (or evicted from it).
    pub future_dropped: u64,
    /// The same message again (gossip duplicates).
    pub duplicates: u64,
    /// Conflicting messages from one validator (each also reported as evidence).
    pub equivocations: u64,
    /// Messages whose signer is not in the validator set.
    pub unknown_validators: u64,
    /// Proposals from a validator that is not the proposer of their (height, round), or with
    /// a pol_round not below their round.
    pub invalid_proposals: u64,
    /// ProposeValue / ValueValidity / StartHeight / Certificate inputs that did not apply.
    pub stale_node_inputs: u64,
    /// Certificates for the current height that conflict with an earlier one (a safety
    /// failure of more than 1/3 of the power).
    pub conflicting_certificates: u64,
}

/// A snapshot of the core's state for RPC's `consensus_state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSummary {
    pub height: Height,
    pub round: Round,
    pub step: Step,
    pub locked_round: Option<Round>,
    pub locked_value: Option<BlockHash>,
    pub valid_round: Option<Round>,
    pub valid_value: Option<BlockHash>,
    /// The proposer of (height, round).
    pub proposer: ValidatorIndex,
    /// This node's validator index; `None` for a follower.
    pub me: Option<ValidatorIndex>,
    /// Power of the prevotes and precommits counted in the current round.
    pub prevote_power: VotingPower,
    pub precommit_power: VotingPower,
    pub total_power: VotingPower,
}
