//! Commit certificates: the precommits of more than 2/3 of the voting power for one block at
//! one (height, round), which prove the block committed (L49) to anyone holding the validator
//! set, offline.
//!
//! Only the signatures are stored: every precommit in a certificate is the same vote but for
//! its validator index, so the signed bytes are rebuilt from (height, round, block_hash,
//! validator). Signatures are sorted by validator index and unique, so a certificate has one
//! canonical encoding and duplicates are caught in one pass.

use crate::limits::CERTIFICATE_SIGNATURES_MAX;
use crate::types::{BlockHash, Height, Round, ValidatorIndex, VoteType, VotingPower};
use crate::validators::ValidatorSet;
use crate::vote::{SignedVote, Vote};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use tally_crypto::{ChainId, Signature, SignedItem, Verifier, VerifyError};

/// One validator's precommit signature in a certificate.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitSig {
    pub validator: ValidatorIndex,
    pub signature: Signature,
}

/// Precommits for `Some(block_hash)` at (height, round) by validators holding > 2/3 power.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub height: Height,
    pub round: Round,
    pub block_hash: BlockHash,
    /// Strictly increasing by validator index (sorted, no duplicates).
    pub signatures: Vec<CommitSig>,
}

/// Why a certificate does not prove a commit. Checked in this order: structure, power,
/// signatures, so that a malformed certificate costs no signature verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("{count} signatures, more than the maximum {max}")]
    TooManySignatures { count: usize, max: usize },
    #[error("signature {position} (validator {validator}) is out of order")]
    NotSorted { position: usize, validator: ValidatorIndex },
    #[error("validator {validator} signed twice")]
    DuplicateValidator { validator: ValidatorIndex },
    #[error("validator {validator} is not in the set of {validators_len}")]
    UnknownValidator { validator: ValidatorIndex, validators_len: u32 },
    #[error("signed power {signed} of {total} is not more than 2/3")]
    InsufficientPower { signed: VotingPower, total: VotingPower },
    #[error("bad precommit signature from validator {validator}: {source}")]
    BadSignature { validator: ValidatorIndex, source: VerifyError },
}

impl CommitCertificate {
    /// Builds a certificate from precommits for `Some(block_hash)` at (height, round); the
    /// caller passes only such precommits. Sorts and drops repeated validators.
    pub fn from_precommits<'a>(
        height: Height,
        round: Round,
        block_hash: BlockHash,
        precommits: impl IntoIterator<Item = &'a SignedVote>,
    ) -> CommitCertificate {
        let mut signatures: Vec<CommitSig> = precommits
            .into_iter()
            .map(|sv| CommitSig { validator: sv.vote.validator, signature: sv.signature })
            .collect();
        signatures.sort_by_key(|s| s.validator);
        signatures.dedup_by_key(|s| s.validator);
        CommitCertificate { height, round, block_hash, signatures }
    }

    /// The precommit that `validator` signed, as a vote.
    pub fn precommit(&self, validator: ValidatorIndex) -> Vote {
        Vote {
            height: self.height,
            round: self.round,
            vote_type: VoteType::Precommit,
            block_hash: Some(self.block_hash),
            validator,
        }
    }

    /// Every signature as a full signed precommit (to feed a core, or to store as votes).
    pub fn signed_precommits(&self) -> impl Iterator<Item = SignedVote> + '_ {
        self.signatures
            .iter()
            .map(|s| SignedVote { vote: self.precommit(s.validator), signature: s.signature })
    }

    /// The voting power that signed, without checking signatures; unknown validators count 0.
    pub fn signed_power(&self, validators: &ValidatorSet) -> VotingPower {
        VotingPower(self.signatures.iter().map(|s| validators.power_of(s.validator).0).sum())
    }

    /// Checks that this certificate proves the commit of `block_hash` at (height, round)
    /// under `validators`: sorted unique known signers holding > 2/3 of the power, every
    /// signature a valid precommit, all verified in one batch.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        validators: &ValidatorSet,
        verifier: &Verifier,
    ) -> Result<(), CertificateError> {
        let signed = self.check_structure(validators)?;
        if !validators.has_quorum(signed) {
            return Err(CertificateError::InsufficientPower {
                signed,
                total: validators.total_power(),
            });
        }
        let messages: Vec<Vec<u8>> = self
            .signatures
            .iter()
            .map(|s| self.precommit(s.validator).signing_bytes(chain_id))
            .collect();
        let items: Vec<SignedItem<'_>> = self
            .signatures
            .iter()
            .zip(&messages)
            .map(|(s, message)| SignedItem {
                key: &validators
                    .get(s.validator)
                    .expect("check_structure found every validator")
                    .public_key,
                message,
                signature: &s.signature,
            })
            .collect();
        let verdicts = verifier.verify_many(&items);
        for (s, verdict) in self.signatures.iter().zip(verdicts) {
            verdict.map_err(|source| CertificateError::BadSignature {
                validator: s.validator,
                source,
            })?;
        }
        Ok(())
    }

    /// Count, order, uniqueness and membership; returns the signed power.
    fn check_structure(&self, validators: &ValidatorSet) -> Result<VotingPower, CertificateError> {
        let count = self.signatures.len();
        if count > CERTIFICATE_SIGNATURES_MAX || count > validators.len() {
            return Err(CertificateError::TooManySignatures {
                count,
                max: CERTIFICATE_SIGNATURES_MAX.min(validators.len()),
            });
        }
        let mut power: u64 = 0;
        let mut previous: Option<ValidatorIndex> = None;
        for (position, s) in self.signatures.iter().enumerate() {
            match previous {
                Some(p) if p == s.validator => {
                    return Err(CertificateError::DuplicateValidator { validator: s.validator });
                }
                Some(p) if p > s.validator => {
                    return Err(CertificateError::NotSorted { position, validator: s.validator });
                }
                _ => {}
            }
            previous = Some(s.validator);
            let Some(v) = validators.get(s.validator) else {
                return Err(CertificateError::UnknownValidator {
                    validator: s.validator,
                    validators_len: validators.len_u32(),
                });
            };
            // Cannot overflow: the set's total is at most TOTAL_VOTING_POWER_MAX.
            power += v.voting_power.0;
        }
        Ok(VotingPower(power))
    }
}
