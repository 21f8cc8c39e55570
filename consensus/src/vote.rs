//! Votes (prevotes and precommits), their signing bytes and their verification.
//!
//! A vote's signature covers `signing_bytes(Domain::Prevote | Domain::Precommit, chain_id,
//! borsh(vote))`: the domain tag already says the vote's type, and the borsh encoding repeats
//! it, so a prevote can never be replayed as a precommit.

use crate::signer::Signer;
use crate::types::{BlockHash, Height, Round, ValidatorIndex, VoteType};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tally_crypto::{signing_bytes, ChainId, Domain, Signature, SignedItem, Verifier, VerifyError};

/// `<PREVOTE|PRECOMMIT, h, round, id(v)>` of the paper, from `validator`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Vote {
    pub height: Height,
    pub round: Round,
    pub vote_type: VoteType,
    /// `None` is a vote for nil.
    pub block_hash: Option<BlockHash>,
    pub validator: ValidatorIndex,
}

/// A vote with its signer's signature over [`Vote::signing_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub signature: Signature,
}

/// Why a signed vote is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("vote from validator {validator}, but the set has only {validators_len} validators")]
    UnknownValidator { validator: ValidatorIndex, validators_len: u32 },
    #[error("bad signature on the vote of validator {validator}: {source}")]
    BadSignature { validator: ValidatorIndex, source: VerifyError },
}

impl VoteType {
    /// The signing domain of a vote of this type.
    pub fn domain(self) -> Domain {
        match self {
            VoteType::Prevote => Domain::Prevote,
            VoteType::Precommit => Domain::Precommit,
        }
    }
}

impl Vote {
    /// The exact bytes the validator signs.
    pub fn signing_bytes(&self, chain_id: &ChainId) -> Vec<u8> {
        let payload = borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail");
        signing_bytes(self.vote_type.domain(), chain_id, &payload)
    }

    /// Signs the vote. The caller makes sure `signer` is validator `self.validator`.
    pub fn sign(self, chain_id: &ChainId, signer: &dyn Signer) -> SignedVote {
        let signature = signer.sign(&self.signing_bytes(chain_id));
        SignedVote { vote: self, signature }
    }
}

impl SignedVote {
    /// Checks that the voter is in `validators` and that the signature is its signature.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        validators: &ValidatorSet,
        verifier: &Verifier,
    ) -> Result<(), VoteError> {
        let validator = self.vote.validator;
        let Some(entry) = validators.get(validator) else {
            return Err(VoteError::UnknownValidator {
                validator,
                validators_len: validators.len_u32(),
            });
        };
        let message = self.vote.signing_bytes(chain_id);
        let item =
            SignedItem { key: &entry.public_key, message: &message, signature: &self.signature };
        verifier.verify(item).map_err(|source| VoteError::BadSignature { validator, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VotingPower;
    use crate::validators::Validator;
    use tally_crypto::{Hash, Keypair, VerifierConfig};

    fn setup() -> (ChainId, Vec<Keypair>, ValidatorSet, Verifier) {
        let chain = ChainId::new("test").unwrap();
        let keys: Vec<Keypair> =
            (0..4).map(|i| Keypair::derive_insecure(&format!("v{i}"))).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator { public_key: k.public(), voting_power: VotingPower(1) })
                .collect(),
        )
        .unwrap();
        (chain, keys, set, Verifier::new(VerifierConfig::default()))
    }

    fn vote(vote_type: VoteType, validator: u32) -> Vote {
        Vote {
            height: Height(1),
            round: Round(0),
            vote_type,
            block_hash: Some(BlockHash(Hash::digest(b"b"))),
            validator: ValidatorIndex(validator),
        }
    }

    #[test]
    fn signed_vote_verifies_and_tampering_is_caught() {
        let (chain, keys, set, verifier) = setup();
        let signed = vote(VoteType::Prevote, 2).sign(&chain, &keys[2]);
        assert_eq!(signed.verify(&chain, &set, &verifier), Ok(()));

        let mut as_precommit = signed.clone();
        as_precommit.vote.vote_type = VoteType::Precommit;
        assert!(matches!(
            as_precommit.verify(&chain, &set, &verifier),
            Err(VoteError::BadSignature { .. })
        ));

        let mut other_voter = signed.clone();
        other_voter.vote.validator = ValidatorIndex(1);
        assert!(other_voter.verify(&chain, &set, &verifier).is_err());

        let mut unknown = signed;
        unknown.vote.validator = ValidatorIndex(4);
        assert_eq!(
            unknown.verify(&chain, &set, &verifier),
            Err(VoteError::UnknownValidator { validator: ValidatorIndex(4), validators_len: 4 })
        );
    }

    #[test]
    fn domain_follows_vote_type() {
        let chain = ChainId::new("test").unwrap();
        let bytes = vote(VoteType::Precommit, 0).signing_bytes(&chain);
        assert!(bytes.starts_with(Domain::Precommit.tag()));
    }
}
