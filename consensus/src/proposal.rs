//! Proposals, their signing bytes and their verification.
//!
//! A proposal carries the block's hash only; the block itself travels beside it and the node
//! checks that it hashes to `block_hash` before telling the core the value is valid.

use crate::signer::Signer;
use crate::types::{BlockHash, Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tally_crypto::{signing_bytes, ChainId, Domain, Signature, SignedItem, Verifier, VerifyError};

/// `<PROPOSAL, h, round, v, vr>` of the paper, with `id(v)` in place of `v`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub block_hash: BlockHash,
    /// The paper's vr: the proposer's validRound, `None` for -1. When set it is below `round`.
    pub pol_round: Option<Round>,
    pub proposer: ValidatorIndex,
}

/// A proposal with its proposer's signature over [`Proposal::signing_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedProposal {
    pub proposal: Proposal,
    pub signature: Signature,
}

/// Why a signed proposal is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error(
        "proposal from validator {proposer}, but the set has only {validators_len} validators"
    )]
    UnknownValidator { proposer: ValidatorIndex, validators_len: u32 },
    #[error(
        "proposal for height {height} round {round} from {got}, but the proposer is {expected}"
    )]
    WrongProposer { height: Height, round: Round, expected: ValidatorIndex, got: ValidatorIndex },
    #[error("proposal for round {round} has pol_round {pol_round}, which is not below it")]
    PolRoundNotBelowRound { round: Round, pol_round: Round },
    #[error("bad signature on the proposal of validator {proposer}: {source}")]
    BadSignature { proposer: ValidatorIndex, source: VerifyError },
}

impl Proposal {
    /// The exact bytes the proposer signs.
    pub fn signing_bytes(&self, chain_id: &ChainId) -> Vec<u8> {
        let payload = borsh::to_vec(self).expect("borsh encoding into a Vec cannot fail");
        signing_bytes(Domain::Proposal, chain_id, &payload)
    }

    /// Signs the proposal. The caller makes sure `signer` is validator `self.proposer`.
    pub fn sign(self, chain_id: &ChainId, signer: &dyn Signer) -> SignedProposal {
        let signature = signer.sign(&self.signing_bytes(chain_id));
        SignedProposal { proposal: self, signature }
    }

    /// Checks the fields that need no key: pol_round below round.
    pub fn check_shape(&self) -> Result<(), ProposalError> {
        match self.pol_round {
            Some(pol_round) if pol_round >= self.round => {
                Err(ProposalError::PolRoundNotBelowRound { round: self.round, pol_round })
            }
            _ => Ok(()),
        }
    }
}

impl SignedProposal {
    /// Checks the shape, that the signer is `validators.proposer(height, round)`, and the
    /// signature (cheap checks first).
    pub fn verify(
        &self,
        chain_id: &ChainId,
        validators: &ValidatorSet,
        verifier: &Verifier,
    ) -> Result<(), ProposalError> {
        let p = &self.proposal;
        p.check_shape()?;
        let Some(entry) = validators.get(p.proposer) else {
            return Err(ProposalError::UnknownValidator {
                proposer: p.proposer,
                validators_len: validators.len_u32(),
            });
        };
        let expected = validators.proposer(p.height, p.round);
        if expected != p.proposer {
            return Err(ProposalError::WrongProposer {
                height: p.height,
                round: p.round,
                expected,
                got: p.proposer,
            });
        }
        let message = p.signing_bytes(chain_id);
        let item =
            SignedItem { key: &entry.public_key, message: &message, signature: &self.signature };
        verifier
            .verify(item)
            .map_err(|source| ProposalError::BadSignature { proposer: p.proposer, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VotingPower;
    use crate::validators::Validator;
    use tally_crypto::{Hash, Keypair, VerifierConfig};

    #[test]
    fn only_the_proposer_with_a_good_signature_passes() {
        let chain = ChainId::new("test").unwrap();
        let keys: Vec<Keypair> =
            (0..4).map(|i| Keypair::derive_insecure(&format!("v{i}"))).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator { public_key: k.public(), voting_power: VotingPower(1) })
                .collect(),
        )
        .unwrap();
        let verifier = Verifier::new(VerifierConfig::default());
        let (h, r) = (Height(3), Round(1));
        let proposer = set.proposer(h, r);
        let p = Proposal {
            height: h,
            round: r,
            block_hash: BlockHash(Hash::digest(b"block")),
            pol_round: None,
            proposer,
        };
        let signed = p.clone().sign(&chain, &keys[proposer.as_usize()]);
        assert_eq!(signed.verify(&chain, &set, &verifier), Ok(()));

        let other = ValidatorIndex((proposer.0 + 1) % 4);
        let mut wrong = p.clone();
        wrong.proposer = other;
        let wrong = wrong.sign(&chain, &keys[other.as_usize()]);
        assert!(matches!(
            wrong.verify(&chain, &set, &verifier),
            Err(ProposalError::WrongProposer { .. })
        ));

        let mut forged = signed.clone();
        forged.proposal.block_hash = BlockHash(Hash::digest(b"other"));
        assert!(matches!(
            forged.verify(&chain, &set, &verifier),
            Err(ProposalError::BadSignature { .. })
        ));

        let mut bad_pol = p;
        bad_pol.pol_round = Some(Round(1));
        let bad_pol = bad_pol.sign(&chain, &keys[proposer.as_usize()]);
        assert!(matches!(
            bad_pol.verify(&chain, &set, &verifier),
            Err(ProposalError::PolRoundNotBelowRound { .. })
        ));
    }
}
