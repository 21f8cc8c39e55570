//! This process's signing record: what it signed for each (height, round, step), so that it
//! never signs two different messages for one of them.
//!
//! The node persists each newly signed message (`Output::Persist`) before broadcasting it and
//! hands the record back after a restart (`Core::restore_signed`). When the core would sign
//! for a (height, round, step) it has already signed for, it re-sends the recorded message
//! instead, whatever it would have signed now: re-sending is safe, signing anew is not.
//! Pruned below the current height when a height starts.

use crate::core::io::SignedMessage;
use crate::types::{Height, Round, VoteType};
use std::collections::BTreeMap;

/// The three signing steps of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SignStep {
    Proposal,
    Prevote,
    Precommit,
}

impl From<VoteType> for SignStep {
    fn from(t: VoteType) -> SignStep {
        match t {
            VoteType::Prevote => SignStep::Prevote,
            VoteType::Precommit => SignStep::Precommit,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SignRecord {
    /// At most one message per (height, round, step); heights >= the current one.
    entries: BTreeMap<(Height, Round, SignStep), SignedMessage>,
}

impl SignRecord {
    pub fn key_of(message: &SignedMessage) -> (Height, Round, SignStep) {
        match message {
            SignedMessage::Proposal(p) => (p.proposal.height, p.proposal.round, SignStep::Proposal),
            SignedMessage::Vote(v) => (v.vote.height, v.vote.round, v.vote.vote_type.into()),
        }
    }

    pub fn get(&self, height: Height, round: Round, step: SignStep) -> Option<&SignedMessage> {
        self.entries.get(&(height, round, step))
    }

    /// Records `message` unless its (height, round, step) is taken; returns whether it was.
    pub fn insert(&mut self, message: SignedMessage) -> bool {
        let key = Self::key_of(&message);
        if self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key, message);
        true
    }

    pub fn prune_below(&mut self, height: Height) {
        self.entries = self.entries.split_off(&(height, Round(0), SignStep::Proposal));
    }

    /// The recorded messages of `height`, by round and step.
    pub fn at_height(&self, height: Height) -> impl Iterator<Item = &SignedMessage> + '_ {
        self.entries.iter().filter(move |(k, _)| k.0 == height).map(|(_, m)| m)
    }
}
