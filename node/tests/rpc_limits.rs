//! Each RPC limit refuses with a clear JSON-RPC error, and the node carries on committing.
//! One validator (it commits alone), started with small limits so each is easy to reach.

mod common;

use common::ws::Ws;
use common::{b64, Testnet};
use serde_json::{json, Value};
use std::time::Duration;

const BODY_BYTES_MAX: i64 = 32 * 1024;
const CONNECTIONS_MAX: i64 = 4;

fn small_limits(t: &mut toml::Table) {
    let rpc = t.entry("rpc").or_insert(toml::Value::Table(Default::default()));
    let rpc = rpc.as_table_mut().expect("rpc table");
    rpc.insert("body_bytes_max".into(), BODY_BYTES_MAX.into());
    rpc.insert("batch_len_max".into(), 2.into());
    rpc.insert("tx_batch_len_max".into(), 100.into());
    rpc.insert("connections_max".into(), CONNECTIONS_MAX.into());
    rpc.insert("subscriptions_per_connection_max".into(), 2.into());
    rpc.insert("tx_commit_waiters_max".into(), 1.into());
    let consensus = t.entry("consensus").or_insert(toml::Value::Table(Default::default()));
    let consensus = consensus.as_table_mut().expect("consensus table");
    // Slow blocks, so a broadcast_tx_commit waits long enough for a second one to collide.
    consensus.insert("timeout_commit_ms".into(), 1500.into());
}

fn rpc_port(net: &Testnet) -> u16 {
    net.rpc_url(0).rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

/// Declares a body of `len` bytes and sends only its first KiB: the node must answer from
/// the declared length (a full body could be cut off by the early answer: broken pipe).
fn post_oversized(net: &Testnet, len: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", net.nodes[0].rpc_port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {len}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let _ = stream.write_all(&vec![b' '; 1024]);
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The chain still advances and plain requests are still answered.
fn node_carries_on(net: &Testnet) {
    let h = net.height(0).expect("status answers");
    net.wait_height(&[0], h + 1, Duration::from_secs(30));
}

#[test]
fn each_rpc_limit_refuses_with_a_json_rpc_error_and_the_node_carries_on_slow() {
    let net = Testnet::start_with(1, 10, small_limits);
    net.wait_height(&[0], 1, Duration::from_secs(60));

    // Body size: 413 with a JSON-RPC error naming the limit, decided from the declared
    // length before the body is read.
    let (status, reply) = post_oversized(&net, 40_000);
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"]["message"], "Request is too big", "{reply}");
    assert!(reply["error"]["data"].to_string().contains(&BODY_BYTES_MAX.to_string()), "{reply}");

    // Batch length.
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "health" });
    let (_, reply) = net.post_raw(0, json!([call, call, call]).to_string().as_bytes());
    assert_eq!(reply["error"]["message"], "The batch request was too large", "{reply}");
    let (_, reply) = net.post_raw(0, json!([call, call]).to_string().as_bytes());
    assert_eq!(reply.as_array().map(Vec::len), Some(2), "a batch within the limit: {reply}");

    // Txs in one broadcast_tx_batch.
    let txs: Vec<String> = (0..101).map(|n| b64(&net.signed_transfer(2, 3, 1, n))).collect();
    let e = net.rpc(0, "broadcast_tx_batch", json!({ "txs": txs })).expect_err("too many txs");
    assert!(e["message"].as_str().unwrap_or("").contains("at most 100"), "{e}");
    node_carries_on(&net);

    // Subscriptions per connection.
    let mut client = Ws::connect(rpc_port(&net)).expect("ws");
    for q in ["tm.event='NewBlock'", "tm.event='Tx'"] {
        let (_, answer) = client.call("subscribe", json!({ "query": q }));
        assert_eq!(answer["result"], json!({}), "{answer}");
    }
    let (_, third) = client.call("subscribe", json!({ "query": "tm.event='NewBlockHeader'" }));
    let message = third["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("too many subscriptions"), "a third is refused: {third}");
    drop(client);

    // Open WebSocket connections: CONNECTIONS_MAX clients hold every slot, one more upgrade
    // is refused with a JSON-RPC error, and the held ones still answer.
    std::thread::sleep(Duration::from_millis(300));
    let mut clients: Vec<Ws> =
        (0..CONNECTIONS_MAX).map(|_| Ws::connect(rpc_port(&net)).expect("ws")).collect();
    let refused = Ws::connect(rpc_port(&net)).err().expect("one more is refused");
    assert!(refused.contains("429"), "{refused}");
    let (_, health) = clients[0].call("health", json!({}));
    assert_eq!(health["result"], json!({}));
    assert!(net.metric(0, "tally_rpc_connections_refused_total") >= 1);
    drop(clients);
    std::thread::sleep(Duration::from_millis(300));
    node_carries_on(&net);

    // broadcast_tx_commit waiters: one waits for its block; a second at the same time is
    // refused as busy before its tx is admitted. Retried, in case the first commits at once.
    let mut refused = None;
    for attempt in 0..6u64 {
        let first = net.signed_transfer(0, 1, 1, attempt);
        let url = net.rpc_url(0);
        let waiting = std::thread::spawn(move || {
            let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "broadcast_tx_commit", "params": { "tx": b64(&first) } });
            ureq::post(&url).send_json(body).ok().and_then(|r| r.into_json::<Value>().ok())
        });
        std::thread::sleep(Duration::from_millis(150));
        let account = net.account_key(4).public().to_hex();
        let next = net.rpc(0, "account", json!({ "address": account })).expect("account");
        let nonce: u64 = next["next_nonce"].as_str().and_then(|n| n.parse().ok()).expect("nonce");
        let second = net.signed_transfer(4, 5, 1, nonce);
        let outcome = net.rpc(0, "broadcast_tx_commit", json!({ "tx": b64(&second) }));
        let first_reply = waiting.join().expect("first caller");
        assert!(first_reply.is_some_and(|r| r["result"]["tx_result"]["code"] == 0));
        if let Err(e) = outcome {
            refused = Some(e);
            break;
        }
        eprintln!("attempt {attempt}: the first tx committed before the second call");
    }
    let e = refused.expect("a second concurrent broadcast_tx_commit is refused");
    assert_eq!(e["data"]["reason"], "busy", "{e}");
    assert!(e["message"].as_str().unwrap_or("").contains("too many broadcast_tx_commit"), "{e}");
    node_carries_on(&net);

    // The refusals are counted by method.
    let metrics = net.metrics(0);
    assert!(
        metrics.contains("tally_rpc_errors_total{method=\"broadcast_tx_batch\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tally_rpc_connections_refused_total 1"), "{metrics}");
    assert!(metrics.contains("tally_rpc_requests_total{method=\"status\"}"), "{metrics}");
}

/// A full mempool refuses txs before their signatures are checked: a bad signature beyond
/// the room comes back as `mempool_full`, not `bad_signature`, and is counted. RPC may fill
/// it only up to `rpc_txs_max` (3 here), the rest being kept for gossiped txs.
#[test]
fn a_full_mempool_refuses_txs_before_checking_their_signatures() {
    let net = Testnet::start_with(1, 10, |t| {
        let mempool = t.entry("mempool").or_insert(toml::Value::Table(Default::default()));
        let mempool = mempool.as_table_mut().expect("mempool table");
        mempool.insert("txs_max".into(), 5.into());
        mempool.insert("rpc_txs_max".into(), 3.into());
        mempool.insert("txs_per_sender_max".into(), 5.into());
        let consensus = t.entry("consensus").or_insert(toml::Value::Table(Default::default()));
        let consensus = consensus.as_table_mut().expect("consensus table");
        consensus.insert("timeout_commit_ms".into(), 1500.into());
    });
    net.wait_height(&[0], 1, Duration::from_secs(60));

    let mut txs: Vec<_> = (0..6).map(|n| net.signed_transfer(1, 2, 1, n)).collect();
    for tx in &mut txs[3..] {
        tx.signature.0[0] ^= 1;
    }
    let encoded: Vec<String> = txs.iter().map(b64).collect();
    let reply = net.rpc(0, "broadcast_tx_batch", json!({ "txs": encoded })).expect("batch");
    let reasons: Vec<&str> = reply["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| if r["code"] == 0 { "ok" } else { r["reason"].as_str().unwrap_or("?") })
        .collect();
    assert_eq!(reasons, ["ok", "ok", "ok", "mempool_full", "mempool_full", "mempool_full"]);
    assert_eq!(reply["accepted"], 3, "{reply}");
    assert_eq!(reply["results"][0]["hash"], txs[0].hash().0.to_hex().to_uppercase(), "{reply}");
    assert!(reply["results"][3].get("hash").is_none(), "{reply}");
    let metrics = net.metrics(0);
    assert!(metrics.contains("tally_tx_refused_full_total{source=\"rpc\"} 3"), "{metrics}");

    // Once the three commit there is room again, and a bad signature is judged as one.
    let start = net.height(0).expect("status");
    net.wait_height(&[0], start + 2, Duration::from_secs(60));
    let reply = net.rpc(0, "broadcast_tx_batch", json!({ "txs": [encoded[3].clone()] }));
    let reply = reply.expect("batch");
    assert_eq!(reply["results"][0]["reason"], "bad_signature", "{reply}");
    node_carries_on(&net);
}
