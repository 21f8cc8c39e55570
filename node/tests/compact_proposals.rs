//! Compact proposals: validators propose a block by its header and tx hashes, and a validator
//! that lacks some of its txs fetches them from peers. Four real validators; validator 3's
//! mempool holds a single tx, so it refuses nearly every gossiped tx and must fetch the txs
//! of the others' blocks to judge and commit them.

mod common;

use common::{b64, Testnet};
use serde_json::json;
use std::time::{Duration, Instant};

const SENDERS: u32 = 40;
const TXS_PER_SENDER: u64 = 3;
const ACCOUNTS: u32 = 80;
const STARVED: usize = 3;

#[test]
fn n4_a_validator_without_the_txs_fetches_them_and_commits_the_same_blocks_slow() {
    let net = Testnet::write(
        4,
        ACCOUNTS,
        &[],
        |i, config| {
            if i == STARVED {
                let mempool = config
                    .entry("mempool")
                    .or_insert_with(|| toml::Table::new().into())
                    .as_table_mut()
                    .expect("[mempool] is a table");
                mempool.insert("txs_max".into(), 1.into());
                mempool.insert("txs_per_sender_max".into(), 1.into());
            }
        },
        4,
    );
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(90));

    // Every tx goes to validators 0..2; validator 3 only hears of them by gossip, which its
    // one-tx mempool mostly refuses.
    let mut hashes = Vec::new();
    for nonce in 0..TXS_PER_SENDER {
        for sender in 0..SENDERS {
            let to = SENDERS + (sender + nonce as u32) % (ACCOUNTS - SENDERS);
            let tx = net.signed_transfer(sender, to, 1 + nonce, nonce);
            let node = (sender % 3) as usize;
            let reply = net
                .rpc(node, "broadcast_tx_sync", json!({ "tx": b64(&tx) }))
                .unwrap_or_else(|e| panic!("sender {sender} nonce {nonce}: {e}"));
            assert_eq!(reply["code"], 0);
            hashes.push(tx.hash().0.to_hex());
        }
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    for hash in &hashes {
        while !(0..4).all(|i| net.rpc(i, "tx", json!({ "hash": hash })).is_ok()) {
            assert!(Instant::now() < deadline, "tx {hash} not committed on every node");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let tip = (0..4).map(|i| net.height(i).expect("height")).min().expect("four nodes");
    net.assert_one_hash_per_height(&[0, 1, 2, 3], tip);
    net.assert_no_evidence_no_panic(&[0, 1, 2, 3]);

    // Validator 3 rebuilt blocks from fetched txs (it may also have block-synced a height
    // the others committed while it was fetching, so that is not asserted).
    let fetched = net.metric(STARVED, "tally_compact_proposals_total{rebuilt=\"fetched\"}");
    let txs = net.metric(STARVED, "tally_proposal_txs_fetched_total");
    assert!(fetched >= 1, "validator 3 fetched no block's txs: {}", net.metrics(STARVED));
    assert!(txs >= 1);
    // The others had the txs: gossip brought them before the proposals did, so they rebuilt
    // at least one block from their mempools alone.
    let from_mempool: u64 =
        (0..3).map(|i| net.metric(i, "tally_compact_proposals_total{rebuilt=\"mempool\"}")).sum();
    assert!(from_mempool >= 1, "no validator rebuilt a block from its mempool");
}
