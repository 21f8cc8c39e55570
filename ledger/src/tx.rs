//! Transactions: a signed transfer of balance from one account to another.
//!
//! The signed bytes are `signing_bytes(Domain::Tx, chain_id, borsh(transfer))`, so a tx signed
//! for one chain never verifies on another. A tx's identity ([`TxHash`]) is blake3 of its whole
//! borsh encoding, signature included: the encoding is canonical (fixed-width fields, no
//! trailing bytes accepted), so one tx has one hash.

use crate::codec::{decode_bounded, encode, DecodeError};
use crate::limits::TX_BYTES_MAX;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;
use tally_crypto::{signing_bytes, ChainId, Domain, Hash, Keypair, PublicKey, Signature};

/// blake3 of a tx's borsh encoding.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(transparent)]
pub struct TxHash(pub Hash);

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxHash({})", &self.0.to_hex()[..12])
    }
}

/// What the sender asks for: move `amount` from `from` to `to`. `nonce` is the number of txs
/// `from` has had included before this one, so each tx can be included at most once and a
/// sender's txs apply in order.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub from: PublicKey,
    pub to: PublicKey,
    pub amount: u64,
    pub nonce: u64,
}

/// A transfer and the sender's signature over it. JSON: the transfer's fields flattened,
/// then `signature`.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Tx {
    #[serde(flatten)]
    pub transfer: Transfer,
    pub signature: Signature,
}

/// A tx that is invalid whatever the state: checked before signatures or balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatelessError {
    #[error("amount is zero")]
    ZeroAmount,
    #[error("sender and recipient are the same account")]
    SelfTransfer,
}

impl Tx {
    /// Signs `transfer` with `keypair`. The tx only verifies if `keypair` is `transfer.from`.
    pub fn sign(transfer: Transfer, keypair: &Keypair, chain_id: &ChainId) -> Tx {
        let signature = keypair.sign(Domain::Tx, chain_id, &encode(&transfer));
        Tx { transfer, signature }
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self, chain_id: &ChainId) -> Vec<u8> {
        signing_bytes(Domain::Tx, chain_id, &encode(&self.transfer))
    }

    pub fn hash(&self) -> TxHash {
        TxHash(Hash::digest(&self.encode()))
    }

    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes untrusted bytes: at most [`TX_BYTES_MAX`] of them, no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Tx, DecodeError> {
        decode_bounded(bytes, TX_BYTES_MAX, "tx")
    }

    /// The checks that need neither state nor signature verification. The size limit is
    /// enforced by [`Tx::decode`] and, for the fixed-width encoding, at compile time.
    pub fn check_stateless(&self) -> Result<(), StatelessError> {
        if self.transfer.amount == 0 {
            return Err(StatelessError::ZeroAmount);
        }
        if self.transfer.from == self.transfer.to {
            return Err(StatelessError::SelfTransfer);
        }
        Ok(())
    }

    pub fn from(&self) -> &PublicKey {
        &self.transfer.from
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::TX_BYTES;

    fn chain() -> ChainId {
        ChainId::new("tally-test").unwrap()
    }

    fn sample() -> Tx {
        let alice = Keypair::derive_insecure("alice");
        let bob = Keypair::derive_insecure("bob");
        let transfer = Transfer { from: alice.public(), to: bob.public(), amount: 5, nonce: 0 };
        Tx::sign(transfer, &alice, &chain())
    }

    #[test]
    fn encoding_is_fixed_width_and_round_trips() {
        let tx = sample();
        let bytes = tx.encode();
        assert_eq!(bytes.len(), TX_BYTES);
        assert_eq!(Tx::decode(&bytes), Ok(tx));
    }

    #[test]
    fn signature_verifies_over_signing_bytes_only_on_its_chain() {
        let tx = sample();
        let ok = tally_crypto::verify(tx.from(), &tx.signing_bytes(&chain()), &tx.signature);
        assert_eq!(ok, Ok(()));
        let other = ChainId::new("other").unwrap();
        assert!(tally_crypto::verify(tx.from(), &tx.signing_bytes(&other), &tx.signature).is_err());
        let mut tampered = tx;
        tampered.transfer.amount = 6;
        let bytes = tampered.signing_bytes(&chain());
        assert!(tally_crypto::verify(tx.from(), &bytes, &tx.signature).is_err());
    }

    /// Pins the hash and the signature: changing either is a breaking change of the format.
    #[test]
    fn hash_and_signature_are_stable() {
        let tx = sample();
        assert_eq!(tx.hash(), sample().hash());
        assert_eq!(tx.hash().0, Hash::digest(&tx.encode()));
        let expected_prefix = {
            let mut v = tx.transfer.from.0.to_vec();
            v.extend_from_slice(&tx.transfer.to.0);
            v.extend_from_slice(&5u64.to_le_bytes());
            v.extend_from_slice(&0u64.to_le_bytes());
            v
        };
        assert_eq!(&tx.encode()[..80], &expected_prefix[..]);
        assert_eq!(&tx.encode()[80..], &tx.signature.0[..]);
        assert_eq!(tx.hash().0.to_hex(), STABLE_TX_HASH);
    }
    /// Signatures are deterministic (RFC 8032), so the hash, which covers the signature, pins
    /// the transfer's encoding, the signing bytes and the key derivation at once.
    const STABLE_TX_HASH: &str = "d11e5d9af31843f102aca89a99f6fe7b09a0b707644ef2eefe6097ecfdd914ff";

    #[test]
    fn decode_rejects_oversized_short_and_trailing_bytes() {
        let bytes = sample().encode();
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(Tx::decode(&long), Err(DecodeError::TrailingBytes { count: 1, .. })));
        assert!(matches!(Tx::decode(&bytes[..100]), Err(DecodeError::Malformed { .. })));
        let huge = vec![0u8; TX_BYTES_MAX + 1];
        assert!(matches!(Tx::decode(&huge), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn stateless_rules() {
        let mut tx = sample();
        assert_eq!(tx.check_stateless(), Ok(()));
        tx.transfer.amount = 0;
        assert_eq!(tx.check_stateless(), Err(StatelessError::ZeroAmount));
        tx.transfer.amount = 1;
        tx.transfer.to = tx.transfer.from;
        assert_eq!(tx.check_stateless(), Err(StatelessError::SelfTransfer));
    }

    #[test]
    fn json_is_flat_with_hex_keys() {
        let tx = sample();
        let json = serde_json::to_value(tx).unwrap();
        assert_eq!(json["from"], tx.transfer.from.to_hex());
        assert_eq!(json["amount"], 5);
        assert_eq!(json["signature"], tx.signature.to_hex());
        let back: Tx = serde_json::from_value(json).unwrap();
        assert_eq!(back, tx);
    }
}
