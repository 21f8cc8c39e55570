//! Light-client verification: real certificates and proofs verify; every tampered variant
//! is rejected with its reason.

mod common;

use common::{chain_id, genesis, transfer, user, validator, verifier, GENESIS_TIME_MS};
use tally_consensus::{
    CertificateError, CommitCertificate, CommitSig, Height, Round, SignedVote, ValidatorIndex,
    Vote, VoteType,
};
use tally_crypto::{Hash, Keypair};
use tally_ledger::{
    verify_account, verify_header, verify_tx, Account, Block, Genesis, Ledger, LightError,
    ProofError,
};

struct Chain {
    _dir: tempfile::TempDir,
    genesis: Genesis,
    ledger: Ledger,
    block: Block,
    certificate: CommitCertificate,
}

fn precommit(block: &Block, signer: usize, as_index: u32) -> SignedVote {
    let vote = Vote {
        height: block.height(),
        round: Round(0),
        vote_type: VoteType::Precommit,
        block_hash: Some(block.hash()),
        validator: ValidatorIndex(as_index),
    };
    vote.sign(&chain_id(), &validator(signer))
}

fn certify(block: &Block, signers: &[usize]) -> CommitCertificate {
    let votes: Vec<SignedVote> = signers.iter().map(|&i| precommit(block, i, i as u32)).collect();
    CommitCertificate::from_precommits(block.height(), Round(0), block.hash(), votes.iter())
}

/// One committed block with three transfers, certified by validators 0, 1, 2 of 4.
fn chain() -> Chain {
    let dir = tempfile::tempdir().expect("temp dir");
    let g = genesis(3);
    let mut ledger = Ledger::open(&dir.path().join("l.redb"), g.clone()).expect("open");
    let txs = vec![
        transfer(&user(0), user(1).public(), 100, 0),
        transfer(&user(1), user(2).public(), 50, 0),
        transfer(&user(0), user(2).public(), 1, 1),
    ];
    let built =
        ledger.build_block(&txs, GENESIS_TIME_MS + 1000, validator(0).public(), &verifier());
    let certificate = certify(&built.block, &[0, 1, 2]);
    ledger.commit(&built.block, &certificate, built.outcome).expect("commit");
    Chain { _dir: dir, genesis: g, ledger, block: built.block, certificate }
}

#[test]
fn real_tx_and_account_proofs_verify() {
    let c = chain();
    let v = verifier();
    let h = &c.block.header;
    verify_header(&c.genesis, h, &c.certificate, &v).expect("header");
    for (i, tx) in c.block.txs.iter().enumerate() {
        let proof = c.block.tx_proof(i as u32).expect("proof");
        assert_eq!(verify_tx(&c.genesis, h, &c.certificate, tx, &proof, &v), Ok(tx.hash()));
    }
    for u in 0..3 {
        let key = user(u).public();
        let (account, proof) = c.ledger.account_with_proof(&key);
        verify_account(&c.genesis, h, &c.certificate, &key, Some(&account), &proof, &v)
            .expect("presence");
    }
    let stranger = Keypair::derive_insecure("stranger").public();
    let (_, proof) = c.ledger.account_with_proof(&stranger);
    verify_account(&c.genesis, h, &c.certificate, &stranger, None, &proof, &v).expect("absence");
}

#[test]
fn tampered_certificates_are_rejected_with_their_reason() {
    let c = chain();
    let v = verifier();
    let h = &c.block.header;
    let check = |cert: &CommitCertificate| verify_header(&c.genesis, h, cert, &v);

    // Not enough power: 2 of 4 equal validators is not more than 2/3.
    let two = certify(&c.block, &[0, 1]);
    assert!(matches!(
        check(&two),
        Err(LightError::Certificate(CertificateError::InsufficientPower { .. }))
    ));

    // The same signer twice.
    let mut dup = c.certificate.clone();
    dup.signatures.insert(1, dup.signatures[0].clone());
    assert!(matches!(check(&dup), Err(LightError::Certificate(_))));

    // A foreign key signing in a validator's name.
    let mut foreign = c.certificate.clone();
    let forged = precommit(&c.block, 9, 2);
    foreign.signatures[2] = CommitSig { validator: ValidatorIndex(2), signature: forged.signature };
    assert!(matches!(
        check(&foreign),
        Err(LightError::Certificate(CertificateError::BadSignature { .. }))
    ));

    // An index outside the validator set.
    let mut unknown = c.certificate.clone();
    unknown
        .signatures
        .push(CommitSig { validator: ValidatorIndex(7), signature: forged.signature });
    assert!(matches!(check(&unknown), Err(LightError::Certificate(_))));

    // Missing signatures.
    let mut empty = c.certificate.clone();
    empty.signatures.clear();
    assert!(matches!(check(&empty), Err(LightError::Certificate(_))));

    // A certificate for another height or block.
    let mut other_height = c.certificate.clone();
    other_height.height = Height(2);
    assert!(matches!(check(&other_height), Err(LightError::HeightMismatch { .. })));
    let mut other_block = c.certificate.clone();
    other_block.block_hash = tally_consensus::BlockHash(Hash::digest(b"other"));
    assert!(matches!(check(&other_block), Err(LightError::BlockMismatch { .. })));
}

#[test]
fn tampered_headers_and_proofs_are_rejected() {
    let c = chain();
    let v = verifier();
    let cert = &c.certificate;

    // Any change to the header changes its hash: the certificate no longer names it.
    let mut header = c.block.header.clone();
    header.state_root = Hash::digest(b"forged state");
    assert!(matches!(
        verify_header(&c.genesis, &header, cert, &v),
        Err(LightError::BlockMismatch { .. })
    ));
    let mut header = c.block.header.clone();
    header.validators_hash = Hash::digest(b"other validators");
    assert!(matches!(
        verify_header(&c.genesis, &header, cert, &v),
        Err(LightError::WrongValidators { .. })
    ));

    // Another chain's genesis.
    let mut other = c.genesis.clone();
    other.chain_id = tally_crypto::ChainId::new("other-chain").expect("chain id");
    assert!(matches!(
        verify_header(&other, &c.block.header, cert, &v),
        Err(LightError::WrongChain { .. })
    ));

    let h = &c.block.header;
    let tx = &c.block.txs[1];
    let proof = c.block.tx_proof(1).expect("proof");
    // A tx that is not in the block, with a real proof.
    let outsider = transfer(&user(2), user(0).public(), 7, 0);
    assert!(matches!(
        verify_tx(&c.genesis, h, cert, &outsider, &proof, &v),
        Err(LightError::TxProof(_))
    ));
    // Each sibling flipped, the index moved, the total changed.
    for i in 0..proof.path.len() {
        let mut p = proof.clone();
        p.path[i].0[0] ^= 1;
        assert!(verify_tx(&c.genesis, h, cert, tx, &p, &v).is_err(), "sibling {i}");
    }
    let mut p = proof.clone();
    p.index = 0;
    assert!(verify_tx(&c.genesis, h, cert, tx, &p, &v).is_err());
    let mut p = proof.clone();
    p.total = 4;
    assert!(matches!(
        verify_tx(&c.genesis, h, cert, tx, &p, &v),
        Err(LightError::TxProof(ProofError::TotalMismatch { .. }))
    ));

    // An account proof for a balance the account does not have, or claiming absence.
    let key = user(0).public();
    let (account, proof) = c.ledger.account_with_proof(&key);
    let richer = Account { balance: account.balance + 1, ..account };
    assert!(matches!(
        verify_account(&c.genesis, h, cert, &key, Some(&richer), &proof, &v),
        Err(LightError::AccountProof(_))
    ));
    assert!(verify_account(&c.genesis, h, cert, &key, None, &proof, &v).is_err());
    let mut p = proof.clone();
    if let Some(s) = p.siblings.first_mut() {
        s.0[5] ^= 0x80;
    }
    assert!(verify_account(&c.genesis, h, cert, &key, Some(&account), &p, &v).is_err());
}
