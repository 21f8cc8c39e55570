//! The tx index beside the store: found after commit and restart, brought level with the
//! store when it fell behind, rebuilt when it belongs to another store, and built from the
//! blocks of a format-1 store, whose redb table of tx hashes is dropped.

mod common;

use common::{certificate, genesis, transfer, user, validator, verifier, GENESIS_TIME_MS};
use redb::TableHandle;
use std::path::PathBuf;
use tally_consensus::Height;
use tally_crypto::Hash;
use tally_ledger::{tx_index, Block, Genesis, Ledger, Store, Tx, TxHash};

/// Commits `blocks` blocks of two txs each to `ledger`; returns the txs in commit order.
fn commit_blocks(ledger: &mut Ledger, blocks: u64) -> Vec<Tx> {
    let mut all = Vec::new();
    for _ in 0..blocks {
        let nonce = ledger.account(&user(0).public()).nonce;
        let txs = vec![
            transfer(&user(0), user(1).public(), 1, nonce),
            transfer(&user(0), user(2).public(), 1, nonce + 1),
        ];
        let time = GENESIS_TIME_MS + 1000 * (ledger.next_height().0);
        let built = ledger.build_block(&txs, time, validator(0).public(), &verifier());
        assert_eq!(built.block.txs.len(), 2);
        let cert = certificate(built.block.height(), built.block.hash());
        ledger.commit(&built.block, &cert, built.outcome).expect("commit");
        all.extend(txs);
    }
    all
}

fn assert_all_found(ledger: &Ledger, txs: &[Tx]) {
    for (i, tx) in txs.iter().enumerate() {
        let height = Height(i as u64 / 2 + 1);
        let position = (i % 2) as u32;
        assert_eq!(ledger.tx(&tx.hash()).expect("lookup"), Some((height, position, *tx)));
    }
    assert_eq!(ledger.tx(&TxHash(Hash::digest(b"never sent"))).expect("lookup"), None);
}

/// A ledger path in a temp dir, and the genesis to open it with.
struct Chain {
    _dir: tempfile::TempDir,
    path: PathBuf,
    genesis: Genesis,
}

impl Chain {
    fn new() -> Chain {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.redb");
        Chain { _dir: dir, path, genesis: genesis(3) }
    }

    fn open(&self) -> Ledger {
        Ledger::open(&self.path, self.genesis.clone()).expect("ledger opens")
    }
}

#[test]
fn committed_txs_are_found_by_hash_before_and_after_a_restart() {
    let c = Chain::new();
    let mut ledger = c.open();
    let txs = commit_blocks(&mut ledger, 3);
    assert_all_found(&ledger, &txs);
    drop(ledger);
    assert!(tx_index::index_dir(&c.path).is_dir());
    assert_all_found(&c.open(), &txs);
}

/// The index is written after the block's redb transaction: a crash between the two leaves
/// the index behind, and the next open indexes what it missed. Here the block is written
/// straight to the store, as a crash after its commit would leave it.
#[test]
fn an_index_behind_the_store_catches_up_at_open() {
    let c = Chain::new();
    let mut ledger = c.open();
    let mut txs = commit_blocks(&mut ledger, 2);
    let extra = vec![
        transfer(&user(0), user(1).public(), 1, 4),
        transfer(&user(0), user(2).public(), 1, 5),
    ];
    let built =
        ledger.build_block(&extra, GENESIS_TIME_MS + 9000, validator(0).public(), &verifier());
    drop(ledger);
    {
        let store = Store::open(&c.path).expect("store opens");
        let cert = certificate(built.block.height(), built.block.hash());
        store.commit_block(&built.block, &cert, &built.outcome.changes).expect("commit");
    }
    txs.extend(extra);
    assert_all_found(&c.open(), &txs);
}

/// An index left by another store at the same path (the store was deleted and the chain
/// started again, or restored from a snapshot) is dropped and rebuilt, not trusted.
#[test]
fn an_index_of_another_store_is_rebuilt() {
    let c = Chain::new();
    let mut ledger = c.open();
    let old = commit_blocks(&mut ledger, 4);
    drop(ledger);
    std::fs::remove_file(&c.path).expect("delete the store, keep the index");
    let mut ledger = c.open();
    for tx in &old {
        assert_eq!(ledger.tx(&tx.hash()).expect("lookup"), None, "an entry of the old store");
    }
    // The new chain has other block times, so other block hashes at the same heights.
    let fresh = vec![transfer(&user(1), user(2).public(), 7, 0)];
    let time = GENESIS_TIME_MS + 123;
    let built = ledger.build_block(&fresh, time, validator(0).public(), &verifier());
    let cert = certificate(built.block.height(), built.block.hash());
    ledger.commit(&built.block, &cert, built.outcome).expect("commit");
    let found = ledger.tx(&fresh[0].hash()).expect("lookup");
    assert_eq!(found, Some((Height(1), 0, fresh[0])));
}

/// Format version 1 kept the index in a redb table. Opening such a store drops the table,
/// moves the store to version 2 and indexes every block into the new index.
#[test]
fn a_format_1_store_is_upgraded_and_indexed() {
    let c = Chain::new();
    let mut ledger = c.open();
    let txs = commit_blocks(&mut ledger, 3);
    drop(ledger);
    std::fs::remove_dir_all(tx_index::index_dir(&c.path)).expect("no index yet in format 1");
    {
        let db = redb::Database::create(&c.path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).expect("meta");
            meta.insert("format_version", 1u32.to_be_bytes().as_slice()).expect("insert");
            let old: redb::TableDefinition<'_, [u8; 32], [u8; 12]> =
                redb::TableDefinition::new("tx_index");
            txn.open_table(old).expect("tx_index").insert([7; 32], [0; 12]).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let ledger = c.open();
    assert_all_found(&ledger, &txs);
    let block: Block = ledger.store().block(Height(3)).expect("read").expect("block 3");
    assert_eq!(block.txs.len(), 2);
    drop(ledger);
    let db = redb::Database::create(&c.path).expect("redb opens");
    let txn = db.begin_read().expect("read");
    let tables: Vec<String> =
        txn.list_tables().expect("tables").map(|t| t.name().to_string()).collect();
    assert!(!tables.contains(&"tx_index".to_string()), "tables: {tables:?}");
}
