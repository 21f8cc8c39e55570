//! The oracle: what must hold in every run, written from the spec (tendermint.md, the
//! issue's list) and not from the core's helpers. It counts voting power itself, keeps its
//! own record of what every honest validator signed, and checks signatures with the
//! simulation's keys.
//!
//! - Agreement: no two honest validators decide different blocks at one height.
//! - Validity: a decided block was proposed at that height and the application judges it
//!   valid; its certificate carries distinct validators' valid precommit signatures for it,
//!   with more than 2/3 of the power.
//! - No double signing: an honest validator never signs two different messages for one
//!   (height, round, step), across crashes and restarts.
//! - Evidence: every equivocation that reached an honest validator is reported by it, in the
//!   step that delivered the second message; evidence never accuses an honest validator and
//!   always holds two different, validly signed messages for one (height, round, step).
//!   "Reached" means: both messages were delivered while that validator ran the message's
//!   height, undecided, with the message's round inside its window (current round +
//!   `rounds_ahead_max`), and, for proposals, from the proposer of that round with a POL
//!   round below the round. Messages outside the window are, by design, not stored.
//! - Liveness: after GST, every honest validator reaches the target height within a bound.

use crate::certificate::CommitCertificate;
use crate::core::SignedMessage;
use crate::evidence::Evidence;
use crate::sim::keys::SimKeys;
use crate::types::{BlockHash, Height, Round, ValidatorIndex, VoteType};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Something that must never happen, with what the oracle saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Agreement { height: u64, first: (usize, BlockHash), second: (usize, BlockHash) },
    Validity { node: usize, height: u64, block_hash: BlockHash, reason: &'static str },
    BadCertificate { node: usize, height: u64, reason: String },
    DoubleSign { validator: u32, height: u64, round: u32, step: u8 },
    MissedEquivocation { node: usize, offender: u32, height: u64, round: u32, step: u8 },
    FalseEvidence { node: usize, offender: u32, reason: &'static str },
    Liveness { node: usize, committed: u64, target: u64, at_ms: u64 },
    Invariant { node: usize, message: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Agreement { height, first, second } => write!(
                f,
                "agreement: at height {height} node {} decided {} and node {} decided {}",
                first.0, first.1, second.0, second.1
            ),
            Violation::Validity { node, height, block_hash, reason } => {
                write!(f, "validity: node {node} decided {block_hash} at {height}: {reason}")
            }
            Violation::BadCertificate { node, height, reason } => {
                write!(f, "bad certificate: node {node} at height {height}: {reason}")
            }
            Violation::DoubleSign { validator, height, round, step } => write!(
                f,
                "double sign: honest validator {validator} signed two messages for \
                 height {height} round {round} step {step}"
            ),
            Violation::MissedEquivocation { node, offender, height, round, step } => write!(
                f,
                "missed equivocation: node {node} received two messages of {offender} for \
                 height {height} round {round} step {step} and reported nothing"
            ),
            Violation::FalseEvidence { node, offender, reason } => {
                write!(f, "false evidence: node {node} accused {offender}: {reason}")
            }
            Violation::Liveness { node, committed, target, at_ms } => write!(
                f,
                "liveness: node {node} committed height {committed} of {target} by {at_ms} ms"
            ),
            Violation::Invariant { node, message } => {
                write!(f, "core invariant: node {node}: {message}")
            }
        }
    }
}

/// (signer, height, round, step) with step 0 = proposal, 1 = prevote, 2 = precommit.
pub type SignKey = (u32, u64, u32, u8);

/// The (signer, height, round, step) of a signed message.
pub fn sign_key(message: &SignedMessage) -> SignKey {
    match message {
        SignedMessage::Proposal(p) => {
            (p.proposal.proposer.0, p.proposal.height.0, p.proposal.round.0, 0)
        }
        SignedMessage::Vote(v) => {
            let step = match v.vote.vote_type {
                VoteType::Prevote => 1,
                VoteType::Precommit => 2,
            };
            (v.vote.validator.0, v.vote.height.0, v.vote.round.0, step)
        }
    }
}

/// Where a receiving validator stood when a message reached it.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub height: u64,
    pub round: u32,
    /// Running the height and not yet decided.
    pub undecided: bool,
}

pub struct Oracle {
    powers: Vec<u64>,
    total_power: u64,
    honest: Vec<bool>,
    rounds_ahead_max: u32,
    /// The first honest decision of each height: (node, block), and its round.
    decided: BTreeMap<u64, (usize, BlockHash, u32)>,
    /// (height, block) of every signed proposal that was sent by anyone.
    proposed: BTreeSet<(u64, BlockHash)>,
    /// What each honest validator signed, across all its lives.
    signed: BTreeMap<SignKey, SignedMessage>,
    /// Per receiving node (reset when it restarts): the first in-window message of each
    /// (height, signer, round, step), pruned below the node's height.
    first_seen: Vec<BTreeMap<(u64, u32, u32, u8), SignedMessage>>,
    /// Per receiving node (reset when it restarts): the equivocations it reported. A pair
    /// whose first message came from the future-height buffer is reported when its second
    /// message arrives, before the oracle (which only counts in-window deliveries) expects it.
    reported: Vec<BTreeSet<SignKey>>,
    /// The first violation seen; the run stops there.
    pub violation: Option<Violation>,
}

impl Oracle {
    pub fn new(powers: &[u64], honest: Vec<bool>, rounds_ahead_max: u32) -> Oracle {
        Oracle {
            powers: powers.to_vec(),
            total_power: powers.iter().sum(),
            first_seen: vec![BTreeMap::new(); powers.len()],
            reported: vec![BTreeSet::new(); powers.len()],
            honest,
            rounds_ahead_max,
            decided: BTreeMap::new(),
            proposed: BTreeSet::new(),
            signed: BTreeMap::new(),
            violation: None,
        }
    }

    pub fn fail(&mut self, violation: Violation) {
        if self.violation.is_none() {
            self.violation = Some(violation);
        }
    }

    /// The round of each decided height (of the first honest decision), in height order.
    pub fn decision_rounds(&self) -> impl Iterator<Item = u32> + '_ {
        self.decided.values().map(|d| d.2)
    }

    pub fn on_proposal_sent(&mut self, message: &SignedMessage) {
        if let SignedMessage::Proposal(p) = message {
            self.proposed.insert((p.proposal.height.0, p.proposal.block_hash));
        }
    }

    /// An honest validator's Persist or Broadcast: one message per (height, round, step).
    pub fn on_signed(&mut self, message: &SignedMessage) {
        let key = sign_key(message);
        match self.signed.get(&key) {
            Some(first) if first != message => {
                let (validator, height, round, step) = key;
                self.fail(Violation::DoubleSign { validator, height, round, step });
            }
            Some(_) => {}
            None => {
                self.signed.insert(key, message.clone());
            }
        }
    }

    /// A node restarted: what its previous life saw is gone.
    pub fn on_restart(&mut self, node: usize) {
        self.first_seen[node].clear();
        self.reported[node].clear();
    }

    /// Called before `message` reaches honest `node`'s core; returns the equivocation the
    /// node must now report, if this is the second of a conflicting pair within its view.
    pub fn before_delivery(
        &mut self,
        node: usize,
        view: View,
        message: &SignedMessage,
        proposer: ValidatorIndex,
    ) -> Option<SignKey> {
        let key = sign_key(message);
        let (signer, height, round, step) = key;
        let in_window = view.undecided
            && height == view.height
            && u64::from(round) <= u64::from(view.round) + u64::from(self.rounds_ahead_max)
            && (signer as usize) < self.powers.len();
        let proposal_ok = match message {
            SignedMessage::Proposal(p) => {
                p.proposal.proposer == proposer && p.proposal.pol_round.is_none_or(|r| r.0 < round)
            }
            SignedMessage::Vote(_) => true,
        };
        if !in_window || !proposal_ok {
            return None;
        }
        let seen = &mut self.first_seen[node];
        if seen.first_key_value().is_some_and(|(k, _)| k.0 < height) {
            *seen = seen.split_off(&(height, 0, 0, 0));
        }
        let by_height = (height, signer, round, step);
        match seen.get(&by_height) {
            Some(first) if first != message => Some(key),
            Some(_) => None,
            None => {
                seen.insert(by_height, message.clone());
                None
            }
        }
    }

    /// Checks the evidence a node output in one step, and that `expected` is among it.
    pub fn on_evidence(
        &mut self,
        node: usize,
        evidence: &[Evidence],
        expected: Option<SignKey>,
        keys: &SimKeys,
    ) {
        for e in evidence {
            let (first, second) = match e {
                Evidence::DuplicateVote { first, second } => {
                    (SignedMessage::Vote(first.clone()), SignedMessage::Vote(second.clone()))
                }
                Evidence::DuplicateProposal { first, second } => (
                    SignedMessage::Proposal(first.clone()),
                    SignedMessage::Proposal(second.clone()),
                ),
            };
            let offender = sign_key(&first).0;
            let reason = if sign_key(&first) != sign_key(&second) || first == second {
                Some("the two messages do not conflict")
            } else if !keys.verify_message(&first) || !keys.verify_message(&second) {
                Some("a message is not validly signed")
            } else if self.honest.get(offender as usize).copied().unwrap_or(false) {
                Some("an honest validator never equivocates")
            } else {
                None
            };
            if let Some(reason) = reason {
                self.fail(Violation::FalseEvidence { node, offender, reason });
            }
            self.reported[node].insert(sign_key(&first));
        }
        if let Some(key) = expected.filter(|k| !self.reported[node].contains(k)) {
            let (offender, height, round, step) = key;
            self.fail(Violation::MissedEquivocation { node, offender, height, round, step });
        }
    }

    /// An honest node decided: check the certificate, validity and agreement.
    pub fn on_decide(
        &mut self,
        node: usize,
        certificate: &CommitCertificate,
        keys: &SimKeys,
        valid: Option<bool>,
    ) {
        let (height, block) = (certificate.height.0, certificate.block_hash);
        if let Err(reason) = self.check_certificate(certificate, keys) {
            return self.fail(Violation::BadCertificate { node, height, reason });
        }
        if !self.proposed.contains(&(height, block)) {
            let reason = "no proposal for it was ever sent";
            return self.fail(Violation::Validity { node, height, block_hash: block, reason });
        }
        if valid != Some(true) {
            let reason = "the application does not judge it valid";
            return self.fail(Violation::Validity { node, height, block_hash: block, reason });
        }
        match self.decided.get(&height) {
            Some((first, first_block, _)) if *first_block != block => {
                let first = (*first, *first_block);
                self.fail(Violation::Agreement { height, first, second: (node, block) });
            }
            Some(_) => {}
            None => {
                self.decided.insert(height, (node, block, certificate.round.0));
            }
        }
    }

    /// Distinct signers, each a validator with a valid precommit signature for the block,
    /// holding more than 2/3 of the total power (counted here).
    fn check_certificate(&self, c: &CommitCertificate, keys: &SimKeys) -> Result<(), String> {
        let mut signers = BTreeSet::new();
        let mut power: u128 = 0;
        for s in &c.signatures {
            let index = s.validator.0 as usize;
            if index >= self.powers.len() || !signers.insert(index) {
                return Err(format!("signer {} unknown or repeated", s.validator));
            }
            if !keys.verify_vote(&c.precommit(s.validator), &s.signature) {
                return Err(format!("bad precommit signature of {}", s.validator));
            }
            power += u128::from(self.powers[index]);
        }
        if power * 3 <= u128::from(self.total_power) * 2 {
            return Err(format!("{power} of {} power is not more than 2/3", self.total_power));
        }
        Ok(())
    }
}

/// The proposer-independent part of a view, for nodes whose core is not running.
pub fn view_of(height: Height, round: Round, undecided: bool) -> View {
    View { height: height.0, round: round.0, undecided }
}
