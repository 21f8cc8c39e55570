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
    assert_eq!(store.tx_at(Height(1), 0).unwrap(), Some(tx));
    assert_eq!(store.tx_at(Height(1), 1).unwrap(), None);
    assert_eq!(store.tx_at(Height(3), 0).unwrap(), None);
    assert_eq!(store.account(&user(0).public()).unwrap(), Account { balance: 993, nonce: 1 });
    let all: Vec<_> = store.accounts_iter().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn tx_at_reads_every_position() {
    let f = fixture();
    let g = genesis(1);
    let store = Store::open(&f.path).unwrap();
    store.init_genesis(&g).unwrap();
    let txs: Vec<Tx> = (0..5).map(|n| transfer(&user(0), user(1).public(), 1, n)).collect();
    let b1 = block(1, BlockHash(g.hash()), txs.clone());
    store.commit_block(&b1, &certificate(Height(1), b1.hash()), &BTreeMap::new()).unwrap();
    for (i, tx) in txs.iter().enumerate() {
        assert_eq!(store.tx_at(Height(1), i as u32).unwrap(), Some(*tx));
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

/// A refused commit leaves nothing behind, before and after a restart. (Writes that fail
/// midway are covered by the IO-failure tests below.)
#[test]
fn refused_commit_leaves_no_block() {
    let f = fixture();
    let g = genesis(2);
    let first = transfer(&user(0), user(1).public(), 1, 0);
    let b1 = block(1, BlockHash(g.hash()), vec![first]);
    let fresh = transfer(&user(1), user(0).public(), 1, 0);
    let b2 = block(2, b1.hash(), vec![fresh]);
    {
        let store = Store::open(&f.path).unwrap();
        store.init_genesis(&g).unwrap();
        store.commit_block(&b1, &certificate(Height(1), b1.hash()), &BTreeMap::new()).unwrap();
        let c = changes(&[(user(1).public(), 1, 1)]);
        let err = store.commit_block(&b2, &certificate(Height(2), b1.hash()), &c);
        assert!(matches!(err, Err(CommitError::CertificateMismatch { .. })));
        assert_no_block_2(&store, &b1, &b2);
    }
    let store = Store::open(&f.path).unwrap();
    assert_no_block_2(&store, &b1, &b2);
}

fn assert_no_block_2(store: &Store, b1: &Block, b2: &Block) {
    assert_eq!(store.tip().expect("store read"), Some((Height(1), b1.hash())));
    assert_eq!(store.block(Height(2)).expect("store read"), None);
    assert_eq!(store.header(Height(2)).expect("store read"), None);
    assert_eq!(store.certificate(Height(2)).expect("store read"), None);
    assert_eq!(store.height_of(&b2.hash()).expect("store read"), None);
    assert_eq!(store.tx_at(Height(2), 0).expect("store read"), None);
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

/// A storage backend in memory whose operations all fail once `ops_left` reaches zero; the
/// bytes outlive the `Store`, so a test can reopen what a failed process left behind.
#[derive(Debug, Clone, Default)]
struct FlakyBackend {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    ops_left: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Growing the file fails (a full disk), whatever `ops_left` says.
    full: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyBackend {
    fn new() -> Self {
        let b = FlakyBackend::default();
        b.disarm();
        b
    }

    fn fail_after(&self, ops: u64) {
        self.ops_left.store(ops, std::sync::atomic::Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.fail_after(u64::MAX);
        self.full.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn image(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().expect("no test thread panicked holding the image")
    }

    fn check(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let left = self.ops_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(std::io::Error::other("injected IO failure"));
        }
        if left != u64::MAX {
            self.ops_left.store(left - 1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl redb::StorageBackend for FlakyBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.check()?;
        Ok(self.image().len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.check()?;
        let start = offset as usize;
        Ok(self.image()[start..start + len].to_vec())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        if self.full.load(std::sync::atomic::Ordering::SeqCst) && len > self.image().len() as u64 {
            return Err(std::io::Error::other("injected: no space left on device"));
        }
        self.image().resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        self.check()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        let mut bytes = self.image();
        let end = offset as usize + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

/// A two-account genesis, an empty block 1, and block 2 with `count` transfers of 1 from
/// user 0 to user 1 (nonces 0..count).
fn empty_block_then_transfers(count: u64) -> (tally_ledger::Genesis, Block, Block) {
    let g = genesis(2);
    let b1 = block(1, BlockHash(g.hash()), vec![]);
    let txs: Vec<Tx> = (0..count).map(|n| transfer(&user(0), user(1).public(), 1, n)).collect();
    let b2 = block(2, b1.hash(), txs);
    (g, b1, b2)
}

/// An IO error in the middle of a commit is a database error, not a panic (redb refuses an
/// explicit abort once its storage has failed; found by the `store_ops` fuzz target), and a
/// store reopened on what was written holds block 1 or all of block 2, never part of it.
#[test]
fn io_error_during_commit_is_an_error_and_reopen_finds_a_whole_block() {
    let (g, b1, b2) = empty_block_then_transfers(50);
    let txs = &b2.txs;
    let c2 = changes(&[(user(0).public(), 950, 50), (user(1).public(), 1050, 0)]);
    let mut failed_inside = 0;
    for ops in 0..200 {
        let backend = FlakyBackend::new();
        {
            let store = Store::open_with_backend(backend.clone()).expect("open");
            store.init_genesis(&g).expect("genesis");
            store.commit_block(&b1, &certificate(Height(1), b1.hash()), &BTreeMap::new()).unwrap();
        }
        // A cold cache: the next commit reads its pages through the backend.
        let store = Store::open_with_backend(backend.clone()).expect("reopen");
        backend.fail_after(ops);
        let result = store.commit_block(&b2, &certificate(Height(2), b2.hash()), &c2);
        drop(store);
        backend.disarm();
        match result {
            Ok(()) => {}
            Err(CommitError::Db(_)) => failed_inside += 1,
            Err(e) => panic!("an IO failure surfaced as {e}"),
        }
        let store = Store::open_with_backend(backend.clone()).expect("reopen after the failure");
        match store.tip().expect("tip") {
            Some((Height(1), hash)) => {
                assert_eq!(hash, b1.hash());
                assert_eq!(store.tx_at(Height(2), 0).unwrap(), None);
                assert_eq!(store.account(&user(0).public()).unwrap().balance, INITIAL_BALANCE);
            }
            Some((Height(2), hash)) => {
                assert_eq!(hash, b2.hash());
                assert_eq!(store.block(Height(2)).unwrap(), Some(b2.clone()));
                assert_eq!(store.tx_at(Height(2), 49).unwrap(), Some(txs[49]));
                assert_eq!(store.account(&user(0).public()).unwrap().nonce, 50);
            }
            other => panic!("after an IO failure the tip is {other:?}"),
        }
    }
    assert!(failed_inside > 10, "only {failed_inside} commits met the injected failure");
}

/// The disk fills up while a big block is being written (redb grows the file in the middle of
/// the write transaction and that fails): the commit is a database error, not a panic, and the
/// store reopened afterwards holds block 1 only. Before the fix, redb's assertion on abort
/// after a storage failure panicked here.
#[test]
fn disk_full_while_a_block_grows_the_file_is_an_error() {
    let (g, b1, b2) = empty_block_then_transfers(5000);
    let backend = FlakyBackend::new();
    {
        let store = Store::open_with_backend(backend.clone()).expect("open");
        store.init_genesis(&g).expect("genesis");
        store.commit_block(&b1, &certificate(Height(1), b1.hash()), &BTreeMap::new()).unwrap();
        backend.full.store(true, std::sync::atomic::Ordering::SeqCst);
        let result = store.commit_block(&b2, &certificate(Height(2), b2.hash()), &BTreeMap::new());
        assert!(matches!(result, Err(CommitError::Db(_))), "got {result:?}");
        // Nothing more can be written until the store is reopened.
        assert!(store
            .commit_block(&b2, &certificate(Height(2), b2.hash()), &BTreeMap::new())
            .is_err());
    }
    backend.disarm();
    let store = Store::open_with_backend(backend.clone()).expect("reopen after the failure");
    assert_eq!(store.tip().unwrap(), Some((Height(1), b1.hash())));
    assert_eq!(store.tx_at(Height(2), 0).unwrap(), None);
    store.commit_block(&b2, &certificate(Height(2), b2.hash()), &BTreeMap::new()).unwrap();
    assert_eq!(store.tip().unwrap(), Some((Height(2), b2.hash())));
}

/// A crash while redb creates the file leaves it sized but without redb's magic number
/// (redb writes that last), which redb refuses for ever; the store creates it again. A file
/// that starts with anything else is still refused.
#[test]
fn a_file_left_by_an_interrupted_creation_is_created_again_and_other_files_are_refused() {
    let f = fixture();
    std::fs::write(&f.path, vec![0u8; 1 << 20]).unwrap();
    let store = Store::open(&f.path).expect("a file of zeros is an interrupted creation");
    store.init_genesis(&genesis(2)).unwrap();
    drop(store);
    assert_eq!(Store::open(&f.path).unwrap().genesis_hash().unwrap(), Some(genesis(2).hash()));

    std::fs::write(&f.path, b"not a store").unwrap();
    assert!(matches!(Store::open(&f.path), Err(OpenError::Db(_))));
    assert_eq!(std::fs::read(&f.path).unwrap(), b"not a store", "left as it was");

    let image = tally_ledger::DiskImage::from_bytes(vec![0; 4096]);
    Store::open_with_backend(image.disk()).expect("the same on a storage backend");
}
