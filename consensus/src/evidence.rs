//! Equivocation evidence: two different signed messages from one validator for the same
//! (height, round, step). The core reports it (`Output::Evidence`); the node stores and
//! gossips it. Both messages were verified before the core saw them, so evidence is
//! self-proving to anyone holding the validator set.

use crate::proposal::SignedProposal;
use crate::types::{Height, Round, ValidatorIndex};
use crate::vote::SignedVote;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Proof that a validator signed two conflicting messages.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub enum Evidence {
    /// Two votes of the same type for the same (height, round) that differ (in block hash).
    /// `first` is the one that was counted.
    DuplicateVote { first: SignedVote, second: SignedVote },
    /// Two different proposals from the proposer of (height, round). `first` is the one that
    /// counts.
    DuplicateProposal { first: SignedProposal, second: SignedProposal },
}

impl Evidence {
    /// The validator that equivocated.
    pub fn offender(&self) -> ValidatorIndex {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.validator,
            Evidence::DuplicateProposal { first, .. } => first.proposal.proposer,
        }
    }

    pub fn height(&self) -> Height {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.height,
            Evidence::DuplicateProposal { first, .. } => first.proposal.height,
        }
    }

    pub fn round(&self) -> Round {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.round,
            Evidence::DuplicateProposal { first, .. } => first.proposal.round,
        }
    }
}
