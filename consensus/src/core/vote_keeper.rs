//! The votes of one height: counted once per (round, type, validator), tallied by value, and
//! the highest round each validator has been heard from (for the round skip, L55).
//!
//! Rules:
//! - The first vote of a validator for (round, type) is its vote: it goes into certificates
//!   and counts once towards "2f+1 of any kind" (L34, L47). The same vote again is a
//!   duplicate (gossip does that); one for another value is equivocation evidence.
//! - A conflicting vote also counts for its own value, like the paper's "2f+1 <PREVOTE, h,
//!   r, id(v)>", which counts every message received: a Byzantine validator that sent X to
//!   some and Y to others is then counted for X and for Y by whoever received both. Counting
//!   it only for its first value (as this keeper first did) loses liveness when honest
//!   validators are exactly a quorum: a polka for X seen by some, built with the Byzantine
//!   X vote, can never be seen by those who got its Y vote first, so no later proposal
//!   carrying X's POL round is ever accepted by them (found by the simulator, seed 292).
//!   Safety is unchanged: two quorums still overlap in more than 1/3 of the power, so in an
//!   honest validator, whatever the Byzantine ones are counted for. At most
//!   [`CONFLICTS_MAX`] conflicting votes per validator and (round, type) are kept (later
//!   ones are reported, not counted), so a validator signing many values cannot grow memory.
//! - Rounds are kept from 0 to `current round + rounds_ahead_max`; a vote beyond that window
//!   is not stored but still raises its sender's highest round, so a validator that fell far
//!   behind in rounds can still skip ahead. The window bounds memory: at most
//!   `validators * 2` votes per round.
//! - Everything is pruned at once when the height ends (the core builds a new keeper).

use crate::evidence::Evidence;
use crate::types::{BlockHash, Round, ValidatorIndex, VoteType, VotingPower};
use crate::validators::ValidatorSet;
use crate::vote::SignedVote;
use std::collections::BTreeMap;

/// Most conflicting votes kept and counted per validator and (round, type), besides its first.
pub const CONFLICTS_MAX: usize = 3;

/// What adding a vote did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddVote {
    /// First vote of this validator for (round, type): counted.
    Counted,
    /// The same vote again: ignored.
    Duplicate,
    /// A different vote for the same (round, type): not counted, reported.
    Equivocation(Evidence),
}

/// The votes of one type in one round.
#[derive(Clone, Debug, Default)]
pub struct VoteTally {
    /// The first vote of each validator.
    votes: BTreeMap<ValidatorIndex, SignedVote>,
    /// Further votes of a validator, each for a value different from all its others; at
    /// most CONFLICTS_MAX per validator.
    conflicts: BTreeMap<ValidatorIndex, Vec<SignedVote>>,
    /// Power per voted value (`None` = nil): each validator counted once for each value it
    /// voted for (in `votes` or `conflicts`).
    by_value: BTreeMap<Option<BlockHash>, VotingPower>,
    /// Power of the validators that voted, each counted once whatever the value.
    total: VotingPower,
}

impl VoteTally {
    pub fn power_for(&self, value: Option<BlockHash>) -> VotingPower {
        self.by_value.get(&value).copied().unwrap_or_default()
    }

    pub fn total(&self) -> VotingPower {
        self.total
    }

    pub fn get(&self, validator: ValidatorIndex) -> Option<&SignedVote> {
        self.votes.get(&validator)
    }

    /// The first vote of each validator.
    pub fn votes(&self) -> impl Iterator<Item = &SignedVote> + '_ {
        self.votes.values()
    }

    /// Every stored vote for `value`, first or conflicting (one per validator).
    pub fn votes_for(&self, value: Option<BlockHash>) -> impl Iterator<Item = &SignedVote> + '_ {
        self.votes
            .values()
            .chain(self.conflicts.values().flatten())
            .filter(move |v| v.vote.block_hash == value)
    }

    /// Power per voted value (`None` = nil), in value order.
    pub fn values(&self) -> impl Iterator<Item = (Option<BlockHash>, VotingPower)> + '_ {
        self.by_value.iter().map(|(value, power)| (*value, *power))
    }

    /// The non-nil value with more than 2/3 of the power, if any (the rules use
    /// `Core::quorum_value`, which a testing bug can bend).
    #[cfg(test)]
    pub fn quorum_value(&self, validators: &ValidatorSet) -> Option<BlockHash> {
        self.by_value
            .iter()
            .find(|(value, power)| value.is_some() && validators.has_quorum(**power))
            .and_then(|(value, _)| *value)
    }

    fn add(&mut self, vote: SignedVote, power: VotingPower) -> AddVote {
        let validator = vote.vote.validator;
        if let Some(first) = self.votes.get(&validator) {
            // Equal contents are the same vote, even under another signature.
            let others = self.conflicts.get(&validator).map_or(&[][..], |c| c.as_slice());
            if first.vote == vote.vote || others.iter().any(|o| o.vote == vote.vote) {
                return AddVote::Duplicate;
            }
            let evidence = Evidence::DuplicateVote { first: first.clone(), second: vote.clone() };
            let others = self.conflicts.entry(validator).or_default();
            if others.len() < CONFLICTS_MAX {
                // Cannot overflow: each validator adds its power at most once per value.
                self.by_value.entry(vote.vote.block_hash).or_default().0 += power.0;
                others.push(vote);
            }
            return AddVote::Equivocation(evidence);
        }
        let entry = self.by_value.entry(vote.vote.block_hash).or_default();
        // Cannot overflow: sums of distinct validators' powers stay below the set's total.
        entry.0 += power.0;
        self.total.0 += power.0;
        self.votes.insert(validator, vote);
        AddVote::Counted
    }

    /// Recomputes the tallies from the votes; `Err` names the first mismatch. Runs after
    /// every step in tests and the simulator, so it avoids allocating more than one small
    /// vector (a tally holds a handful of values).
    fn check(&self, validators: &ValidatorSet) -> Result<(), String> {
        let mut recount: Vec<(Option<BlockHash>, u64)> = Vec::with_capacity(self.by_value.len());
        let mut total = 0u64;
        for (validator, vote) in &self.votes {
            let power = validators.power_of(*validator).0;
            total += power;
            let others = self.conflicts.get(validator).map_or(&[][..], |c| c.as_slice());
            if others.len() > CONFLICTS_MAX {
                return Err(format!("{} conflicting votes of {validator}", others.len()));
            }
            for (k, v) in std::iter::once(vote).chain(others).enumerate() {
                let repeated = std::iter::once(vote)
                    .chain(others)
                    .take(k)
                    .any(|w| w.vote.block_hash == v.vote.block_hash);
                if v.vote.validator != *validator || repeated {
                    return Err(format!("vote {:?} filed under {validator} twice", v.vote));
                }
                match recount.iter_mut().find(|(value, _)| *value == v.vote.block_hash) {
                    Some(entry) => entry.1 += power,
                    None => recount.push((v.vote.block_hash, power)),
                }
            }
        }
        if self.conflicts.keys().any(|v| !self.votes.contains_key(v)) {
            return Err("conflicting votes without a first vote".to_string());
        }
        let matches = recount.len() == self.by_value.len()
            && recount.iter().all(|(value, power)| self.power_for(*value).0 == *power);
        if !matches || total != self.total.0 {
            return Err("vote tally does not match the counted votes".to_string());
        }
        Ok(())
    }
}

/// Prevotes and precommits of one round.
#[derive(Clone, Debug, Default)]
pub struct RoundVotes {
    pub prevotes: VoteTally,
    pub precommits: VoteTally,
}

impl RoundVotes {
    pub fn tally(&self, vote_type: VoteType) -> &VoteTally {
        match vote_type {
            VoteType::Prevote => &self.prevotes,
            VoteType::Precommit => &self.precommits,
        }
    }

    fn tally_mut(&mut self, vote_type: VoteType) -> &mut VoteTally {
        match vote_type {
            VoteType::Prevote => &mut self.prevotes,
            VoteType::Precommit => &mut self.precommits,
        }
    }
}

/// All votes of the current height.
#[derive(Clone, Debug, Default)]
pub struct VoteKeeper {
    /// Rounds 0 ..= current + rounds_ahead_max that have votes.
    rounds: BTreeMap<Round, RoundVotes>,
    /// The highest round each validator sent a vote or proposal for, at this height.
    highest_round: BTreeMap<ValidatorIndex, Round>,
    /// An empty tally, returned for rounds without votes.
    empty: VoteTally,
}

impl VoteKeeper {
    /// Counts `vote` (its validator is in `validators`, its height is current); the caller
    /// has checked that its round is inside the window.
    pub fn add(&mut self, vote: SignedVote, validators: &ValidatorSet) -> AddVote {
        let power = validators.power_of(vote.vote.validator);
        self.note_round(vote.vote.validator, vote.vote.round);
        let round = self.rounds.entry(vote.vote.round).or_default();
        round.tally_mut(vote.vote.vote_type).add(vote, power)
    }

    /// Records that `validator` sent something for `round` (a vote beyond the window, or a
    /// proposal), for the round skip.
    pub fn note_round(&mut self, validator: ValidatorIndex, round: Round) {
        let highest = self.highest_round.entry(validator).or_insert(round);
        *highest = (*highest).max(round);
    }

    pub fn tally(&self, round: Round, vote_type: VoteType) -> &VoteTally {
        self.rounds.get(&round).map_or(&self.empty, |r| r.tally(vote_type))
    }

    /// Rounds that have votes, in increasing order.
    pub fn rounds(&self) -> impl Iterator<Item = (Round, &RoundVotes)> + '_ {
        self.rounds.iter().map(|(r, v)| (*r, v))
    }

    /// The highest round r above `current` such that validators holding more than 1/3 of the
    /// power have sent messages for rounds >= r (L55). At least one of them is honest, so an
    /// honest validator has reached r: skipping there never outruns every honest validator.
    pub fn skip_round(&self, current: Round, validators: &ValidatorSet) -> Option<Round> {
        let mut ahead: Vec<(Round, VotingPower)> = self
            .highest_round
            .iter()
            .filter(|(_, round)| **round > current)
            .map(|(v, round)| (*round, validators.power_of(*v)))
            .collect();
        ahead.sort_by_key(|(round, _)| std::cmp::Reverse(*round));
        let mut power = VotingPower(0);
        for (round, p) in ahead {
            power.0 += p.0;
            if validators.has_f_plus_one(power) {
                return Some(round);
            }
        }
        None
    }

    /// Every tally matches its votes, and each vote is filed under its own round and type.
    pub fn check(&self, validators: &ValidatorSet) -> Result<(), String> {
        for (round, votes) in &self.rounds {
            for vote_type in [VoteType::Prevote, VoteType::Precommit] {
                let tally = votes.tally(vote_type);
                if let Some(v) =
                    tally.votes().find(|v| v.vote.round != *round || v.vote.vote_type != vote_type)
                {
                    return Err(format!("vote {:?} filed under round {round} {vote_type}", v.vote));
                }
                tally.check(validators)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Height, VotingPower};
    use crate::validators::Validator;
    use crate::vote::Vote;
    use tally_crypto::{Keypair, Signature};

    fn set(powers: &[u64]) -> ValidatorSet {
        let validators = powers
            .iter()
            .enumerate()
            .map(|(i, p)| Validator {
                public_key: Keypair::derive_insecure(&i.to_string()).public(),
                voting_power: VotingPower(*p),
            })
            .collect();
        ValidatorSet::new(validators).unwrap()
    }

    fn prevote(validator: u32, round: u32, value: Option<BlockHash>) -> SignedVote {
        let vote = Vote {
            height: Height(1),
            round: Round(round),
            vote_type: VoteType::Prevote,
            block_hash: value,
            validator: ValidatorIndex(validator),
        };
        SignedVote { vote, signature: Signature([validator as u8; 64]) }
    }

    #[test]
    fn skip_round_weighs_power_and_takes_the_highest_round_reached() {
        let validators = set(&[5, 1, 1, 1]);
        let mut keeper = VoteKeeper::default();
        keeper.note_round(ValidatorIndex(1), Round(9));
        keeper.note_round(ValidatorIndex(2), Round(7));
        // 2 of 8 is not more than 1/3.
        assert_eq!(keeper.skip_round(Round(0), &validators), None);
        keeper.note_round(ValidatorIndex(3), Round(3));
        // 3 of 8 is: validators 1, 2, 3 have all reached round 3 or more.
        assert_eq!(keeper.skip_round(Round(0), &validators), Some(Round(3)));
        assert_eq!(keeper.skip_round(Round(3), &validators), None);
        keeper.note_round(ValidatorIndex(0), Round(4));
        // Validator 0 alone holds 5 of 8.
        assert_eq!(keeper.skip_round(Round(3), &validators), Some(Round(4)));
    }

    #[test]
    fn conflicting_votes_count_for_their_value_but_once_in_total() {
        let validators = set(&[2, 1, 1]);
        let a = Some(BlockHash(tally_crypto::Hash::digest(b"a")));
        let mut keeper = VoteKeeper::default();
        assert_eq!(keeper.add(prevote(0, 0, a), &validators), AddVote::Counted);
        assert_eq!(keeper.add(prevote(0, 0, a), &validators), AddVote::Duplicate);
        assert!(matches!(keeper.add(prevote(0, 0, None), &validators), AddVote::Equivocation(_)));
        assert_eq!(keeper.add(prevote(1, 0, None), &validators), AddVote::Counted);
        let tally = keeper.tally(Round(0), VoteType::Prevote);
        assert_eq!(
            (tally.power_for(a), tally.power_for(None), tally.total()),
            (VotingPower(2), VotingPower(3), VotingPower(3)),
            "validator 0 counts for a and for nil, once in the total"
        );
        assert_eq!(tally.quorum_value(&validators), None, "2 of 4 is no quorum");
        assert_eq!(keeper.add(prevote(0, 0, None), &validators), AddVote::Duplicate);
        assert_eq!(keeper.tally(Round(0), VoteType::Prevote).votes_for(None).count(), 2);
        assert_eq!(keeper.add(prevote(2, 0, a), &validators), AddVote::Counted);
        assert_eq!(keeper.tally(Round(0), VoteType::Prevote).quorum_value(&validators), a);
        keeper.check(&validators).unwrap();
    }
}
