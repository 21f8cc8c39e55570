//! ledger benches.
//!
//! Expected:
//! - `ledger::execute_block/txs=5000`: with signatures already in the verified cache
//!   (as after mempool admission), execution is a few map updates and ~5,000 x 17 state-tree
//!   hashes at 1 M accounts (k log n), blake3 at ~0.3 µs each: ~20-40 ms. Cold (signatures
//!   not cached) it is bounded by batch verification: 5,000 / ~170k sig/s ≈ 30 ms on 2 cores.
//! - `ledger::tx_root/txs=5000`: 2n blake3 of 33-65 bytes ≈ 2-3 ms.
//! - `ledger::state_root/changed=10000,accounts=1000000`: 10,000 x ~20 levels of blake3 over
//!   65 bytes ≈ 200k hashes ≈ 60-100 ms on one core.
//! - `ledger::store_commit/txs=5000`: `Ledger::commit` of a 5,000-tx block into a fresh
//!   store: one redb write transaction (the block, ~10,000 account rows, an fsync) and the
//!   block's 5,000 tx-index entries in one fjall batch: ~10-25 ms on an SSD.
//! - `ledger::tx_index/txs=5000,indexed=2000000`: one block's 5,000 entries into a tx index
//!   that already holds 2 M: an LSM tree appends to its journal and memtable, and compacts in
//!   the background, so ~1-2 µs per entry here (5-10 ms) and flat as the index grows. The
//!   redb B-tree it replaced took ~100 ms per block at 2 M entries, and growing.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::collections::BTreeMap;
use tally_consensus::{BlockHash, CommitCertificate, Height, Round};
use tally_crypto::{ChainId, Hash, Keypair, PublicKey, Verifier, VerifierConfig};
use tally_ledger::{
    execute_block, tx_root, Account, Genesis, GenesisAccount, GenesisValidator, Ledger, StateTree,
    Transfer, Tx, TxHash, TxIndex,
};

fn chain() -> ChainId {
    ChainId::new("tally-bench").expect("valid chain id")
}

fn accounts(n: usize) -> Vec<Keypair> {
    (0..n).map(|i| Keypair::derive_insecure(&format!("bench/account/{i}"))).collect()
}

/// `n` transfers from distinct senders (nonce 0) to the next account.
fn transfers(keys: &[Keypair], n: usize) -> Vec<Tx> {
    (0..n)
        .map(|i| {
            let from = &keys[i % keys.len()];
            let to = keys[(i + 1) % keys.len()].public();
            Tx::sign(Transfer { from: from.public(), to, amount: 1, nonce: 0 }, from, &chain())
        })
        .collect()
}

fn bench_execute(c: &mut Criterion) {
    let keys = accounts(5_000);
    let state = StateTree::from_accounts(
        keys.iter().map(|k| (k.public(), Account { balance: 1_000, nonce: 0 })),
    );
    let txs = transfers(&keys, 5_000);
    let verifier = Verifier::new(VerifierConfig::default());
    // Warm the verified-signature cache, as mempool admission does.
    execute_block(&state, &txs, &chain(), &verifier).expect("valid block");
    let mut group = c.benchmark_group("ledger::execute_block");
    group.throughput(Throughput::Elements(txs.len() as u64));
    group.sample_size(20);
    group.bench_function("txs=5000/cached_signatures", |b| {
        b.iter(|| execute_block(&state, &txs, &chain(), &verifier).expect("valid block"))
    });
    group.finish();

    let hashes: Vec<TxHash> = txs.iter().map(Tx::hash).collect();
    c.bench_function("ledger::tx_root/txs=5000", |b| b.iter(|| tx_root(&hashes)));
}

fn bench_state_root(c: &mut Criterion) {
    let n = 1_000_000u64;
    let key = |i: u64| PublicKey(*Hash::digest(&i.to_le_bytes()).as_bytes());
    let tree = StateTree::from_accounts((0..n).map(|i| (key(i), Account { balance: i, nonce: 0 })));
    let changes: BTreeMap<PublicKey, Account> =
        (0..10_000u64).map(|i| (key(i * 97 % n), Account { balance: 7, nonce: 1 })).collect();
    let mut group = c.benchmark_group("ledger::state_root");
    group.sample_size(10);
    group.throughput(Throughput::Elements(changes.len() as u64));
    group.bench_function(BenchmarkId::new("changed=10000,accounts", n), |b| {
        b.iter(|| tree.apply(&changes).root())
    });
    group.finish();
}

fn bench_store_commit(c: &mut Criterion) {
    let keys = accounts(5_000);
    let validator = Keypair::derive_insecure("bench/validator");
    let genesis = Genesis::new(
        chain(),
        1_700_000_000_000,
        vec![GenesisValidator { name: "v".into(), public_key: validator.public(), power: 1 }],
        keys.iter()
            .map(|k| GenesisAccount { public_key: k.public(), balance: 1_000_000 })
            .collect(),
    );
    let verifier = Verifier::new(VerifierConfig::default());
    let mut group = c.benchmark_group("ledger::store_commit");
    group.sample_size(10);
    group.bench_function("txs=5000", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let ledger =
                    Ledger::open(&dir.path().join("l.redb"), genesis.clone()).expect("open");
                let txs = transfers(&keys, 5_000);
                let built =
                    ledger.build_block(&txs, 1_700_000_001_000, validator.public(), &verifier);
                (dir, ledger, built)
            },
            |(dir, mut ledger, built)| {
                let cert = CommitCertificate {
                    height: built.block.height(),
                    round: Round(0),
                    block_hash: built.block.hash(),
                    signatures: vec![],
                };
                ledger.commit(&built.block, &cert, built.outcome).expect("commit");
                // Returned, so that closing the store and its tx index (whose background
                // threads are joined on drop) is not timed.
                (dir, ledger)
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn bench_tx_index(c: &mut Criterion) {
    const INDEXED: u64 = 2_000_000;
    const PER_BLOCK: u64 = 5_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let index = TxIndex::open(&dir.path().join("txindex")).expect("open");
    let hash = |i: u64| TxHash(Hash::digest(&i.to_le_bytes()));
    let block = |height: u64| -> Vec<TxHash> {
        (height * PER_BLOCK..(height + 1) * PER_BLOCK).map(hash).collect()
    };
    let mut height = 0;
    while height * PER_BLOCK < INDEXED {
        index
            .index_block(Height(height + 1), &BlockHash(Hash::ZERO), &block(height))
            .expect("fill");
        height += 1;
    }
    let mut group = c.benchmark_group("ledger::tx_index");
    group.throughput(Throughput::Elements(PER_BLOCK));
    group.bench_function(BenchmarkId::from_parameter("txs=5000,indexed=2000000"), |b| {
        b.iter_batched(
            || {
                height += 1;
                (height, block(height))
            },
            |(h, hashes)| {
                index.index_block(Height(h), &BlockHash(Hash::ZERO), &hashes).expect("index")
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
    assert!(index.get(&hash(7)).expect("lookup").is_some());
}

criterion_group!(benches, bench_execute, bench_state_root, bench_store_commit, bench_tx_index);
criterion_main!(benches);
