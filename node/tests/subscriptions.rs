//! WebSocket subscriptions end to end: CometBFT queries for new blocks and txs, the
//! notification shape, unsubscribe by query, unsubscribe_all, refused queries, and the
//! node's count of open subscriptions returning to zero.

mod common;

use common::{b64, Testnet};
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::ObjectParams;
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::{json, Value};
use std::time::Duration;

fn query(q: &str) -> ObjectParams {
    let mut p = ObjectParams::new();
    p.insert("query", q).expect("query param");
    p
}

async fn next(sub: &mut Subscription<Value>) -> Value {
    let item = tokio::time::timeout(Duration::from_secs(20), sub.next()).await;
    item.expect("a notification within 20 s").expect("subscription open").expect("valid json")
}

/// Waits up to `wait` for a notification; `None` if none came.
async fn maybe_next(sub: &mut Subscription<Value>, wait: Duration) -> Option<Value> {
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(Ok(v))) => Some(v),
        _ => None,
    }
}

#[test]
fn subscribe_new_blocks_and_a_tx_then_unsubscribe_by_query_and_all_slow() {
    let net = Testnet::start(1, 10);
    net.wait_height(&[0], 1, Duration::from_secs(60));
    let tx = net.signed_transfer(0, 1, 5, 0);
    let tx_hash = tx.hash().0.to_hex();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = WsClientBuilder::default().build(net.ws_url(0)).await.expect("ws");

        // A bad query is refused, saying what is supported.
        let bad =
            client.subscribe::<Value, _>("subscribe", query("tm.event='Vote'"), "unsubscribe_id");
        let e = bad.await.expect_err("unsupported event");
        assert!(e.to_string().contains("unsupported event"), "{e}");

        // New blocks arrive in order, shaped as CometBFT's.
        let q_block = "tm.event='NewBlock'";
        let mut blocks = client
            .subscribe::<Value, _>("subscribe", query(q_block), "unsubscribe_id")
            .await
            .expect("subscribe NewBlock");
        let first = next(&mut blocks).await;
        assert_eq!(first["query"], q_block);
        assert_eq!(first["data"]["type"], "tendermint/event/NewBlock");
        let h1: u64 = first["data"]["value"]["block"]["header"]["height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("height in {first}"));
        let second = next(&mut blocks).await;
        let h2: u64 =
            second["events"]["block.height"][0].as_str().and_then(|h| h.parse().ok()).expect("h");
        assert_eq!(h2, h1 + 1);

        // A tx subscription by hash sees exactly that tx commit.
        let q_tx = format!("tm.event='Tx' AND tx.hash='{tx_hash}'");
        let mut txs = client
            .subscribe::<Value, _>("subscribe", query(&q_tx), "unsubscribe_id")
            .await
            .expect("subscribe Tx");
        let reply = tokio::task::block_in_place(|| {
            net.rpc(0, "broadcast_tx_sync", json!({ "tx": b64(&tx) }))
        });
        reply.expect("tx accepted");
        let note = next(&mut txs).await;
        assert_eq!(note["events"]["tx.hash"][0], tx_hash.as_str(), "{note}");
        assert_eq!(note["data"]["value"]["TxResult"]["tx"], b64(&tx));

        // unsubscribe {query}: no more blocks on that subscription.
        let r: Value = client.request("unsubscribe", query(q_block)).await.expect("unsubscribe");
        assert_eq!(r, json!({}));
        while maybe_next(&mut blocks, Duration::from_millis(300)).await.is_some() {}
        assert!(maybe_next(&mut blocks, Duration::from_secs(2)).await.is_none());
        let again = client.request::<Value, _>("unsubscribe", query(q_block)).await;
        assert!(again.expect_err("already gone").to_string().contains("no subscription"));

        // unsubscribe_all ends the rest; the node's count goes back to zero.
        let r: Value = client.request("unsubscribe_all", ObjectParams::new()).await.expect("all");
        assert_eq!(r, json!({}));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = tokio::task::block_in_place(|| net.metrics(0));
        assert!(metrics.contains("tally_subscriptions 0"), "{metrics}");
        assert!(metrics.contains("tally_subscriptions_opened_total 2"), "{metrics}");
    });
}
