//! The proposals of one height and what the node said about each proposed value.
//!
//! Rules:
//! - Only the proposer of (height, round) can propose; the core checks that before calling
//!   [`ProposalKeeper::add`]. Its first proposal for a round is the one that counts; the same
//!   one again is a duplicate; a different one is equivocation evidence.
//! - valid(v) is the node's verdict on the block with hash v. It is deterministic, so the
//!   first verdict for a hash is kept for the whole height. A verdict is requested once per
//!   hash (`Output::ValidateValue`).
//! - Bounded like the votes: one proposal per round in the core's round window, one verdict
//!   per proposed or precommitted hash. Pruned when the height ends.

use crate::evidence::Evidence;
use crate::proposal::SignedProposal;
use crate::types::{BlockHash, Round};
use std::collections::BTreeMap;

/// What adding a proposal did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddProposal {
    Counted,
    Duplicate,
    Equivocation(Evidence),
}

/// The node's verdict on a value, or that it was asked for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    Requested,
    Valid,
    Invalid,
}

#[derive(Clone, Debug, Default)]
pub struct ProposalKeeper {
    /// The counted proposal of each round.
    proposals: BTreeMap<Round, SignedProposal>,
    /// Verdicts, and outstanding requests, by block hash.
    validity: BTreeMap<BlockHash, Validity>,
}

impl ProposalKeeper {
    pub fn add(&mut self, proposal: SignedProposal) -> AddProposal {
        let round = proposal.proposal.round;
        match self.proposals.get(&round) {
            Some(first) if *first == proposal => AddProposal::Duplicate,
            Some(first) => AddProposal::Equivocation(Evidence::DuplicateProposal {
                first: first.clone(),
                second: proposal,
            }),
            None => {
                self.proposals.insert(round, proposal);
                AddProposal::Counted
            }
        }
    }

    pub fn get(&self, round: Round) -> Option<&SignedProposal> {
        self.proposals.get(&round)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Round, &SignedProposal)> + '_ {
        self.proposals.iter()
    }

    /// `Some(true)` valid, `Some(false)` invalid, `None` not known (yet).
    pub fn is_valid(&self, value: &BlockHash) -> Option<bool> {
        match self.validity.get(value) {
            Some(Validity::Valid) => Some(true),
            Some(Validity::Invalid) => Some(false),
            Some(Validity::Requested) | None => None,
        }
    }

    /// Marks `value` as requested; true if it was neither requested nor judged before, i.e.
    /// the caller must now ask the node.
    pub fn request(&mut self, value: BlockHash) -> bool {
        if self.validity.contains_key(&value) {
            return false;
        }
        self.validity.insert(value, Validity::Requested);
        true
    }

    /// Records the node's verdict; the first verdict stands. Returns true if it was new.
    pub fn set_validity(&mut self, value: BlockHash, valid: bool) -> bool {
        let verdict = if valid { Validity::Valid } else { Validity::Invalid };
        match self.validity.get(&value) {
            Some(Validity::Valid | Validity::Invalid) => false,
            Some(Validity::Requested) | None => {
                self.validity.insert(value, verdict);
                true
            }
        }
    }
}
