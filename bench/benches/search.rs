//! `tx_search` over a large ledger: the event index's range scan behind "every transfer
//! of account X between heights A and B" (`transfer.sender='X' AND tx.height>=A AND
//! tx.height<=B`), over an index of 10 million transfers.
//!
//! The index is built once (1,000 blocks of 10,000 transfers among 100,000 accounts, each
//! account sending about 100 transfers spread over the heights) into
//! `$CARGO_TARGET_TMPDIR/event-index-<txs>/` and reused by later runs; building it takes
//! about a minute. `TALLY_BENCH_INDEX_TXS` sets another size (a multiple of 10,000).
//!
//! Each iteration does what a search does in the index: count every match and keep the
//! first page of 100 (or fewer) locations. The page's txs are then read one by one out of
//! their blocks (`Store::tx_at`, not measured here).
//!
//! Expected: about a hundred matching keys read from the LSM tree's sorted files (a seek in
//! each level, then a short contiguous run: an account's keys sort together), whatever the
//! index size: about a millisecond or less per query once the blocks are cached.

use criterion::{criterion_group, criterion_main, Criterion};
use std::ops::ControlFlow;
use std::path::PathBuf;
use tally_consensus::{BlockHash, Height};
use tally_crypto::{ChainId, Hash, PublicKey, Signature};
use tally_ledger::event_index::Role;
use tally_ledger::{Block, EventIndex, Header, Transfer, Tx};

const TXS_PER_BLOCK: u64 = 10_000;
const ACCOUNTS: u64 = 100_000;
const PAGE: usize = 100;

fn account(i: u64) -> PublicKey {
    PublicKey(Hash::digest(&i.to_le_bytes()).0)
}

/// Block `h`'s transfers: tx j is sent by account `(h * TXS_PER_BLOCK + j) * 7919 mod
/// ACCOUNTS` (a permutation, so each account sends once per 100,000 txs) to the next one.
fn block(h: u64, chain: &ChainId) -> Block {
    let txs: Vec<Tx> = (0..TXS_PER_BLOCK)
        .map(|j| {
            let n = ((h - 1) * TXS_PER_BLOCK + j) * 7919 % ACCOUNTS;
            Tx {
                transfer: Transfer {
                    from: account(n),
                    to: account((n + 1) % ACCOUNTS),
                    amount: 1,
                    nonce: h,
                },
                signature: Signature([0; 64]),
            }
        })
        .collect();
    Block {
        header: Header {
            chain_id: chain.clone(),
            height: Height(h),
            time_ms: h,
            prev_block_hash: BlockHash(Hash([0; 32])),
            tx_root: Hash([0; 32]),
            tx_count: TXS_PER_BLOCK as u32,
            state_root: Hash([0; 32]),
            proposer: account(0),
            validators_hash: Hash([0; 32]),
        },
        txs,
    }
}

fn index(txs: u64) -> EventIndex {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("event-index-{txs}"));
    let index = EventIndex::open(&path, 256 << 20).expect("open the index");
    let blocks = txs / TXS_PER_BLOCK;
    let chain = ChainId::new("tally-bench").expect("chain id");
    let mut h = index.indexed_height().expect("height") + 1;
    if h <= blocks {
        eprintln!("building the event index of {txs} transfers in {} (once)", path.display());
    }
    while h <= blocks {
        let batch: Vec<Block> = (h..=blocks.min(h + 9)).map(|h| block(h, &chain)).collect();
        index.index_blocks(&batch).expect("index");
        h += batch.len() as u64;
    }
    index
}

/// Counts the matches and keeps the first page, as a search does.
fn search(
    index: &EventIndex,
    who: &PublicKey,
    from: u64,
    to: u64,
    ascending: bool,
) -> (u64, usize) {
    let mut total = 0u64;
    let mut page = Vec::with_capacity(PAGE);
    index
        .scan(Role::Sender, who, from, to, ascending, |h, i| {
            if page.len() < PAGE {
                page.push((h, i));
            }
            total += 1;
            ControlFlow::Continue(())
        })
        .expect("scan");
    (total, page.len())
}

fn bench(c: &mut Criterion) {
    let txs: u64 = std::env::var("TALLY_BENCH_INDEX_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let index = index(txs);
    let blocks = txs / TXS_PER_BLOCK;
    let who = account(4242);
    let (all, _) = search(&index, &who, 1, blocks, true);
    let (range, _) = search(&index, &who, blocks * 2 / 5, blocks * 3 / 5, true);
    eprintln!(
        "account 4242 sent {all} transfers in all, {range} between 40% and 60% of the heights"
    );
    let mut g = c.benchmark_group(format!("tx_search/indexed={txs}"));
    g.bench_function("sender_between_heights", |b| {
        b.iter(|| search(&index, &who, blocks * 2 / 5, blocks * 3 / 5, true))
    });
    g.bench_function("sender_all_heights_newest_first", |b| {
        b.iter(|| search(&index, &who, 1, blocks, false))
    });
    g.bench_function("absent_account", |b| {
        b.iter(|| search(&index, &account(ACCOUNTS + 1), 1, blocks, true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
