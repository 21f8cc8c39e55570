//! Newtypes for the protocol's quantities: heights, rounds, validator indices, voting power
//! and block hashes. No bare `u64` where a height is meant.
//!
//! Every type is borsh-encoded as its fixed-width integer (little endian) or its 32 bytes, and
//! serde-encoded transparently (a JSON number, or a hex string for [`BlockHash`]).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;
use tally_crypto::Hash;

/// A block height. Height 0 is the genesis state; the first block is height 1.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
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
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    /// The next height. Panics on overflow, which 2^64 blocks never reach.
    pub fn next(self) -> Height {
        Height(self.0.checked_add(1).expect("height overflow: 2^64 blocks are never reached"))
    }

    /// The previous height, or `None` at height 0.
    pub fn prev(self) -> Option<Height> {
        self.0.checked_sub(1).map(Height)
    }
}

/// A round within a height; round 0 is the first.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
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
#[serde(transparent)]
pub struct Round(pub u32);

impl Round {
    /// The next round, saturating: `u32::MAX` rounds take longer than the universe's age at
    /// any timeout, so saturation only guards against a Byzantine round number.
    pub fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

/// A validator's position in its [`crate::ValidatorSet`] (0-based).
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
#[serde(transparent)]
pub struct ValidatorIndex(pub u32);

impl ValidatorIndex {
    /// The index as a `usize`, for indexing a `Vec` (u32 always fits on tally's targets).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).expect("u32 fits in usize on 32- and 64-bit targets")
    }
}

/// Voting power of a validator, or a sum of them.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
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
#[serde(transparent)]
pub struct VotingPower(pub u64);

/// The hash of a block, id(v) in the paper: all consensus ever sees of a block.
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
#[serde(transparent)]
pub struct BlockHash(pub Hash);

impl BlockHash {
    pub fn as_hash(&self) -> &Hash {
        &self.0
    }
}

impl From<Hash> for BlockHash {
    fn from(h: Hash) -> BlockHash {
        BlockHash(h)
    }
}

/// The two kinds of vote. Borsh encodes them as 0 and 1.
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
pub enum VoteType {
    Prevote,
    Precommit,
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for ValidatorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for VotingPower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for VoteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteType::Prevote => "prevote",
            VoteType::Precommit => "precommit",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borsh_layouts_are_fixed_width_little_endian() {
        assert_eq!(borsh::to_vec(&Height(1)).unwrap(), 1u64.to_le_bytes().to_vec());
        assert_eq!(borsh::to_vec(&Round(2)).unwrap(), 2u32.to_le_bytes().to_vec());
        assert_eq!(borsh::to_vec(&VoteType::Precommit).unwrap(), vec![1]);
        assert_eq!(borsh::to_vec(&BlockHash(Hash::ZERO)).unwrap(), vec![0; 32]);
    }

    #[test]
    fn serde_is_transparent() {
        assert_eq!(serde_json_value(&Height(7)), "7");
        assert_eq!(serde_json_value(&VoteType::Prevote), "\"prevote\"");
        let h = BlockHash(Hash::digest(b"x"));
        assert_eq!(serde_json_value(&h), format!("\"{}\"", h));
    }

    #[test]
    fn height_next_and_prev() {
        assert_eq!(Height(1).next(), Height(2));
        assert_eq!(Height(0).prev(), None);
        assert_eq!(Round(u32::MAX).next(), Round(u32::MAX));
    }

    fn serde_json_value<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }
}
