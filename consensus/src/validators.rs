//! The validator set: keys and voting power, the quorum thresholds and proposer selection.
//!
//! Thresholds use strict inequalities in u128: a quorum ("2f+1") is `power * 3 > total * 2`,
//! "f+1" is `power * 3 > total`.
//!
//! Proposer selection is a weighted round-robin that depends only on (height, round) and the
//! set, so every validator computes the same proposer without shared state. One period of the
//! schedule is precomputed: powers are divided by their gcd, each validator gets as many slots
//! as its reduced power, and slots are ordered by the midpoint of each validator's share
//! (`(2k + 1) / (2 * power)` for its k-th slot, ties by index), which spreads a validator's
//! turns evenly over the period (Webster's method). `proposer(h, r)` is slot `(h + r) mod
//! period`; with equal powers that is validator `(h + r) mod n`, so everyone proposes in turn.
//! Unlike CometBFT's priority scheme this keeps no state between heights, at the price of
//! rounding when the reduced powers sum to more than [`PROPOSER_SCHEDULE_MAX`].

use crate::limits::{PROPOSER_SCHEDULE_MAX, TOTAL_VOTING_POWER_MAX, VALIDATORS_MAX};
use crate::types::{Height, Round, ValidatorIndex, VotingPower};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use tally_crypto::{Hash, PublicKey};

/// One validator: its key and its voting power (> 0).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Validator {
    pub public_key: PublicKey,
    pub voting_power: VotingPower,
}

/// Why a list of validators is not a valid set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    #[error("a validator set must not be empty")]
    Empty,
    #[error("{count} validators, more than the maximum {max}")]
    TooMany { count: usize, max: usize },
    #[error("validator {index} has zero voting power")]
    ZeroPower { index: ValidatorIndex },
    #[error("validators {first} and {second} have the same public key {key}")]
    DuplicateKey { first: ValidatorIndex, second: ValidatorIndex, key: PublicKey },
    #[error("total voting power exceeds the maximum {max}")]
    TotalPowerTooHigh { max: u64 },
}

/// A checked, non-empty set of validators, in a fixed order (the index is the position).
///
/// Serialized (borsh and serde) as the plain list of validators; deserializing runs
/// [`ValidatorSet::new`], so a decoded set is always valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Validator>", into = "Vec<Validator>")]
pub struct ValidatorSet {
    /// 1 to VALIDATORS_MAX validators, distinct keys, power > 0.
    validators: Vec<Validator>,
    /// Sum of the powers, at most TOTAL_VOTING_POWER_MAX.
    total_power: VotingPower,
    /// Key to index, for the `validators` above.
    by_key: BTreeMap<PublicKey, ValidatorIndex>,
    /// One period of the proposer rotation; every validator appears at least once.
    schedule: Vec<ValidatorIndex>,
}

impl ValidatorSet {
    pub fn new(validators: Vec<Validator>) -> Result<ValidatorSet, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > VALIDATORS_MAX {
            return Err(ValidatorSetError::TooMany {
                count: validators.len(),
                max: VALIDATORS_MAX,
            });
        }
        let mut total: u64 = 0;
        let mut by_key = BTreeMap::new();
        for (i, v) in validators.iter().enumerate() {
            let index = ValidatorIndex(u32::try_from(i).expect("at most VALIDATORS_MAX entries"));
            if v.voting_power.0 == 0 {
                return Err(ValidatorSetError::ZeroPower { index });
            }
            total = total
                .checked_add(v.voting_power.0)
                .filter(|t| *t <= TOTAL_VOTING_POWER_MAX)
                .ok_or(ValidatorSetError::TotalPowerTooHigh { max: TOTAL_VOTING_POWER_MAX })?;
            if let Some(first) = by_key.insert(v.public_key, index) {
                return Err(ValidatorSetError::DuplicateKey {
                    first,
                    second: index,
                    key: v.public_key,
                });
            }
        }
        let powers: Vec<u64> = validators.iter().map(|v| v.voting_power.0).collect();
        let schedule = proposer_schedule(&powers);
        Ok(ValidatorSet { validators, total_power: VotingPower(total), by_key, schedule })
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// The number of validators as a u32 (at most [`VALIDATORS_MAX`]).
    pub fn len_u32(&self) -> u32 {
        u32::try_from(self.validators.len()).expect("at most VALIDATORS_MAX validators")
    }

    /// Always false: a set is never empty. Here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn get(&self, index: ValidatorIndex) -> Option<&Validator> {
        self.validators.get(index.as_usize())
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.by_key.get(key).copied()
    }

    /// The power of `index`, zero for an unknown index.
    pub fn power_of(&self, index: ValidatorIndex) -> VotingPower {
        self.get(index).map_or(VotingPower(0), |v| v.voting_power)
    }

    pub fn total_power(&self) -> VotingPower {
        self.total_power
    }

    /// The validators in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Validator> + '_ {
        self.validators.iter()
    }

    /// The validators with their indices, in index order.
    pub fn indexed(&self) -> impl Iterator<Item = (ValidatorIndex, &Validator)> + '_ {
        self.validators.iter().enumerate().map(|(i, v)| {
            (ValidatorIndex(u32::try_from(i).expect("at most VALIDATORS_MAX validators")), v)
        })
    }

    pub fn as_slice(&self) -> &[Validator] {
        &self.validators
    }

    /// The proposer of `(height, round)`: slot `(height + round) mod period` of the schedule.
    pub fn proposer(&self, height: Height, round: Round) -> ValidatorIndex {
        let period = self.schedule.len() as u128;
        let slot = (u128::from(height.0) + u128::from(round.0)) % period;
        self.schedule[usize::try_from(slot).expect("slot < schedule length, a usize")]
    }

    /// More than 2/3 of the total power: `power * 3 > total * 2`.
    pub fn has_quorum(&self, power: VotingPower) -> bool {
        u128::from(power.0) * 3 > u128::from(self.total_power.0) * 2
    }

    /// More than 1/3 of the total power: `power * 3 > total`.
    pub fn has_f_plus_one(&self, power: VotingPower) -> bool {
        u128::from(power.0) * 3 > u128::from(self.total_power.0)
    }

    /// blake3 of the borsh encoding (`tally/validators/v1` domain), for headers and genesis.
    pub fn hash(&self) -> Hash {
        let bytes = borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail");
        Hash::digest_parts(&[b"tally/validators/v1", &bytes])
    }
}

impl TryFrom<Vec<Validator>> for ValidatorSet {
    type Error = ValidatorSetError;
    fn try_from(validators: Vec<Validator>) -> Result<Self, Self::Error> {
        ValidatorSet::new(validators)
    }
}

impl From<ValidatorSet> for Vec<Validator> {
    fn from(set: ValidatorSet) -> Vec<Validator> {
        set.validators
    }
}

impl BorshSerialize for ValidatorSet {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.validators, writer)
    }
}

impl BorshDeserialize for ValidatorSet {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let validators = Vec::<Validator>::deserialize_reader(reader)?;
        ValidatorSet::new(validators)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// A validator's next slot in the schedule, keyed by the midpoint `(2k + 1) / (2 * weight)`.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// 2k + 1 for the k-th slot of this validator.
    numerator: u64,
    /// 2 * weight.
    denominator: u64,
    index: u32,
}

impl Slot {
    fn key_cmp(&self, other: &Slot) -> Ordering {
        let lhs = u128::from(self.numerator) * u128::from(other.denominator);
        let rhs = u128::from(other.numerator) * u128::from(self.denominator);
        lhs.cmp(&rhs).then(self.index.cmp(&other.index))
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.key_cmp(other) == Ordering::Equal
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Slot) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, other: &Slot) -> Ordering {
        self.key_cmp(other)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Slot weights: powers over their gcd, scaled down (each at least 1) when they sum to more
/// than [`PROPOSER_SCHEDULE_MAX`].
fn slot_weights(powers: &[u64]) -> Vec<u64> {
    let g = powers.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<u64> = powers.iter().map(|p| p / g).collect();
    let sum: u128 = reduced.iter().map(|w| u128::from(*w)).sum();
    if sum <= u128::from(PROPOSER_SCHEDULE_MAX) {
        return reduced;
    }
    let cap = u128::from(PROPOSER_SCHEDULE_MAX);
    reduced
        .iter()
        .map(|w| {
            let scaled = u128::from(*w) * cap / sum;
            u64::try_from(scaled).expect("scaled weight <= PROPOSER_SCHEDULE_MAX").max(1)
        })
        .collect()
}

/// One period of the proposer rotation (see the module docs). `powers` is non-empty, > 0.
fn proposer_schedule(powers: &[u64]) -> Vec<ValidatorIndex> {
    let weights = slot_weights(powers);
    let period: u64 = weights.iter().sum();
    let mut heap: BinaryHeap<Reverse<Slot>> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let index = u32::try_from(i).expect("at most VALIDATORS_MAX validators");
            Reverse(Slot { numerator: 1, denominator: 2 * w, index })
        })
        .collect();
    let mut schedule = Vec::with_capacity(usize::try_from(period).expect("period is small"));
    let mut remaining = weights.clone();
    while let Some(Reverse(slot)) = heap.pop() {
        schedule.push(ValidatorIndex(slot.index));
        let left = &mut remaining[slot.index as usize];
        *left -= 1;
        if *left > 0 {
            heap.push(Reverse(Slot { numerator: slot.numerator + 2, ..slot }));
        }
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_crypto::Keypair;

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    public_key: Keypair::derive_insecure(&format!("v{i}")).public(),
                    voting_power: VotingPower(*p),
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn equal_power_rotates_through_everyone() {
        let s = set(&[10, 10, 10, 10]);
        for h in 0..20u64 {
            for r in 0..5u32 {
                let expected = ((h + u64::from(r)) % 4) as u32;
                assert_eq!(s.proposer(Height(h), Round(r)), ValidatorIndex(expected));
            }
        }
    }

    #[test]
    fn weighted_schedule_is_proportional_and_spread() {
        let s = set(&[3, 1]);
        let seq: Vec<u32> = (0..4).map(|h| s.proposer(Height(h), Round(0)).0).collect();
        assert_eq!(seq, vec![0, 0, 1, 0]);
        let s = set(&[5, 3, 2]);
        let mut counts = [0u32; 3];
        for h in 0..100 {
            counts[s.proposer(Height(h), Round(0)).as_usize()] += 1;
        }
        assert_eq!(counts, [50, 30, 20]);
    }

    #[test]
    fn huge_powers_are_scaled_but_everyone_proposes() {
        let s = set(&[TOTAL_VOTING_POWER_MAX - 10, 7, 3]);
        assert!(s.schedule.len() as u64 <= PROPOSER_SCHEDULE_MAX + 3);
        for i in 0..3 {
            assert!(s.schedule.contains(&ValidatorIndex(i)));
        }
    }

    #[test]
    fn thresholds_are_strict() {
        let s = set(&[1, 1, 1, 1]);
        assert!(!s.has_quorum(VotingPower(2)));
        assert!(s.has_quorum(VotingPower(3)));
        assert!(!s.has_f_plus_one(VotingPower(1)));
        assert!(s.has_f_plus_one(VotingPower(2)));
        let s = set(&[1, 1, 1]);
        assert!(!s.has_quorum(VotingPower(2)));
        assert!(s.has_quorum(VotingPower(3)));
        assert!(s.has_f_plus_one(VotingPower(2)));
        assert!(!s.has_f_plus_one(VotingPower(1)));
    }

    #[test]
    fn construction_errors() {
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
        let k = Keypair::derive_insecure("a").public();
        let v = |p| Validator { public_key: k, voting_power: VotingPower(p) };
        assert_eq!(
            ValidatorSet::new(vec![v(0)]),
            Err(ValidatorSetError::ZeroPower { index: ValidatorIndex(0) })
        );
        assert!(matches!(
            ValidatorSet::new(vec![v(1), v(1)]),
            Err(ValidatorSetError::DuplicateKey { .. })
        ));
        assert!(matches!(
            ValidatorSet::new(vec![v(TOTAL_VOTING_POWER_MAX + 1)]),
            Err(ValidatorSetError::TotalPowerTooHigh { .. })
        ));
        let many: Vec<Validator> = (0..=VALIDATORS_MAX)
            .map(|i| Validator {
                public_key: PublicKey((i as u64).to_le_bytes().repeat(4).try_into().unwrap()),
                voting_power: VotingPower(1),
            })
            .collect();
        assert!(matches!(ValidatorSet::new(many), Err(ValidatorSetError::TooMany { .. })));
    }

    #[test]
    fn serialization_round_trips_and_validates() {
        let s = set(&[1, 2, 3]);
        let bytes = borsh::to_vec(&s).unwrap();
        assert_eq!(borsh::from_slice::<ValidatorSet>(&bytes).unwrap(), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ValidatorSet>(&json).unwrap(), s);
        let empty = borsh::to_vec(&Vec::<Validator>::new()).unwrap();
        assert!(borsh::from_slice::<ValidatorSet>(&empty).is_err());
        assert_eq!(
            s.index_of(&s.get(ValidatorIndex(2)).unwrap().public_key),
            Some(ValidatorIndex(2))
        );
    }
}
