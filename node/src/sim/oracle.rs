//! What must hold in every run, checked as the run goes and at its end: written from the
//! properties a ledger promises its users, not from the node's code.

use std::collections::BTreeMap;
use tally_consensus::SignedMessage;
use tally_consensus::{BlockHash, Height};
use tally_ledger::TxHash;
use tally_network::ConsensusMsg;

/// A property that did not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("honest validator {validator} signed two different {step}s at height {height} round {round}")]
    DoubleSign { validator: u32, height: u64, round: u32, step: &'static str },
    #[error(
        "nodes {a} and {b} committed different blocks at height {height}: {hash_a} / {hash_b}"
    )]
    Disagreement { height: u64, a: usize, b: usize, hash_a: String, hash_b: String },
    #[error("node {node} answered tx {tx} committed at height {height} before its block was durable there")]
    AckNotDurable { node: usize, tx: String, height: u64 },
    #[error("tx {tx}, answered committed at ({height}, {index}), is {found} on node {node}")]
    AckLost { node: usize, tx: String, height: u64, index: u32, found: String },
    #[error("on node {node} the balances add up to {total}, not {expected}")]
    BalanceNotConserved { node: usize, total: u128, expected: u128 },
    #[error("node {node} went from height {from} to {to} between GST and the end of the run")]
    NoProgress { node: usize, from: u64, to: u64 },
    #[error("node {node}'s ledger does not reopen after a crash: {error}")]
    ReopenFailed { node: usize, error: String },
    #[error("node {node} reopened at height {after}, below height {before} that it had committed")]
    TipWentBack { node: usize, before: u64, after: u64 },
    #[error("honest node {node} stopped: {error}")]
    NodeFailed { node: usize, error: String },
    #[error("honest node {node} sent its {step} of height {height} round {round}, but its signing record did not hold it after a crash")]
    SentNotRecorded { node: usize, height: u64, round: u32, step: &'static str },
}

/// (validator, height, round, step) -> what was signed there.
type SignKey = (u32, u64, u32, &'static str);

#[derive(Default)]
pub struct Oracle {
    signed: BTreeMap<SignKey, (Option<BlockHash>, Option<u32>)>,
    /// What each honest node sent, by node: it must be in its signing record after any
    /// crash (persisted before sent).
    sent: BTreeMap<(usize, SignKey), (Option<BlockHash>, Option<u32>)>,
    /// Acknowledged transfers: hash -> (height, index).
    pub acked: BTreeMap<TxHash, (Height, u32)>,
    pub violations: Vec<Violation>,
}

impl Oracle {
    pub fn fail(&mut self, v: Violation) {
        self.violations.push(v);
    }

    /// A consensus message honest node `node` published (its own, or re-sent). Votes of
    /// other validators that it relays (the polka behind its valid value) are not its own:
    /// its signing record never holds them. Validator i is node i.
    pub fn on_honest_publish(&mut self, node: usize, msg: &ConsensusMsg) {
        let signed = match msg {
            ConsensusMsg::Vote(v) if v.vote.validator.0 as usize != node => return,
            ConsensusMsg::Vote(v) => SignedMessage::Vote(v.clone()),
            ConsensusMsg::CompactProposal { proposal, .. }
            | ConsensusMsg::Proposal { proposal, .. } => SignedMessage::Proposal(proposal.clone()),
            ConsensusMsg::Certificate { .. } | ConsensusMsg::Evidence(_) => return,
        };
        let (key, value) = key_of(&signed);
        self.sent.insert((node, key), value);
        match self.signed.get(&key) {
            Some(before) if *before != value => self.fail(Violation::DoubleSign {
                validator: key.0,
                height: key.1,
                round: key.2,
                step: key.3,
            }),
            Some(_) => {}
            None => {
                self.signed.insert(key, value);
            }
        }
    }
}

type Value = (Option<BlockHash>, Option<u32>);

fn key_of(message: &SignedMessage) -> (SignKey, Value) {
    match message {
        SignedMessage::Vote(v) => {
            let step = match v.vote.vote_type {
                tally_consensus::VoteType::Prevote => "prevote",
                tally_consensus::VoteType::Precommit => "precommit",
            };
            let key = (v.vote.validator.0, v.vote.height.0, v.vote.round.0, step);
            (key, (v.vote.block_hash, None))
        }
        SignedMessage::Proposal(proposal) => {
            let p = &proposal.proposal;
            let key = (u32::MAX, p.height.0, p.round.0, "proposal");
            (key, (Some(p.block_hash), p.pol_round.map(|r| r.0)))
        }
    }
}

impl Oracle {
    /// After a crash: everything honest node `node` sent at `from` or above must be in the
    /// signing record it restarts from (`recorded`).
    pub fn on_restart(&mut self, node: usize, from: Height, recorded: &[SignedMessage]) {
        let recorded: std::collections::BTreeSet<(SignKey, Value)> =
            recorded.iter().map(key_of).collect();
        let missing: Vec<SignKey> = self
            .sent
            .range((node, (0, from.0, 0, ""))..(node + 1, (0, 0, 0, "")))
            .filter(|((_, key), value)| key.1 >= from.0 && !recorded.contains(&(*key, **value)))
            .map(|((_, key), _)| *key)
            .collect();
        for key in missing {
            self.fail(Violation::SentNotRecorded {
                node,
                height: key.1,
                round: key.2,
                step: key.3,
            });
        }
    }
}
