//! Commit certificate verification: what it accepts and each reason it rejects.

mod common;

use common::{chain, keys, signed_vote, validator_set, value};
use tally_consensus::{
    CertificateError, CommitCertificate, CommitSig, Height, Round, ValidatorIndex, ValidatorSet,
    VoteType, VotingPower,
};
use tally_crypto::{Keypair, Verifier, VerifierConfig};

struct Fixture {
    keys: Vec<Keypair>,
    validators: ValidatorSet,
    verifier: Verifier,
}

impl Fixture {
    fn new(powers: &[u64]) -> Fixture {
        let keys = keys(powers.len());
        let validators = validator_set(&keys, powers);
        Fixture { keys, validators, verifier: Verifier::new(VerifierConfig::default()) }
    }

    /// A certificate for value "b" at (5, 2) signed by `signers`, in the given order.
    fn certificate(&self, signers: &[u32]) -> CommitCertificate {
        let signatures = signers
            .iter()
            .map(|i| {
                let key = &self.keys[*i as usize % self.keys.len()];
                let v = signed_vote(key, *i, VoteType::Precommit, 5, 2, Some(value("b")));
                CommitSig { validator: ValidatorIndex(*i), signature: v.signature }
            })
            .collect();
        CommitCertificate { height: Height(5), round: Round(2), block_hash: value("b"), signatures }
    }

    fn verify(&self, c: &CommitCertificate) -> Result<(), CertificateError> {
        c.verify(&chain(), &self.validators, &self.verifier)
    }
}

#[test]
fn quorum_of_good_precommits_verifies() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    assert_eq!(f.verify(&f.certificate(&[0, 1, 2])), Ok(()));
    assert_eq!(f.verify(&f.certificate(&[0, 1, 2, 3])), Ok(()));
    assert_eq!(f.verify(&f.certificate(&[1, 2, 3])), Ok(()));
}

#[test]
fn rejects_missing_power() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    assert_eq!(
        f.verify(&f.certificate(&[0, 1])),
        Err(CertificateError::InsufficientPower { signed: VotingPower(2), total: VotingPower(4) })
    );
    assert!(matches!(
        f.verify(&f.certificate(&[])),
        Err(CertificateError::InsufficientPower { .. })
    ));
    // Weighted: validator 0 alone holds 2/3 exactly, which is not more than 2/3.
    let f = Fixture::new(&[4, 1, 1]);
    assert!(matches!(
        f.verify(&f.certificate(&[0])),
        Err(CertificateError::InsufficientPower { .. })
    ));
    assert_eq!(f.verify(&f.certificate(&[0, 2])), Ok(()));
}

#[test]
fn rejects_duplicate_signer() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    assert_eq!(
        f.verify(&f.certificate(&[0, 1, 1, 2])),
        Err(CertificateError::DuplicateValidator { validator: ValidatorIndex(1) })
    );
}

#[test]
fn rejects_unsorted_signatures() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    assert_eq!(
        f.verify(&f.certificate(&[1, 0, 2])),
        Err(CertificateError::NotSorted { position: 1, validator: ValidatorIndex(0) })
    );
}

#[test]
fn rejects_unknown_validator() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    assert_eq!(
        f.verify(&f.certificate(&[0, 1, 2, 7])),
        Err(CertificateError::UnknownValidator { validator: ValidatorIndex(7), validators_len: 4 })
    );
}

#[test]
fn rejects_too_many_signatures() {
    let f = Fixture::new(&[1, 1, 1]);
    assert!(matches!(
        f.verify(&f.certificate(&[0, 1, 2, 3])),
        Err(CertificateError::TooManySignatures { count: 4, max: 3 })
    ));
}

#[test]
fn rejects_bad_signature() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    let mut c = f.certificate(&[0, 1, 2]);
    c.signatures[1].signature.0[10] ^= 1;
    assert!(matches!(
        f.verify(&c),
        Err(CertificateError::BadSignature { validator: ValidatorIndex(1), .. })
    ));
    // A signature by another validator's key.
    let mut c = f.certificate(&[0, 1, 2]);
    c.signatures[2].signature = f.certificate(&[3]).signatures[0].signature;
    assert!(matches!(
        f.verify(&c),
        Err(CertificateError::BadSignature { validator: ValidatorIndex(2), .. })
    ));
}

#[test]
fn rejects_wrong_block_hash_height_round_or_vote_type() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    let good = f.certificate(&[0, 1, 2]);
    let mut c = good.clone();
    c.block_hash = value("other");
    assert!(matches!(f.verify(&c), Err(CertificateError::BadSignature { .. })));
    let mut c = good.clone();
    c.height = Height(6);
    assert!(matches!(f.verify(&c), Err(CertificateError::BadSignature { .. })));
    let mut c = good.clone();
    c.round = Round(3);
    assert!(matches!(f.verify(&c), Err(CertificateError::BadSignature { .. })));
    // Prevotes for the same value are not precommits.
    let mut c = good;
    for s in &mut c.signatures {
        let i = s.validator.0;
        let prevote =
            signed_vote(&f.keys[i as usize], i, VoteType::Prevote, 5, 2, Some(value("b")));
        s.signature = prevote.signature;
    }
    assert!(matches!(f.verify(&c), Err(CertificateError::BadSignature { .. })));
}

#[test]
fn rejects_certificate_for_another_chain() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    let c = f.certificate(&[0, 1, 2]);
    let other = tally_crypto::ChainId::new("other-chain").unwrap();
    assert!(matches!(
        c.verify(&other, &f.validators, &f.verifier),
        Err(CertificateError::BadSignature { .. })
    ));
}

#[test]
fn from_precommits_sorts_dedups_and_round_trips() {
    let f = Fixture::new(&[1, 1, 1, 1]);
    let votes: Vec<_> = [2u32, 0, 1, 0]
        .iter()
        .map(|i| signed_vote(&f.keys[*i as usize], *i, VoteType::Precommit, 5, 2, Some(value("b"))))
        .collect();
    let c = CommitCertificate::from_precommits(Height(5), Round(2), value("b"), &votes);
    let order: Vec<u32> = c.signatures.iter().map(|s| s.validator.0).collect();
    assert_eq!(order, vec![0, 1, 2]);
    assert_eq!(f.verify(&c), Ok(()));
    let bytes = borsh::to_vec(&c).unwrap();
    assert_eq!(borsh::from_slice::<CommitCertificate>(&bytes).unwrap(), c);
    assert_eq!(c.signed_precommits().count(), 3);
}
