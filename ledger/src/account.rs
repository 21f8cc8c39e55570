//! An account's state: what it holds and how many txs it has sent.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// An account. An account that was never credited nor listed in genesis reads as the default
/// (zero balance, nonce 0); it only enters the state tree and the store when a tx touches it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub balance: u64,
    /// The number of txs this account has sent, which is the nonce its next tx must carry.
    pub nonce: u64,
}

impl Account {
    /// Length of the borsh encoding: balance then nonce, u64 little endian each.
    pub const ENCODED_LEN: usize = 16;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_balance_then_nonce_little_endian() {
        let bytes = borsh::to_vec(&Account { balance: 1, nonce: 2 }).unwrap();
        assert_eq!(bytes.len(), Account::ENCODED_LEN);
        assert_eq!(&bytes[..8], &1u64.to_le_bytes());
        assert_eq!(&bytes[8..], &2u64.to_le_bytes());
    }
}
