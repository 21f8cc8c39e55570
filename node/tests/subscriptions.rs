//! WebSocket subscriptions end to end, in CometBFT's form: `subscribe` answers `{}` and each
//! event is a response carrying the subscribe call's id; queries for new blocks and txs
//! (with attribute conditions), unsubscribe by query, unsubscribe_all, refused queries, and
//! the node's count of open subscriptions returning to zero.

mod common;

use common::ws::Ws;
use common::{b64, Testnet};
use serde_json::json;
use std::time::Duration;

#[test]
fn subscribe_new_blocks_and_a_tx_then_unsubscribe_by_query_and_all_slow() {
    let net = Testnet::start(1, 10);
    net.wait_height(&[0], 1, Duration::from_secs(60));
    let tx = net.signed_transfer(0, 1, 5, 0);
    let tx_hash = tx.hash().0.to_hex().to_uppercase();
    let port = net.rpc_url(0).rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let mut ws = Ws::connect_at(port, "/websocket").expect("ws");

    // A query for an event tally does not publish is refused, saying what it publishes;
    // one that does not parse points at the column.
    let (_, bad) = ws.call("subscribe", json!({ "query": "tm.event='Polka'" }));
    assert!(
        bad["error"]["message"].as_str().unwrap_or("").contains("does not publish Polka"),
        "{bad}"
    );
    let (_, bad) = ws.call("subscribe", json!({ "query": "tm.event='Tx' OR x=1" }));
    assert!(bad["error"]["message"].as_str().unwrap_or("").contains("at column 15"), "{bad}");

    // New blocks arrive in order, as responses to the subscribe call.
    let q_block = "tm.event = 'NewBlock'";
    let (request, answer) = ws.call("subscribe", json!({ "query": q_block }));
    assert_eq!(answer["result"], json!({}), "{answer}");
    let blocks = request["id"].clone();
    let first = ws.event(&blocks);
    assert_eq!(first["result"]["query"], q_block, "the query exactly as given");
    assert_eq!(first["result"]["data"]["type"], "tendermint/event/NewBlock");
    let height = |e: &serde_json::Value| -> u64 {
        e["result"]["events"]["block.height"][0]
            .as_str()
            .and_then(|h| h.parse().ok())
            .expect("height")
    };
    let h1 = height(&first);
    assert_eq!(first["result"]["data"]["value"]["block"]["header"]["height"], h1.to_string());
    assert_eq!(height(&ws.event(&blocks)), h1 + 1);

    // A tx subscription on the sender and the hash sees exactly that tx commit.
    let sender = net.account_key(0).public().to_hex();
    let q_tx = format!("tm.event='Tx' AND transfer.sender='{sender}' AND tx.hash='{tx_hash}'");
    let (request, answer) = ws.call("subscribe", json!({ "query": q_tx }));
    assert_eq!(answer["result"], json!({}), "{answer}");
    let txs = request["id"].clone();
    net.rpc(0, "broadcast_tx_sync", json!({ "tx": b64(&tx) })).expect("tx accepted");
    let note = ws.event(&txs);
    assert_eq!(note["result"]["events"]["tx.hash"][0], tx_hash.as_str(), "{note}");
    assert_eq!(note["result"]["events"]["transfer.sender"][0], sender.as_str(), "{note}");
    assert_eq!(note["result"]["data"]["value"]["TxResult"]["tx"], b64(&tx));

    // Consensus events: votes (the validator's own here) and new rounds.
    for (query, kind) in [("tm.event='Vote'", "Vote"), ("tm.event='NewRound'", "NewRound")] {
        let (request, answer) = ws.call("subscribe", json!({ "query": query }));
        assert_eq!(answer["result"], json!({}), "{answer}");
        let event = ws.event(&request["id"]);
        assert_eq!(event["result"]["data"]["type"], format!("tendermint/event/{kind}"), "{event}");
        let (_, r) = ws.call("unsubscribe", json!({ "query": query }));
        assert_eq!(r["result"], json!({}), "{r}");
    }

    // unsubscribe {query}: no more blocks on that subscription.
    let (_, r) = ws.call("unsubscribe", json!({ "query": q_block }));
    assert_eq!(r["result"], json!({}), "{r}");
    while ws.event_within(&blocks, Duration::from_millis(300)).is_some() {}
    assert!(ws.event_within(&blocks, Duration::from_secs(2)).is_none());
    let (_, again) = ws.call("unsubscribe", json!({ "query": q_block }));
    assert!(
        again["error"]["message"].as_str().unwrap_or("").contains("no subscription"),
        "{again}"
    );

    // unsubscribe_all ends the rest; the node's count goes back to zero.
    let (_, r) = ws.call("unsubscribe_all", json!({}));
    assert_eq!(r["result"], json!({}), "{r}");
    std::thread::sleep(Duration::from_millis(500));
    let metrics = net.metrics(0);
    assert!(metrics.contains("tally_subscriptions 0"), "{metrics}");
    assert!(metrics.contains("tally_subscriptions_opened_total 4"), "{metrics}");

    // Subscribing over HTTP is refused: it needs a WebSocket.
    let e = net.rpc(0, "subscribe", json!({ "query": q_block })).expect_err("over HTTP");
    assert!(e["message"].as_str().unwrap_or("").contains("WebSocket"), "{e}");
}
