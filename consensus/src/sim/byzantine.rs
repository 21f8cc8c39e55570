//! The named Byzantine mocks. Each wraps what its own core broadcasts (`Actor::sends`): an
//! honest actor sends every message to every peer; the others lie in their own way, with
//! only their own key (and, for the garbage sender, the outsider's key, which no validator
//! holds). A silent actor is never started; an amnesiac runs a core with
//! `Bug::IgnoreLock` and sends honestly.

use crate::core::SignedMessage;
use crate::proposal::Proposal;
use crate::signer::Signer;
use crate::sim::app::{bogus_block, Blocks};
use crate::sim::network::Packet;
use crate::sim::params::Role;
use crate::sim::rng::SimRng;
use crate::types::{BlockHash, Height, Round, ValidatorIndex, VoteType};
use crate::vote::Vote;
use std::collections::VecDeque;
use tally_crypto::ChainId;

/// Old messages a stale replayer keeps to replay.
const REPLAY_POOL_MAX: usize = 64;

/// One validator's sending behaviour.
pub struct Actor {
    pub role: Role,
    me: usize,
    signer: Box<dyn Signer + Send>,
    /// The outsider's key (garbage sender only).
    outsider: Option<Box<dyn Signer + Send>>,
    /// Messages received, for the stale replayer; at most REPLAY_POOL_MAX, oldest dropped.
    pool: VecDeque<SignedMessage>,
}

impl Actor {
    pub fn new(
        role: Role,
        me: usize,
        signer: Box<dyn Signer + Send>,
        outsider: Option<Box<dyn Signer + Send>>,
    ) -> Actor {
        Actor { role, me, signer, outsider, pool: VecDeque::new() }
    }

    /// A message this actor's node accepted (the replayer keeps it).
    pub fn observe(&mut self, message: &SignedMessage) {
        if self.role == Role::StaleReplayer {
            if self.pool.len() == REPLAY_POOL_MAX {
                self.pool.pop_front();
            }
            self.pool.push_back(message.clone());
        }
    }

    /// What goes to whom when the core broadcasts `message` to `n` validators.
    pub fn sends(
        &mut self,
        message: &SignedMessage,
        n: usize,
        chain: &ChainId,
        rng: &mut SimRng,
        blocks: &mut Blocks,
    ) -> Vec<(usize, Packet)> {
        let me = self.me;
        let peers = (0..n).filter(move |to| *to != me);
        let all = |m: &SignedMessage| -> Vec<(usize, Packet)> {
            peers.clone().map(|to| (to, Packet::Message(m.clone()))).collect()
        };
        match self.role {
            Role::Honest | Role::Amnesiac => all(message),
            Role::Silent => Vec::new(),
            Role::Equivocator | Role::DoubleProposer => {
                let Some(other) = self.conflicting(message, chain, blocks) else {
                    return all(message);
                };
                let mut out = Vec::new();
                for to in peers {
                    // Some peers get one version, some the other, some both (and report it).
                    let pick = rng.below(3);
                    if pick != 1 {
                        out.push((to, Packet::Message(message.clone())));
                    }
                    if pick != 0 {
                        out.push((to, Packet::Message(other.clone())));
                    }
                }
                out
            }
            Role::Garbage => {
                let mut out: Vec<(usize, Packet)> = all(message);
                for to in peers {
                    if rng.chance(30) {
                        out.push((to, self.garbage(message, n, chain, rng)));
                    }
                }
                out
            }
            Role::StaleReplayer => {
                let mut out: Vec<(usize, Packet)> = all(message);
                for _ in 0..rng.range(0, 3) {
                    if self.pool.is_empty() {
                        break;
                    }
                    let old = self.pool[rng.index(self.pool.len())].clone();
                    let to = rng.index(n);
                    if to != self.me {
                        out.push((to, Packet::Message(old)));
                    }
                }
                out
            }
        }
    }

    /// The equivocator's other vote, or the double proposer's other proposal.
    fn conflicting(
        &self,
        message: &SignedMessage,
        chain: &ChainId,
        blocks: &mut Blocks,
    ) -> Option<SignedMessage> {
        match (self.role, message) {
            (Role::Equivocator, SignedMessage::Vote(v)) => {
                let bogus = bogus_block(v.vote.height, v.vote.round, self.me);
                let other = if v.vote.block_hash.is_some() { None } else { Some(bogus) };
                let vote = Vote { block_hash: other, ..v.vote.clone() };
                Some(SignedMessage::Vote(vote.sign(chain, &*self.signer)))
            }
            (Role::DoubleProposer, SignedMessage::Proposal(p)) => {
                let (h, r) = (p.proposal.height, p.proposal.round);
                let block = blocks.build(h, r, self.me, 1, true);
                let proposal =
                    Proposal { block_hash: block, pol_round: None, ..p.proposal.clone() };
                Some(SignedMessage::Proposal(proposal.sign(chain, &*self.signer)))
            }
            _ => None,
        }
    }

    /// One piece of garbage, modelled on `message` (its height and round).
    fn garbage(
        &self,
        message: &SignedMessage,
        n: usize,
        chain: &ChainId,
        rng: &mut SimRng,
    ) -> Packet {
        let (height, round) = (message.height(), message.round());
        let value = Some(BlockHash(tally_crypto::Hash::digest(&rng.next_u64().to_le_bytes())));
        let vote = |height: Height, round: Round, validator: usize| Vote {
            height,
            round,
            vote_type: if rng_bit(height, round) { VoteType::Prevote } else { VoteType::Precommit },
            block_hash: value,
            validator: ValidatorIndex(u32::try_from(validator).expect("n <= 10")),
        };
        match rng.below(5) {
            // Undecodable (or, rarely, decodable but unsigned) bytes.
            0 => {
                let len = rng.index(64);
                Packet::Bytes((0..len).map(|_| rng.next_u64() as u8).collect())
            }
            // A real message with one bit of its signature flipped.
            1 => {
                let mut bad = message.clone();
                match &mut bad {
                    SignedMessage::Vote(v) => v.signature.0[rng.index(64)] ^= 1,
                    SignedMessage::Proposal(p) => p.signature.0[rng.index(64)] ^= 1,
                }
                Packet::Message(bad)
            }
            // A vote from a non-validator, signed with the outsider's key, claiming to be
            // the outsider (unknown index) or an honest validator (bad signature).
            2 => {
                let claimed = if rng.chance(50) { n + rng.index(3) } else { rng.index(n) };
                let outsider = self.outsider.as_deref().unwrap_or(&*self.signer);
                Packet::Message(SignedMessage::Vote(
                    vote(height, round, claimed).sign(chain, outsider),
                ))
            }
            // Validly self-signed, for a far-future height.
            3 => {
                let far = Height(height.0.saturating_add(rng.range(3, 1_000_000)));
                Packet::Message(SignedMessage::Vote(
                    vote(far, round, self.me).sign(chain, &*self.signer),
                ))
            }
            // Validly self-signed, for a round far beyond the window (never reached).
            _ => {
                let far = Round(round.0.saturating_add(1_000).saturating_add(
                    u32::try_from(rng.below(u64::from(u32::MAX))).expect("below u32::MAX"),
                ));
                Packet::Message(SignedMessage::Vote(
                    vote(height, far, self.me).sign(chain, &*self.signer),
                ))
            }
        }
    }
}

/// Prevote or precommit, from the message's coordinates (no extra draw).
fn rng_bit(height: Height, round: Round) -> bool {
    (height.0 ^ u64::from(round.0)) & 1 == 0
}
