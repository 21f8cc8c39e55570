//! Who signs in a simulation, and how signatures are checked there.
//!
//! Two schemes:
//! - [`Scheme::Fast`], the stand-in that makes campaigns cheap: validator i holds a 32-byte
//!   secret drawn from the seed, signs with `blake3("tally/sim/sig" | secret | message)`, and
//!   its public key is `blake3("tally/sim/pk" | secret)`. Only validator i's actor is handed
//!   its [`FastSigner`]; the network checks signatures with the secrets it keeps (it plays
//!   the role of public-key verification), so no simulated actor can forge another's vote.
//! - [`Scheme::Ed25519`]: real keys and the real verification path (`SignedVote::verify`,
//!   `SignedProposal::verify`, `CommitCertificate::verify` through a [`Verifier`]).

use crate::certificate::CommitCertificate;
use crate::core::SignedMessage;
use crate::signer::Signer;
use crate::types::{ValidatorIndex, VotingPower};
use crate::validators::{Validator, ValidatorSet};
use crate::vote::Vote;
use tally_crypto::{ChainId, Hash, Keypair, PublicKey, Signature, Verifier, VerifierConfig};

/// Which signatures a simulation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Fast,
    Ed25519,
}

/// The fast stand-in signer of one simulated validator (or of an outsider).
#[derive(Clone)]
pub struct FastSigner {
    secret: [u8; 32],
    public: PublicKey,
}

impl FastSigner {
    pub fn new(secret: [u8; 32]) -> FastSigner {
        let public = PublicKey(Hash::digest_parts(&[b"tally/sim/pk", &secret]).0);
        FastSigner { secret, public }
    }

    fn tag(&self, message: &[u8]) -> Signature {
        let mac = Hash::digest_parts(&[b"tally/sim/sig", &self.secret, message]);
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(mac.as_bytes());
        Signature(bytes)
    }
}

impl Signer for FastSigner {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.tag(message)
    }
}

/// The keys of one simulation: one signer per validator, one outsider (not in the set), the
/// validator set, and the checks the simulated nodes run before a message reaches a core.
pub struct SimKeys {
    pub scheme: Scheme,
    pub chain_id: ChainId,
    pub validators: ValidatorSet,
    fast: Vec<FastSigner>,
    ed25519: Vec<Keypair>,
    verifier: Verifier,
}

impl SimKeys {
    /// Keys for validators of the given powers; index `powers.len()` is the outsider.
    pub fn new(scheme: Scheme, seed: u64, powers: &[u64]) -> SimKeys {
        let count = powers.len() + 1;
        let secret = |i: usize| {
            Hash::digest_parts(&[b"tally/sim/key", &seed.to_le_bytes(), &(i as u64).to_le_bytes()])
                .0
        };
        let (fast, ed25519): (Vec<FastSigner>, Vec<Keypair>) = match scheme {
            Scheme::Fast => ((0..count).map(|i| FastSigner::new(secret(i))).collect(), Vec::new()),
            Scheme::Ed25519 => {
                (Vec::new(), (0..count).map(|i| Keypair::from_seed(secret(i))).collect())
            }
        };
        let public = |i: usize| match scheme {
            Scheme::Fast => fast[i].public,
            Scheme::Ed25519 => ed25519[i].public(),
        };
        let validators = ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator { public_key: public(i), voting_power: VotingPower(*p) })
                .collect(),
        )
        .expect("simulated sets have 4 to 10 validators of small positive power");
        SimKeys {
            scheme,
            chain_id: ChainId::new("tally-sim").expect("a valid chain id"),
            validators,
            fast,
            ed25519,
            verifier: Verifier::new(VerifierConfig::default()),
        }
    }

    /// The signer of validator `i`, or of the outsider for `i == validators.len()`. Only
    /// that actor is given it.
    pub fn signer(&self, i: usize) -> Box<dyn Signer + Send> {
        match self.scheme {
            Scheme::Fast => Box::new(self.fast[i].clone()),
            Scheme::Ed25519 => Box::new(self.ed25519[i].clone()),
        }
    }

    /// What a node checks before handing a message to its core: the signer is a validator
    /// and the signature is its signature (plus, with ed25519, the proposal's shape and
    /// proposer, as `SignedProposal::verify` does).
    pub fn verify_message(&self, message: &SignedMessage) -> bool {
        match (self.scheme, message) {
            (Scheme::Ed25519, SignedMessage::Vote(v)) => {
                v.verify(&self.chain_id, &self.validators, &self.verifier).is_ok()
            }
            (Scheme::Ed25519, SignedMessage::Proposal(p)) => {
                p.verify(&self.chain_id, &self.validators, &self.verifier).is_ok()
            }
            (Scheme::Fast, SignedMessage::Vote(v)) => {
                self.fast_ok(v.vote.validator, &v.vote.signing_bytes(&self.chain_id), &v.signature)
            }
            (Scheme::Fast, SignedMessage::Proposal(p)) => self.fast_ok(
                p.proposal.proposer,
                &p.proposal.signing_bytes(&self.chain_id),
                &p.signature,
            ),
        }
    }

    /// Whether `signature` is `vote.validator`'s signature of `vote` (the oracle's check of
    /// each certificate signature).
    pub fn verify_vote(&self, vote: &Vote, signature: &Signature) -> bool {
        let message = vote.signing_bytes(&self.chain_id);
        match self.scheme {
            Scheme::Fast => self.fast_ok(vote.validator, &message, signature),
            Scheme::Ed25519 => match self.validators.get(vote.validator) {
                Some(v) => tally_crypto::verify(&v.public_key, &message, signature).is_ok(),
                None => false,
            },
        }
    }

    /// What a node checks on a certificate from a peer before its core sees it.
    pub fn verify_certificate(&self, certificate: &CommitCertificate) -> bool {
        match self.scheme {
            Scheme::Ed25519 => {
                certificate.verify(&self.chain_id, &self.validators, &self.verifier).is_ok()
            }
            Scheme::Fast => {
                let mut power = 0u64;
                let mut previous: Option<ValidatorIndex> = None;
                for s in &certificate.signatures {
                    if previous.is_some_and(|p| p >= s.validator)
                        || !self.verify_vote(&certificate.precommit(s.validator), &s.signature)
                    {
                        return false;
                    }
                    previous = Some(s.validator);
                    power += self.validators.power_of(s.validator).0;
                }
                u128::from(power) * 3 > u128::from(self.validators.total_power().0) * 2
            }
        }
    }

    fn fast_ok(&self, signer: ValidatorIndex, message: &[u8], signature: &Signature) -> bool {
        // The outsider's key is not a validator's: a message claiming its index is unknown.
        match self.fast.get(signer.as_usize()) {
            Some(s) if signer.as_usize() < self.validators.len() => s.tag(message) == *signature,
            _ => false,
        }
    }
}
