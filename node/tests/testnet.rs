//! End to end: four real `tally` validators on 127.0.0.1, real libp2p, real redb files,
//! real JSON-RPC over HTTP.

mod common;

use common::{b64, Testnet};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SENDERS: u32 = 50;
const TXS_PER_SENDER: u64 = 4;
const ACCOUNTS: u32 = 100;
const BALANCE: u64 = 1_000_000_000_000;

#[test]
fn n4_two_hundred_transfers_commit_identically_then_survive_a_sigkill_slow() {
    let mut net = Testnet::start(4, ACCOUNTS);
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(90));

    // 50 senders x 4 txs (nonces 0..3), each sender's txs through one node, spread over all
    // four; recipients are accounts 50..99.
    let mut hashes = Vec::new();
    let mut expected: BTreeMap<u32, i128> = (0..ACCOUNTS).map(|a| (a, BALANCE as i128)).collect();
    for nonce in 0..TXS_PER_SENDER {
        for sender in 0..SENDERS {
            let to = SENDERS + (sender + nonce as u32) % (ACCOUNTS - SENDERS);
            let amount = 1 + u64::from(sender) + nonce;
            let tx = net.signed_transfer(sender, to, amount, nonce);
            let node = (sender % 4) as usize;
            let reply = net
                .rpc(node, "broadcast_tx_sync", json!({ "tx": b64(&tx) }))
                .unwrap_or_else(|e| panic!("sender {sender} nonce {nonce}: {e}"));
            assert_eq!(reply["code"], 0);
            assert_eq!(reply["hash"].as_str(), Some(tx.hash().0.to_hex().as_str()));
            hashes.push(tx.hash().0.to_hex());
            *expected.get_mut(&sender).unwrap() -= amount as i128;
            *expected.get_mut(&to).unwrap() += amount as i128;
        }
    }
    assert_eq!(hashes.len(), 200);

    // Every tx commits, and every node can find it.
    let deadline = Instant::now() + Duration::from_secs(90);
    for hash in &hashes {
        loop {
            let found: Vec<bool> =
                (0..4).map(|i| net.rpc(i, "tx", json!({ "hash": hash })).is_ok()).collect();
            if found.iter().all(|f| *f) {
                break;
            }
            assert!(Instant::now() < deadline, "tx {hash} not committed on every node: {found:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The same block hash at every height on every node.
    let tip = (0..4).map(|i| net.height(i).expect("height")).min().expect("four nodes");
    for h in 1..=tip {
        let ids: Vec<String> = (0..4)
            .map(|i| {
                let b = net.rpc(i, "block", json!({ "height": h.to_string() })).expect("block");
                b["block_id"]["hash"].as_str().expect("hash").to_string()
            })
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "height {h}: {ids:?}");
    }

    // The same balances and nonces everywhere, and the ones the transfers imply.
    for (account, balance) in &expected {
        let address = net.account_key(*account).public().to_hex();
        for i in 0..4 {
            let a = net.rpc(i, "account", json!({ "address": address })).expect("account");
            assert_eq!(
                a["balance"].as_str(),
                Some(balance.to_string().as_str()),
                "account {account} on node {i}"
            );
            let nonce = if *account < SENDERS { TXS_PER_SENDER } else { 0 };
            assert_eq!(a["nonce"].as_str(), Some(nonce.to_string().as_str()));
        }
    }

    // SIGKILL one validator: the other three (3 of 4 = more than 2/3) keep committing.
    net.kill_node(3);
    let before = (0..3).map(|i| net.height(i).expect("height")).max().expect("three");
    net.wait_height(&[0, 1, 2], before + 5, Duration::from_secs(120));
    let tx = net.signed_transfer(0, 99, 7, TXS_PER_SENDER);
    let reply = net.rpc(1, "broadcast_tx_commit", json!([b64(&tx)])).expect("commit after kill");
    assert_eq!(reply["tx_result"]["code"], 0);

    // Restarted, the killed validator reopens its ledger, block-syncs what it missed and
    // follows the chain again, with the same blocks.
    net.start_node(3);
    let target = net.height(0).expect("height") + 2;
    net.wait_height(&[0, 1, 2, 3], target, Duration::from_secs(60));
    let h = target.to_string();
    let id =
        |i| net.rpc(i, "block", json!({ "height": h })).expect("block")["block_id"]["hash"].clone();
    assert_eq!(id(3), id(0));
    assert!(net.log_of(3).contains("block sync"), "the restarted node caught up by block sync");
}

#[test]
fn bad_transactions_get_clear_errors_and_change_nothing_slow() {
    let net = Testnet::start(4, 10);
    net.wait_height(&[0, 1, 2, 3], 1, Duration::from_secs(90));
    let reason = |result: Result<serde_json::Value, serde_json::Value>| -> String {
        let e = result.expect_err("must be refused");
        format!("{} {}", e["message"], e["data"]["reason"])
    };

    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": "%%% not base64" })));
    assert!(r.contains("base64"), "{r}");
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": "AAEC" })));
    assert!(r.contains("decode"), "{r}");
    let oversized =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![0u8; 4096]);
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": oversized })));
    assert!(r.contains("larger than the limit"), "{r}");
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({})));
    assert!(r.contains("missing parameter: tx"), "{r}");

    let mut forged = net.signed_transfer(0, 1, 5, 0);
    forged.signature.0[10] ^= 0x55;
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": b64(&forged) })));
    assert!(r.contains("bad_signature"), "{r}");

    let r = reason(net.rpc(
        1,
        "broadcast_tx_sync",
        json!({ "tx": b64(&net.signed_transfer(0, 1, 5, 3)) }),
    ));
    assert!(r.contains("wrong nonce: expected 0, got 3"), "{r}");

    let r = reason(net.rpc(
        2,
        "broadcast_tx_sync",
        json!({ "tx": b64(&net.signed_transfer(0, 1, 2_000_000_000_000, 0)) }),
    ));
    assert!(r.contains("insufficient balance"), "{r}");

    let r = reason(net.rpc(
        3,
        "broadcast_tx_sync",
        json!({ "tx": b64(&net.signed_transfer(0, 0, 5, 0)) }),
    ));
    assert!(r.contains("same account"), "{r}");

    let r = reason(net.rpc(0, "block", json!({ "height": "999999" })));
    assert!(r.contains("above the latest height"), "{r}");
    let r = reason(net.rpc(0, "account", json!({ "address": "zz" })));
    assert!(r.contains("address"), "{r}");

    // A good tx still goes through, and the node kept running all along.
    let ok = net.signed_transfer(0, 1, 5, 0);
    let reply = net.rpc(0, "broadcast_tx_commit", json!({ "tx": b64(&ok) })).expect("good tx");
    assert_eq!(reply["tx_result"]["code"], 0);
    let a = net.rpc(3, "account", json!({ "address": net.account_key(0).public().to_hex() }));
    let a = a.expect("account");
    // Every node applies the commit; node 3 may lag by a block.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut a = a;
    while a["nonce"] != "1" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        a = net
            .rpc(3, "account", json!({ "address": net.account_key(0).public().to_hex() }))
            .expect("account");
    }
    assert_eq!(a["nonce"], "1");
    assert_eq!(a["balance"], "999999999995");

    // The metrics endpoint reports the chain advancing.
    let metrics = net.metrics(0);
    assert!(metrics.contains("tally_height "), "{metrics}");
    assert!(metrics.contains("tally_txs_committed_total 1"), "{metrics}");
}
