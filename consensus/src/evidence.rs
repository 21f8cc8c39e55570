//! Equivocation evidence: two different signed messages from one validator for the same
//! (height, round, step). The core reports it (`Output::Evidence`); the node stores and
//! gossips it. Both messages were verified before the core saw them, so evidence is
//! self-proving to anyone holding the validator set.

use crate::proposal::{ProposalError, SignedProposal};
use crate::types::{Height, Round, ValidatorIndex};
use crate::validators::ValidatorSet;
use crate::vote::{SignedVote, VoteError};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tally_crypto::{ChainId, Verifier};

/// Proof that a validator signed two conflicting messages.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub enum Evidence {
    /// Two votes of the same type for the same (height, round) that differ (in block hash).
    /// `first` is the one that was counted.
    DuplicateVote { first: SignedVote, second: SignedVote },
    /// Two different proposals from the proposer of (height, round). `first` is the one that
    /// counts.
    DuplicateProposal { first: SignedProposal, second: SignedProposal },
}

/// Why evidence does not prove an equivocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the two messages are not for the same validator, height, round and step")]
    NotTheSameSlot,
    #[error("the two messages are the same: nothing conflicts")]
    NoConflict,
    #[error("vote: {0}")]
    Vote(#[from] VoteError),
    #[error("proposal: {0}")]
    Proposal(#[from] ProposalError),
}

impl Evidence {
    /// Checks that the evidence proves an equivocation: two messages signed by the same
    /// validator of `validators` for the same (height, round, step) that differ. What it
    /// costs is two signature checks, after the cheap comparisons.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        validators: &ValidatorSet,
        verifier: &Verifier,
    ) -> Result<(), EvidenceError> {
        match self {
            Evidence::DuplicateVote { first, second } => {
                let (a, b) = (&first.vote, &second.vote);
                if (a.height, a.round, a.vote_type, a.validator)
                    != (b.height, b.round, b.vote_type, b.validator)
                {
                    return Err(EvidenceError::NotTheSameSlot);
                }
                if a.block_hash == b.block_hash {
                    return Err(EvidenceError::NoConflict);
                }
                first.verify(chain_id, validators, verifier)?;
                second.verify(chain_id, validators, verifier)?;
            }
            Evidence::DuplicateProposal { first, second } => {
                let (a, b) = (&first.proposal, &second.proposal);
                if (a.height, a.round, a.proposer) != (b.height, b.round, b.proposer) {
                    return Err(EvidenceError::NotTheSameSlot);
                }
                if a == b {
                    return Err(EvidenceError::NoConflict);
                }
                first.verify(chain_id, validators, verifier)?;
                second.verify(chain_id, validators, verifier)?;
            }
        }
        Ok(())
    }

    /// The validator that equivocated.
    pub fn offender(&self) -> ValidatorIndex {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.validator,
            Evidence::DuplicateProposal { first, .. } => first.proposal.proposer,
        }
    }

    pub fn height(&self) -> Height {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.height,
            Evidence::DuplicateProposal { first, .. } => first.proposal.height,
        }
    }

    pub fn round(&self) -> Round {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.round,
            Evidence::DuplicateProposal { first, .. } => first.proposal.round,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{BlockHash, VoteType, VotingPower};
    use crate::validators::Validator;
    use crate::vote::Vote;
    use tally_crypto::{Hash, Keypair, VerifierConfig};

    fn vote(key: &Keypair, chain: &ChainId, block: Option<&[u8]>) -> SignedVote {
        let v = Vote {
            height: Height(3),
            round: Round(1),
            vote_type: VoteType::Prevote,
            block_hash: block.map(|b| BlockHash(Hash::digest(b))),
            validator: ValidatorIndex(0),
        };
        v.sign(chain, key)
    }

    #[test]
    fn evidence_proves_two_signed_conflicting_votes_and_nothing_less() {
        let chain = ChainId::new("test").unwrap();
        let keys: Vec<Keypair> =
            (0..4).map(|i| Keypair::derive_insecure(&format!("e{i}"))).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator { public_key: k.public(), voting_power: VotingPower(1) })
                .collect(),
        )
        .unwrap();
        let verifier = Verifier::new(VerifierConfig::default());
        let check = |e: Evidence| e.verify(&chain, &set, &verifier);
        let (a, b) = (vote(&keys[0], &chain, Some(b"a")), vote(&keys[0], &chain, Some(b"b")));
        assert_eq!(check(Evidence::DuplicateVote { first: a.clone(), second: b.clone() }), Ok(()));
        let nil = vote(&keys[0], &chain, None);
        assert_eq!(check(Evidence::DuplicateVote { first: a.clone(), second: nil }), Ok(()));
        assert_eq!(
            check(Evidence::DuplicateVote { first: a.clone(), second: a.clone() }),
            Err(EvidenceError::NoConflict)
        );
        let mut later = b.clone();
        later.vote.round = Round(2);
        assert_eq!(
            check(Evidence::DuplicateVote { first: a.clone(), second: later }),
            Err(EvidenceError::NotTheSameSlot)
        );
        // Signed by another key than the validator's: the signature does not verify.
        let forged = vote(&keys[1], &chain, Some(b"c"));
        assert!(matches!(
            check(Evidence::DuplicateVote { first: a, second: forged }),
            Err(EvidenceError::Vote(_))
        ));
    }
}
