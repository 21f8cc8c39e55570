//! The Ledger: a proposer builds, validators validate and commit, restarts resume at the tip,
//! and every rule of valid(v) rejects what it should.

mod common;

use common::{certificate, genesis, transfer, user, validator, verifier, GENESIS_TIME_MS};
use tally_consensus::{BlockHash, Height};
use tally_crypto::{Hash, Verifier};
use tally_ledger::{
    Account, Block, BlockError, ExecError, Genesis, Ledger, LedgerCommitError, LedgerOpenError, Tx,
    TxError,
};

struct Node {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    ledger: Ledger,
}

fn node(g: &Genesis) -> Node {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("ledger.redb");
    let ledger = Ledger::open(&path, g.clone()).expect("ledger opens");
    Node { _dir: dir, path, ledger }
}

fn some_txs() -> Vec<Tx> {
    vec![
        transfer(&user(0), user(1).public(), 100, 0),
        transfer(&user(1), user(2).public(), 50, 0),
        transfer(&user(0), user(2).public(), 1, 1),
    ]
}

/// Builds the next block on `ledger` from `txs` at `time_ms`, proposed by validator 0.
fn build(ledger: &Ledger, txs: &[Tx], time_ms: u64) -> Block {
    let built = ledger.build_block(txs, time_ms, validator(0).public(), &verifier());
    assert!(built.skipped.is_empty(), "{:?}", built.skipped);
    built.block
}

/// Re-derives tx_root and tx_count so that a tampered tx list reaches execution.
fn reseal(mut block: Block) -> Block {
    block.header.tx_count = block.txs.len() as u32;
    block.header.tx_root = block.compute_tx_root();
    block
}

#[test]
fn four_validators_agree_commit_and_resume_after_restart() {
    let g = genesis(3);
    let mut nodes: Vec<Node> = (0..4).map(|_| node(&g)).collect();
    let v: Verifier = verifier();
    for round in 0..3u64 {
        let txs = if round == 1 { vec![] } else { some_txs() };
        let txs: Vec<Tx> = if round == 2 {
            vec![
                transfer(&user(0), user(1).public(), 1, 2),
                transfer(&user(2), user(0).public(), 3, 0),
            ]
        } else {
            txs
        };
        let time = GENESIS_TIME_MS + 1000 * (round + 1);
        let built = nodes[0].ledger.build_block(&txs, time, validator(0).public(), &v);
        let block = built.block.clone();
        let cert = certificate(block.height(), block.hash());
        for (i, n) in nodes.iter_mut().enumerate() {
            let outcome = if i == 0 {
                built.outcome.clone()
            } else {
                n.ledger.validate_block(&block, &v).unwrap()
            };
            assert_eq!(outcome.state_root, block.header.state_root);
            n.ledger.commit(&block, &cert, outcome).unwrap();
        }
    }
    let root = nodes[0].ledger.state().root();
    for n in &nodes {
        assert_eq!(n.ledger.tip(), nodes[0].ledger.tip());
        assert_eq!(n.ledger.state().root(), root);
    }
    let expected0 = Account { balance: 1000 - 100 - 1 - 1 + 3, nonce: 3 };
    assert_eq!(nodes[0].ledger.state().get(&user(0).public()), Some(expected0));
    assert_eq!(nodes[0].ledger.store().account(&user(0).public()).unwrap(), expected0);
    // Restart: the state tree is rebuilt from the store and matches the tip header.
    let tip = nodes[1].ledger.tip();
    let n = nodes.remove(1);
    let (dir, path) = (n._dir, n.path);
    drop(n.ledger);
    let reopened = Ledger::open(&path, g.clone()).unwrap();
    assert_eq!(reopened.tip(), tip);
    assert_eq!(reopened.tip(), Some((Height(3), reopened.tip().unwrap().1)));
    assert_eq!(reopened.next_height(), Height(4));
    assert_eq!(reopened.state().root(), root);
    // And it keeps going.
    let next = build(&reopened, &[transfer(&user(1), user(0).public(), 1, 1)], 0);
    assert!(next.header.time_ms > GENESIS_TIME_MS + 3000, "time raised above the parent's");
    reopened.validate_block(&next, &v).unwrap();
    drop(dir);
}

#[test]
fn proofs_from_the_ledger_verify_against_the_committed_header() {
    let g = genesis(3);
    let mut n = node(&g);
    let block = build(&n.ledger, &some_txs(), GENESIS_TIME_MS + 1);
    let outcome = n.ledger.validate_block(&block, &verifier()).unwrap();
    n.ledger.commit(&block, &certificate(Height(1), block.hash()), outcome).unwrap();
    let header = n.ledger.store().header(Height(1)).unwrap().unwrap();
    let (account, proof) = n.ledger.account_with_proof(&user(2).public());
    assert_eq!(account.balance, 1000 + 50 + 1);
    assert_eq!(proof.verify(&header.state_root, &user(2).public(), Some(&account)), Ok(()));
    let (absent, proof) = n.ledger.account_with_proof(&user(99).public());
    assert_eq!(absent, Account::default());
    assert_eq!(proof.verify(&header.state_root, &user(99).public(), None), Ok(()));
    let stored = n.ledger.store().block(Height(1)).unwrap().unwrap();
    let tx = some_txs()[1];
    let (_, position, _) = n.ledger.tx(&tx.hash()).unwrap().unwrap();
    let tx_proof = stored.tx_proof(position).unwrap();
    assert_eq!(header.verify_tx_proof(&tx_proof, &tx.hash()), Ok(()));
}

#[test]
fn validate_block_rejects_each_broken_rule() {
    let g = genesis(3);
    let n = node(&g);
    let l = &n.ledger;
    let v = verifier();
    let good = build(l, &some_txs(), GENESIS_TIME_MS + 10);
    l.validate_block(&good, &v).unwrap();
    let check = |block: &Block, matches: fn(&BlockError) -> bool| {
        let err = l.validate_block(block, &v).unwrap_err();
        assert!(matches(&err), "unexpected error {err:?}");
    };

    let mut b = good.clone();
    b.header.chain_id = tally_crypto::ChainId::new("other").unwrap();
    check(&b, |e| matches!(e, BlockError::WrongChainId { .. }));
    let mut b = good.clone();
    b.header.height = Height(2);
    check(&b, |e| matches!(e, BlockError::WrongHeight { .. }));
    let mut b = good.clone();
    b.header.prev_block_hash = BlockHash(Hash::ZERO);
    check(&b, |e| matches!(e, BlockError::WrongParent { .. }));
    let mut b = good.clone();
    b.header.time_ms = GENESIS_TIME_MS;
    check(&b, |e| matches!(e, BlockError::TimeNotAfterParent { .. }));
    let mut b = good.clone();
    b.header.proposer = user(0).public();
    check(&b, |e| matches!(e, BlockError::UnknownProposer { .. }));
    let mut b = good.clone();
    b.header.validators_hash = Hash::ZERO;
    check(&b, |e| matches!(e, BlockError::WrongValidatorsHash { .. }));
    let mut b = good.clone();
    b.header.tx_count += 1;
    check(&b, |e| matches!(e, BlockError::TxCountMismatch { .. }));
    let mut b = good.clone();
    b.txs.swap(0, 1);
    check(&b, |e| matches!(e, BlockError::TxRootMismatch { .. }));
    let mut b = good.clone();
    b.header.state_root = Hash::ZERO;
    check(&b, |e| matches!(e, BlockError::StateRootMismatch { .. }));
    // A replayed tx, resealed so that the header matches: execution rejects it.
    let mut b = good.clone();
    b.txs.insert(1, b.txs[0]);
    let b = reseal(b);
    check(&b, |e| {
        matches!(
            e,
            BlockError::Exec(ExecError::InvalidTx {
                index: 1,
                error: TxError::BadNonce { expected: 1, got: 0 },
                ..
            })
        )
    });
    let mut b = good.clone();
    b.txs[2].signature.0[40] ^= 1;
    let b = reseal(b);
    check(&b, |e| {
        matches!(
            e,
            BlockError::Exec(ExecError::InvalidTx {
                index: 2,
                error: TxError::BadSignature(_),
                ..
            })
        )
    });
}

#[test]
fn chain_limits_bind_blocks() {
    let mut g = genesis(3);
    g.params.block_txs_max = 2;
    let n = node(&g);
    let v = verifier();
    let built = n.ledger.build_block(&some_txs(), GENESIS_TIME_MS + 1, validator(0).public(), &v);
    assert_eq!(built.block.txs.len(), 2);
    assert_eq!(built.considered, 2);
    n.ledger.validate_block(&built.block, &v).unwrap();
    let mut big = built.block.clone();
    big.txs.push(some_txs()[2]);
    let big = reseal(big);
    assert!(matches!(n.ledger.validate_block(&big, &v), Err(BlockError::TooManyTxs { .. })));

    let mut g = genesis(40);
    g.params.block_bytes_max = tally_ledger::limits::BLOCK_BYTES_MIN;
    let n = node(&g);
    let txs: Vec<Tx> = (0..40).map(|i| transfer(&user(i), user(0).public(), 1, 0)).collect();
    let built = n.ledger.build_block(&txs, GENESIS_TIME_MS + 1, validator(0).public(), &v);
    assert!(built.block.encoded_len() as u64 <= g.params.block_bytes_max);
    assert!(built.block.txs.len() < 40);
    n.ledger.validate_block(&built.block, &v).unwrap();
    let mut big = built.block.clone();
    big.txs.push(txs[39]);
    let big = reseal(big);
    assert!(matches!(n.ledger.validate_block(&big, &v), Err(BlockError::TooManyBytes { .. })));
}

#[test]
fn commit_refuses_stale_or_mismatched_outcomes_and_changes_nothing() {
    let g = genesis(3);
    let mut n = node(&g);
    let v = verifier();
    let b1 = build(&n.ledger, &some_txs(), GENESIS_TIME_MS + 1);
    let o1 = n.ledger.validate_block(&b1, &v).unwrap();
    let cert = certificate(Height(1), b1.hash());
    let empty = build(&n.ledger, &[], GENESIS_TIME_MS + 1);
    let empty_outcome = n.ledger.validate_block(&empty, &v).unwrap();
    let err = n.ledger.commit(&b1, &cert, empty_outcome).unwrap_err();
    assert!(matches!(err, LedgerCommitError::OutcomeMismatch));
    n.ledger.commit(&b1, &cert, o1.clone()).unwrap();
    let root = n.ledger.state().root();
    let b2 = build(&n.ledger, &[], GENESIS_TIME_MS + 2);
    let err = n.ledger.commit(&b2, &certificate(Height(2), b2.hash()), o1).unwrap_err();
    assert!(matches!(err, LedgerCommitError::StaleOutcome { .. }));
    // A store-level refusal (certificate for another block) leaves memory as it was.
    let o2 = n.ledger.validate_block(&b2, &v).unwrap();
    let err = n.ledger.commit(&b2, &certificate(Height(2), b1.hash()), o2).unwrap_err();
    assert!(matches!(err, LedgerCommitError::Store(_)));
    assert_eq!(n.ledger.state().root(), root);
    assert_eq!(n.ledger.tip(), Some((Height(1), b1.hash())));
}

#[test]
fn reopening_with_another_genesis_is_refused() {
    let g = genesis(3);
    let n = node(&g);
    let path = n.path.clone();
    drop(n.ledger);
    let err = Ledger::open(&path, genesis(4)).unwrap_err();
    assert!(matches!(err, LedgerOpenError::InitGenesis(_)));
    let mut invalid = genesis(3);
    invalid.validators.clear();
    assert!(matches!(Ledger::open(&path, invalid), Err(LedgerOpenError::Genesis(_))));
    drop(n._dir);
}

#[test]
fn mempool_check_uses_the_current_state() {
    let g = genesis(3);
    let n = node(&g);
    assert_eq!(n.ledger.check_tx(&some_txs()[0]), Ok(()));
    assert_eq!(n.ledger.check_tx(&some_txs()[2]), Err(TxError::BadNonce { expected: 0, got: 1 }));
    assert_eq!(n.ledger.tip(), None);
    assert_eq!(n.ledger.tip_info().hash, BlockHash(g.hash()));
    assert_eq!(n.ledger.state().root(), g.state_tree().root());
}
