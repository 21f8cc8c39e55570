//! The core's inputs and outputs: the complete list of what can happen to it and of what it
//! asks the node to do.

use crate::certificate::CommitCertificate;
use crate::evidence::Evidence;
use crate::proposal::SignedProposal;
use crate::types::{BlockHash, Height, Round};
use crate::vote::SignedVote;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A message a validator signs: what goes into the signing record and onto the wire.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub enum SignedMessage {
    Proposal(SignedProposal),
    Vote(SignedVote),
}

impl SignedMessage {
    pub fn height(&self) -> Height {
        match self {
            SignedMessage::Proposal(p) => p.proposal.height,
            SignedMessage::Vote(v) => v.vote.height,
        }
    }

    pub fn round(&self) -> Round {
        match self {
            SignedMessage::Proposal(p) => p.proposal.round,
            SignedMessage::Vote(v) => v.vote.round,
        }
    }
}

/// Which of the three timeouts of a round.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutStep {
    Propose,
    Prevote,
    Precommit,
}

/// A timeout of (height, round, step): scheduled by `Output::ScheduleTimeout`, handed back
/// as `Input::TimeoutElapsed` when it expires.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Timeout {
    pub height: Height,
    pub round: Round,
    pub step: TimeoutStep,
}

/// Everything that can happen to the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start round 0 of this height (L10, L54). The node sends it at startup and after it has
    /// committed the previous decision. Must be above the current height.
    StartHeight(Height),
    /// A proposal whose signature the node has verified.
    Proposal(SignedProposal),
    /// A vote whose signature the node has verified.
    Vote(SignedVote),
    /// The value to propose, answering `Output::GetValue` (L17). The node has the block.
    ProposeValue { height: Height, round: Round, block_hash: BlockHash },
    /// valid(v), answering `Output::ValidateValue`. Deterministic: the first verdict stands.
    ValueValidity { height: Height, round: Round, block_hash: BlockHash, valid: bool },
    /// A timeout that elapsed.
    TimeoutElapsed(Timeout),
    /// A commit certificate the node has verified (from gossip or block sync). Decides the
    /// current height once its value is known valid.
    Certificate(CommitCertificate),
}

/// What the core asks of the node, in the order it must be carried out. A failed `Persist`
/// must stop the node before the following `Broadcast` leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Durably record (fsync) this newly signed message in the signing record.
    Persist(SignedMessage),
    /// Send this message to every peer.
    Broadcast(SignedMessage),
    /// Hand `Input::TimeoutElapsed(timeout)` back after `duration_ms`.
    ScheduleTimeout { timeout: Timeout, duration_ms: u64 },
    /// Build a block for (height, round) and answer `Input::ProposeValue`.
    GetValue { height: Height, round: Round },
    /// Judge the block with this hash and answer `Input::ValueValidity`. The hash may belong
    /// to a block the node has not seen yet (precommitted by a quorum, or in a certificate):
    /// the node fetches it first.
    ValidateValue { height: Height, round: Round, block_hash: BlockHash },
    /// The height is decided: commit the block `certificate.block_hash` with this certificate,
    /// then send `Input::StartHeight(height + 1)`.
    Decide { certificate: CommitCertificate },
    /// A validator equivocated.
    Evidence(Evidence),
}
