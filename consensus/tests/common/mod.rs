//! Shared test fixtures: validators with derived keys, signed messages from any of them, a
//! single-core harness for step tables, and an in-memory cluster.
#![allow(dead_code)]

pub mod cluster;

use tally_consensus::{
    BlockHash, Core, CoreConfig, Height, Input, Output, Proposal, Round, SignedMessage, SignedVote,
    Validator, ValidatorIndex, ValidatorSet, Vote, VoteType, VotingPower,
};
use tally_crypto::{ChainId, Hash, Keypair};

pub fn chain() -> ChainId {
    ChainId::new("tally-test").expect("valid chain id")
}

pub fn keys(n: usize) -> Vec<Keypair> {
    (0..n).map(|i| Keypair::derive_insecure(&format!("validator/{i}"))).collect()
}

pub fn validator_set(keys: &[Keypair], powers: &[u64]) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter()
            .zip(powers)
            .map(|(k, p)| Validator { public_key: k.public(), voting_power: VotingPower(*p) })
            .collect(),
    )
    .expect("valid test validator set")
}

pub fn value(label: &str) -> BlockHash {
    BlockHash(Hash::digest(label.as_bytes()))
}

pub fn signed_vote(
    key: &Keypair,
    index: u32,
    vote_type: VoteType,
    height: u64,
    round: u32,
    value: Option<BlockHash>,
) -> SignedVote {
    Vote {
        height: Height(height),
        round: Round(round),
        vote_type,
        block_hash: value,
        validator: ValidatorIndex(index),
    }
    .sign(&chain(), key)
}

/// One core (validator `me` of `n` equal-power validators) and the keys of all of them, to
/// forge the others' messages.
pub struct Harness {
    pub core: Core,
    pub keys: Vec<Keypair>,
    pub validators: ValidatorSet,
}

impl Harness {
    pub fn new(n: usize, me: u32) -> Harness {
        let keys = keys(n);
        let validators = validator_set(&keys, &vec![1; n]);
        let signer = Box::new(keys[me as usize].clone());
        let core = Core::new(CoreConfig::new(chain()), validators.clone(), Some(signer))
            .expect("default config is valid");
        Harness { core, keys, validators }
    }

    /// Steps the core and checks its invariants.
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.core.step(input, &mut out);
        self.core.invariants().unwrap_or_else(|e| panic!("invariant broken: {e}"));
        out
    }

    pub fn vote(&self, from: u32, t: VoteType, h: u64, r: u32, v: Option<BlockHash>) -> Input {
        Input::Vote(signed_vote(&self.keys[from as usize], from, t, h, r, v))
    }

    /// A proposal for (h, r) signed by its proposer.
    pub fn proposal(&self, h: u64, r: u32, v: BlockHash, pol_round: Option<u32>) -> Input {
        let proposer = self.validators.proposer(Height(h), Round(r));
        self.proposal_from(proposer.0, h, r, v, pol_round)
    }

    pub fn proposal_from(
        &self,
        from: u32,
        h: u64,
        r: u32,
        v: BlockHash,
        pol: Option<u32>,
    ) -> Input {
        let p = Proposal {
            height: Height(h),
            round: Round(r),
            block_hash: v,
            pol_round: pol.map(Round),
            proposer: ValidatorIndex(from),
        };
        Input::Proposal(p.sign(&chain(), &self.keys[from as usize]))
    }
}

/// The votes this core broadcast in `out`.
pub fn broadcast_votes(out: &[Output]) -> Vec<SignedVote> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broadcast(SignedMessage::Vote(v)) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// The only vote broadcast in `out`, as (type, value); panics if there is not exactly one.
pub fn the_vote(out: &[Output]) -> (VoteType, Option<BlockHash>) {
    let votes = broadcast_votes(out);
    assert_eq!(votes.len(), 1, "expected one vote in {out:#?}");
    (votes[0].vote.vote_type, votes[0].vote.block_hash)
}
