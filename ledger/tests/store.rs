//! The redb store: genesis initialisation, commits, queries, reopening, atomicity.

mod common;

use common::{certificate, chain_id, genesis, transfer, user, GENESIS_TIME_MS, INITIAL_BALANCE};
use std::collections::BTreeMap;
use tally_consensus::{BlockHash, Height};
use tally_crypto::{Hash, PublicKey};
use tally_ledger::store::{CommitError, InitGenesisError, OpenError};
use tally_ledger::{tx_root, Account, Block, Header, Store, Tx, TxHash, FORMAT_VERSION};

/// A block at `height` on `parent` with `txs`; the store does not check roots, so they are
/// computed only for realism.
fn block(height: u64, parent: BlockHash, txs: Vec<Tx>) -> Block {
    let hashes: Vec<TxHash> = txs.iter().map(Tx::hash).collect();
    let header = Header {
        chain_id: chain_id(),
        height: Height(height),
        time_ms: GENESIS_TIME_MS + height,
        prev_block_hash: parent,
        tx_root: tx_root(&hashes),
        tx_count: txs.len() as u32,
        state_root: Hash::digest(&height.to_le_bytes()),
        proposer: common::validator(0).public(),
        validators_hash: Hash::ZERO,
    };
    Block { header, txs }
}

fn changes(entries: &[(PublicKey, u64, u64)]) -> BTreeMap<PublicKey, Account> {
    entries
        .iter()
        .map(|(k, balance, nonce)| (*k, Account { balance: *balance, nonce: *nonce }))
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("ledger.redb");
    Fixture { _dir: dir, path }
}

#[test]
fn init_genesis_writes_accounts_once_and_refuses_another_genesis() {
    let f = fixture();
    let store = Store::open(&f.path).unwrap();
    assert_eq!(store.genesis_hash().unwrap(), None);
    let g = genesis(3);
    store.init_genesis(&g).unwrap();
    store.init_genesis(&g).unwrap();
    assert_eq!(store.genesis_hash().unwrap(), Some(g.hash()));
    assert_eq!(store.chain_id().unwrap(), Some(chain_id()));
    assert_eq!(store.account(&user(1).public()).unwrap().balance, INITIAL_BALANCE);
    assert_eq!(store.account(&user(9).public()).unwrap(), Account::default());
    assert_eq!(store.accounts_iter().unwrap().count(), 3);
    assert_eq!(store.tip().unwrap(), None);
    let other = genesis(4);
    assert!(matches!(store.init_genesis(&other), Err(InitGenesisError::GenesisMismatch { .. })));
}

#[test]
fn commit_then_reopen_resumes_at_tip_with_every_query_answered() {
    let f = fixture();
    let g = genesis(2);
    let tx = transfer(&user(0), user(1).public(), 7, 0);
    let b1 = block(1, BlockHash(g.hash()), vec![tx]);
    let b2 = block(2, b1.hash(), vec![]);
    {
        let store = Store::open(&f.path).unwrap();
        store.init_genesis(&g).unwrap();
        let c = changes(&[(user(0).public(), 993, 1), (user(1).public(), 1007, 0)]);
        store.commit_block(&b1, &certificate(Height(1), b1.hash()), &c).unwrap();
        store.commit_block(&b2, &certificate(Height(2), b2.hash()), &BTreeMap::new()).unwrap();
    }
    let store = Store::open(&f.path).unwrap();
    store.init_genesis(&g).unwrap();
    assert_eq!(store.tip().unwrap(), Some((Height(2), b2.hash())));
    assert_eq!(store.block(Height(1)).unwrap(), Some(b1.clone()));
    assert_eq!(store.header(Height(2)).unwrap(), Some(b2.header.clone()));
    assert_eq!(store.block_by_hash(&b1.hash()).unwrap(), Some(b1.clone()));
    assert_eq!(store.height_of(&b2.hash()).unwrap(), Some(Height(2)));
    assert_eq!(store.block(Height(3)).unwrap(), None);
    assert_eq!(store.certificate(Height(2)).unwrap(), Some(certificate(Height(2), b2.hash())));
    assert_eq!(store.tx(&tx.hash()).unwrap(), Some((Height(1), 0, tx)));
    assert_eq!(store.tx_location(&tx.hash()).unwrap(), Some((Height(1), 0)));
    assert_eq!(store.tx(&TxHash(Hash::ZERO)).unwrap(), None);
    assert_eq!(store.account(&user(0).public()).unwrap(), Account { balance: 993, nonce: 1 });
    let all: Vec<_> = store.accounts_iter().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn tx_lookup_finds_every_position() {
    let f = fixture();
    let g = genesis(1);
    let store = Store::open(&f.path).unwrap();
    store.init_genesis(&g).unwrap();
    let txs: Vec<Tx> = (0..5).map(|n| transfer(&user(0), user(1).public(), 1, n)).collect();
    let b1 = block(1, BlockHash(g.hash()), txs.clone());
    store.commit_block(&b1, &certificate(Height(1), b1.hash()), &BTreeMap::new()).unwrap();
    for (i, tx) in txs.iter().enumerate() {
        assert_eq!(store.tx(&tx.hash()).unwrap(), Some((Height(1), i as u32, *tx)));
    }
}

#[test]
fn commit_checks_genesis_height_parent_chain_and_certificate() {
    let f = fixture();
    let g = genesis(1);
    let store = Store::open(&f.path).unwrap();
    let b1 = block(1, BlockHash(g.hash()), vec![]);
    let cert = certificate(Height(1), b1.hash());
    let none = BTreeMap::new();
    assert!(matches!(store.commit_block(&b1, &cert, &none), Err(CommitError::NoGenesis)));
    store.init_genesis(&g).unwrap();
    let b2 = block(2, BlockHash(g.hash()), vec![]);
    let err = store.commit_block(&b2, &certificate(Height(2), b2.hash()), &none);
    assert!(matches!(err, Err(CommitError::WrongHeight { expected: Height(1), got: Height(2) })));
    let orphan = block(1, BlockHash(Hash::ZERO), vec![]);
    let err = store.commit_block(&orphan, &certificate(Height(1), orphan.hash()), &none);
    assert!(matches!(err, Err(CommitError::WrongParent { .. })));
    let mut foreign = b1.clone();
    foreign.header.chain_id = tally_crypto::ChainId::new("other").unwrap();
    let err = store.commit_block(&foreign, &certificate(Height(1), foreign.hash()), &none);
    assert!(matches!(err, Err(CommitError::WrongChainId { .. })));
    let err = store.commit_block(&b1, &certificate(Height(1), BlockHash(Hash::ZERO)), &none);
    assert!(matches!(err, Err(CommitError::CertificateMismatch { .. })));
    assert_eq!(store.tip().unwrap(), None);
    store.commit_block(&b1, &cert, &none).unwrap();
    let err = store.commit_block(&b1, &cert, &none);
    assert!(matches!(err, Err(CommitError::WrongHeight { expected: Height(2), .. })));
}

/// The duplicate is found after the block, header, certificate and part of the tx index were
/// written in the transaction: the abort must take all of it back.
#[test]
fn failed_commit_leaves_no_partial_block() {
    let f = fixture();
    let g = genesis(2);
    let first = transfer(&user(0), user(1).public(), 1, 0);
    let b1 = block(1, BlockHash(g.hash()), vec![first]);
    {
        let store = Store::open(&f.path).unwrap();
        store.init_genesis(&g).unwrap();
        store.commit_block(&b1, &certificate(Height(1), b1.hash()), &BTreeMap::new()).unwrap();
        let fresh = transfer(&user(1), user(0).public(), 1, 0);
        let b2 = block(2, b1.hash(), vec![fresh, first]);
        let c = changes(&[(user(1).public(), 1, 1)]);
        let err = store.commit_block(&b2, &certificate(Height(2), b2.hash()), &c);
        assert!(matches!(err, Err(CommitError::DuplicateTx { height: Height(1), index: 0, .. })));
        assert_no_block_2(&store, &b1, &b2, &fresh);
    }
    // And after a restart.
    let store = Store::open(&f.path).unwrap();
    let fresh = transfer(&user(1), user(0).public(), 1, 0);
    assert_no_block_2(&store, &b1, &block(2, b1.hash(), vec![fresh, first]), &fresh);
    // A duplicate inside one block is caught the same way.
    let twice = transfer(&user(1), user(0).public(), 1, 0);
    let b2 = block(2, b1.hash(), vec![twice, twice]);
    let err = store.commit_block(&b2, &certificate(Height(2), b2.hash()), &BTreeMap::new());
    assert!(matches!(err, Err(CommitError::DuplicateTx { height: Height(2), index: 0, .. })));
    assert_eq!(store.tx(&twice.hash()).unwrap(), None);
}

fn assert_no_block_2(store: &Store, b1: &Block, b2: &Block, fresh: &Tx) {
    assert_eq!(store.tip().expect("store read"), Some((Height(1), b1.hash())));
    assert_eq!(store.block(Height(2)).expect("store read"), None);
    assert_eq!(store.header(Height(2)).expect("store read"), None);
    assert_eq!(store.certificate(Height(2)).expect("store read"), None);
    assert_eq!(store.height_of(&b2.hash()).expect("store read"), None);
    assert_eq!(store.tx(&fresh.hash()).expect("store read"), None);
    assert_eq!(store.account(&user(1).public()).expect("store read").balance, INITIAL_BALANCE);
}

#[test]
fn another_format_version_is_refused() {
    let f = fixture();
    drop(Store::open(&f.path).unwrap());
    {
        let db = redb::Database::create(&f.path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
            let mut table = txn.open_table(meta).unwrap();
            table.insert("format_version", 99u32.to_be_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    match Store::open(&f.path) {
        Err(OpenError::FormatVersion { found: 99, supported }) => {
            assert_eq!(supported, FORMAT_VERSION)
        }
        other => panic!("expected a format version error, got {other:?}"),
    }
}

/// `open_with_backend` runs the same initialisation as `open`: tables and format version,
/// then genesis and commits work as on a file (here over redb's in-memory backend).
#[test]
fn open_with_backend_works_in_memory() {
    let store = Store::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open");
    let g = genesis(2);
    store.init_genesis(&g).expect("genesis");
    assert_eq!(store.tip().expect("tip"), None);
    let b = block(1, BlockHash(g.hash()), vec![]);
    store.commit_block(&b, &certificate(Height(1), b.hash()), &BTreeMap::new()).expect("commit");
    assert_eq!(store.tip().expect("tip"), Some((Height(1), b.hash())));
}
